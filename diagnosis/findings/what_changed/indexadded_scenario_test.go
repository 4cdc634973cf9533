package whatchanged_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
)

// TestIndexesAdded: three secondary indexes were added to the table the batch loads (emptied
// first, as a staging table is) between runs: one on its md5 payload, one on an expression of
// it, a unique one on its id. The load's INSERT ... SELECT of half a million rows now also
// inserts each row into three indexes, two of them on random text (each row a descent of a
// tree of random keys, their pages more than the shared buffers hold): some 7 s more at the
// same rows (2.4 s runs become 9.5 s on an idle machine; a million rows made it 22 s), well
// above what a starved test client adds between its statements in CI (1.3 s). The cause is
// the indexes created on public.work, the load's INSERT under them, together most of the
// extra time (the one statement's seconds split between the three changes).
func TestIndexesAdded(t *testing.T) {
	added := []string{"work_payload on public.work", "work_payload_prefix on public.work", "work_id on public.work"}
	lab.RunSlow(t, lab.SlowRun{Want: "index_created",
		Usual: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			lab.CPU(t, c, time.Second)
			lab.MustExec(t, c, `TRUNCATE work`)
			lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 500000) g`)
		},
		Between: func(t *testing.T, l *lab.Lab) {
			l.Exec(`CREATE INDEX work_payload ON public.work (payload)`)
			l.Exec(`CREATE INDEX work_payload_prefix ON public.work (upper(substr(payload, 1, 12)))`)
			l.Exec(`CREATE UNIQUE INDEX work_id ON public.work (id)`)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			slowed("work SELECT g, md5(g::text)")(t, l, runID, d)
			if len(d.Findings) == 0 || !strings.Contains(d.Findings[0].Summary, " on public.work") {
				t.Errorf("run %d: the first finding does not name an index created on public.work: %+v", runID, d.Findings)
			}
			// The indexes' findings together explain most of the extra time (one statement slowed
			// by three changes splits its seconds between them), each graded by that: critical.
			var share float64
			for _, f := range d.Findings {
				if f.Pattern == "index_created" && f.ShareOfExtraPct != nil {
					share += *f.ShareOfExtraPct
				}
			}
			if share < 50 {
				t.Errorf("run %d: the indexes created explain %.0f%% of the extra time, want most: %+v", runID, share, d.Findings)
			}
			if f := d.Findings[0]; f.Severity != "critical" || !strings.Contains(f.Summary, "with the 2 other change(s) of its kind on the table") ||
				!strings.Contains(f.Summary, "Each row the batch writes to the table updates it too") {
				t.Errorf("run %d: the first index created %s %q: want critical, with the two others, and each row written updating it", runID, f.Severity, f.Summary)
			}
			for _, f := range d.Findings {
				t.Logf("finding %s (%s, %v%% of extra): %s", f.Pattern, f.Severity, deref(f.ShareOfExtraPct), f.Summary)
			}
			// Each index listed, with its definition, as blamed.
			for _, object := range added {
				l.WaitFor("the index "+object+" listed as created, blamed", `SELECT EXISTS (SELECT FROM telemetry.run_changes($1)
					WHERE kind = 'index_created' AND object = $2 AND new LIKE 'CREATE %INDEX%'
					  AND severity <> 'info' AND explained_seconds > 0)`, runID, object)
			}
			var durations string
			if err := l.Admin.QueryRow(t.Context(), `SELECT string_agg(format('%s: %s s', run_id, round(extract(epoch FROM ended_at - started_at), 1)), ', ' ORDER BY run_id)
				FROM telemetry.batch_runs WHERE run_id <= $1`, runID).Scan(&durations); err == nil {
				t.Logf("runs: %s; extra %v s, unexplained %v s", durations, deref(d.ExtraSeconds), deref(d.UnexplainedSeconds))
			}
			// What to do: build the indexes after the load (the batch writes the table).
			var recommendation string
			if err := l.Admin.QueryRow(t.Context(), `SELECT recommendation FROM telemetry.diagnose_run_findings($1)
				WHERE pattern = 'index_created' LIMIT 1`, runID).Scan(&recommendation); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(recommendation, "create the index after it") {
				t.Errorf("run %d: index_created's recommendation %q: want the index built after a bulk load", runID, recommendation)
			}
		}})
}

func deref(p *float64) float64 {
	if p == nil {
		return -1
	}
	return *p
}
