package cpucontention_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// crunch is the batch's CPU-bound work, a fixed amount of it: some 2.5 s on an idle machine,
// so that each baseline run has the wait sampler's readings of the other sessions. (With a
// second's work, a run may have none stored inside its window, the one that closes it stored
// just after its end; once on CI, PostgreSQL 15, none of the three baseline runs had one, and
// the other sessions of the baseline were unknown.)
func crunch(t *testing.T, l *lab.Lab, c *pgx.Conn) {
	for i := range 150 {
		lab.MustExec(t, c, `SELECT count(*) FROM (SELECT generate_series(1, 400000) AS g) s WHERE g % 7 = $1`, i%7)
	}
}

// TestBusyNeighbours: while the batch runs, eight sessions of another application (a report
// moved into the batch's window) keep the server's CPUs busy: the batch's statements take
// longer at the same work, and the cause is the other sessions, named, not a plan.
func TestBusyNeighbours(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "cpu_contention", Usual: crunch,
		Slow: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			ctx, stop := context.WithCancel(context.Background())
			var hogs sync.WaitGroup
			// Eight, so that they outweigh what else a loaded test machine runs.
			for range 8 {
				hog := l.Conn("reporting")
				hogs.Add(1)
				go func() {
					defer hogs.Done()
					_, _ = hog.Exec(ctx, `SELECT sum(i) FROM (SELECT generate_series(1, 1000000000) AS i) s`)
				}()
			}
			crunch(t, l, c)
			stop()
			hogs.Wait()
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			if s := d.Findings[0].Summary; !strings.Contains(s, "reporting") || !strings.Contains(s, "generate_series") {
				t.Errorf("cpu_contention %q: want the other application (reporting) and the batch's statement named", s)
			}
		}})
}
