package diagnosis

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
)

// Five normal runs, then one with a lock held against it for 2.5 s (far above the CPU time's
// noise on a loaded machine): diagnose_run must rank the lock wait first among the measures,
// above the duration's own symptom.
func TestRunAgainstBaseline(t *testing.T) {
	for _, major := range []int{15, 17} {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
			t.Parallel()
			l := lab.New(t, major)
			l.PrepareWork()
			normal := func(c *pgx.Conn, beforeInsert func()) {
				lab.CPU(t, c, 700*time.Millisecond)
				beforeInsert()
				lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
				lab.CPU(t, c, 500*time.Millisecond)
			}
			for range 5 {
				l.Run("nightly", func(c *pgx.Conn) { normal(c, func() {}) })
			}
			slow := l.Run("nightly", func(c *pgx.Conn) {
				normal(c, func() {
					other := l.Conn("reporting")
					lab.MustExec(t, other, `BEGIN`)
					lab.MustExec(t, other, `LOCK TABLE work IN SHARE MODE`)
					time.AfterFunc(2500*time.Millisecond, func() { other.Exec(context.Background(), `COMMIT`) })
				})
			})
			rep, err := ForRun(context.Background(), l.Admin, slow)
			if err != nil {
				t.Fatal(err)
			}
			var text strings.Builder
			if err := rep.Text(&text); err != nil {
				t.Fatal(err)
			}
			t.Logf("report:\n%s", text.String())
			if len(rep.Baseline) < 2 {
				t.Fatalf("diagnose_run returned %d measures", len(rep.Baseline))
			}
			if d := rep.Baseline[0]; d.Rank != 0 || d.Measure != "duration" || d.BaselineRuns != 5 {
				t.Errorf("rank 0 is %s over %d runs, want duration over 5", d.Measure, d.BaselineRuns)
			}
			if top := rep.Baseline[1]; top.Rank != 1 || top.Pattern == nil || *top.Pattern != "lock_contention" {
				t.Errorf("rank 1 is %s (%v), want a lock_contention measure", top.Measure, deref(top.Pattern))
			}
		})
	}
}
