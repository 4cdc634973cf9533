package clientwait_test

import (
	"context"
	"testing"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
)

// TestRowCommitsInputGrew: the batch has always committed row by row; tonight its input
// is three times as large (three times the INSERTs, each still in its own transaction). Its
// transactions are no more and no smaller per row than usual: client_wait must not say "the
// batch committed in many more, smaller transactions than usual" (nothing about its commits
// changed; its input grew).
func TestRowCommitsInputGrew(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{CheckAlone: true, Usual: insertRows(8000, true), Slow: insertRows(24000, true),
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			var n int
			var summary string
			if err := l.Admin.QueryRow(context.Background(), `SELECT count(*), coalesce(string_agg(summary, ' | '), '') FROM telemetry.diagnose_run_findings($1)
				WHERE pattern = 'client_wait' AND summary LIKE '%smaller transactions than usual%'`, runID).Scan(&n, &summary); err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				t.Errorf("client_wait blames smaller transactions on a run whose transactions were as usual (one per row, baseline too), only more of them: %s", summary)
			}
		}})
}
