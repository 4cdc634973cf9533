package statementregression_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
)

// TestTrackerCallIsNoCause: the batch tracker's own call in the batch's session
// (telemetry.batch_begin) is the same brief work in every run, and pg_stat_statements' rows of
// the run leave it out. Here the run's 1.5 s longer pause is recorded as batch_begin's, as if
// the sampler had caught the tracker's call each time (once, on CI's loaded machine, a sample
// caught batch_begin running in the judged run, more than in its baseline runs). A statement
// without figures went to statement_regression, or new_statement where no baseline run's sample
// had caught it (here, critical): batch_begin was named the batch's. The tracker's calls are no
// cause's: their booked seconds are left unexplained.
func TestTrackerCallIsNoCause(t *testing.T) {
	pause := func(seconds float64) func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
		return func(t *testing.T, l *lab.Lab, c *pgx.Conn) { lab.MustExec(t, c, `SELECT pg_sleep($1)`, seconds) }
	}
	const batchBegin = `(SELECT queryid FROM telemetry.statement_texts WHERE query LIKE 'SELECT telemetry.batch_begin(%' ORDER BY queryid LIMIT 1)`
	lab.RunSlow(t, lab.SlowRun{CheckAlone: true, Usual: pause(0.5), Slow: pause(2),
		After: func(l *lab.Lab, runID int64) {
			l.Exec(`UPDATE telemetry.batch_wait_samples b SET queryid = `+batchBegin+`
					FROM telemetry.batch_runs r
					WHERE r.run_id = $1 AND b.batch = r.batch AND b.own AND b.captured_at BETWEEN r.started_at AND r.ended_at
					  AND b.queryid IN (SELECT queryid FROM telemetry.statement_texts WHERE query = 'SELECT pg_sleep($1)')`, runID)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			for _, f := range d.Findings {
				t.Logf("%s %s: %s", f.Pattern, f.Severity, f.Summary)
				// client_wait's statements are those before the application's time: on a loaded
				// machine a sample may catch the session idle after batch_begin, the pause unseen.
				if f.Pattern == "client_wait" {
					continue
				}
				for _, c := range f.Children {
					if c.Query != nil && strings.Contains(*c.Query, "telemetry.batch_begin") {
						t.Errorf("run %d: %s names the tracker's call: %s", runID, f.Pattern, f.Summary)
					}
				}
			}
			if causes := sleepCauses(t, l, runID, batchBegin); len(causes) != 1 || causes[0] != "unattributed" {
				t.Errorf("run %d: the tracker call's booked sleeps' causes %v, want them unattributed", runID, causes)
			}
		}})
}
