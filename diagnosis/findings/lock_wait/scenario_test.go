package lockwait_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// usual is the batch's work: some CPU, a pause it asks the server for, a load.
func usual(t *testing.T, l *lab.Lab, c *pgx.Conn) {
	lab.CPU(t, c, time.Second)
	lab.MustExec(t, c, `SELECT pg_sleep($1)`, 0.5)
	lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
}

// TestSharedStatementAndLock (issue 19, defect 1): in the slow run another job runs the
// batch's own "SELECT pg_sleep($1)" again and again (one pg_stat_statements entry for both:
// same role, same database), and a third holds the batch's table for 2 s. The lock the batch waited on
// is the cause, first; the shared statement is judged on the batch's own sampled time, not on
// the shared entry's calls: no more_work above info.
func TestSharedStatementAndLock(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "lock_wait", Usual: usual,
		Slow: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			reporting, migration := l.Conn("reporting"), l.Conn("migration")
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 4 {
					if _, err := reporting.Exec(context.Background(), `SELECT pg_sleep($1)`, 0.3); err != nil {
						t.Error(err)
						return
					}
				}
			}()
			defer wg.Wait()
			lab.CPU(t, c, time.Second)
			lab.MustExec(t, c, `SELECT pg_sleep($1)`, 0.5)
			lab.MustExec(t, migration, `BEGIN`)
			lab.MustExec(t, migration, `LOCK TABLE work IN SHARE MODE`)
			release := time.AfterFunc(2*time.Second, func() { migration.Exec(context.Background(), `COMMIT`) })
			defer release.Stop()
			lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			first := d.Findings[0]
			if !strings.Contains(first.Summary, "migration") || !strings.Contains(first.Summary, "INSERT INTO work") {
				t.Errorf("lock_wait %q: want the blocker (migration) and the statement that waited (INSERT INTO work)", first.Summary)
			}
			for _, f := range d.Findings {
				if f.Pattern == "more_work" && f.Severity != "info" {
					t.Errorf("more_work above info: %s", f.Summary)
				}
			}
		}})
}
