package statementregression_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
)

// TestSamplingNoiseIsNoRegression: the wait sampler books a sample's whole span to the
// statement it sees at its instant, so a statement can be booked seconds it did not take. Here
// the run's 1.7 s pause (pg_sleep, where its baseline runs paused 0.2 s) is recorded as the
// batch's CPU statement, as if every sample had caught that statement: pg_stat_statements
// counts its calls at their usual time in all (2 s of them, whatever the machine's load). It
// took no longer, and was booked less than sampling_noise_seconds (2) beyond what it counted,
// so it is neither statement_regression nor more work: the 1.5 s more are left unexplained,
// and nothing is above info.
func TestSamplingNoiseIsNoRegression(t *testing.T) {
	work := func(pause float64) func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
		return func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			lab.CPU(t, c, 2*time.Second)
			lab.MustExec(t, c, `SELECT pg_sleep($1)`, pause)
		}
	}
	lab.RunSlow(t, lab.SlowRun{Want: "", Usual: work(0.2), Slow: work(1.7),
		After: func(l *lab.Lab, runID int64) {
			// (a reading that caught both statements adds the pause to the CPU statement's row)
			l.Exec(`WITH moved AS (
					DELETE FROM telemetry.batch_wait_samples b USING telemetry.batch_runs r
					WHERE r.run_id = $1 AND b.batch = r.batch AND b.own AND b.captured_at BETWEEN r.started_at AND r.ended_at
					  AND b.queryid IN (SELECT queryid FROM telemetry.statement_texts WHERE query LIKE 'SELECT pg_sleep%')
					RETURNING b.*)
				INSERT INTO telemetry.batch_wait_samples AS b (sample_id, batch, own, wait_event_type, wait_event, queryid, seconds, server,
				                                          captured_at, pid, backend_start, state, usename, datname)
				SELECT m.sample_id, m.batch, m.own, 'Running', 'CPU',
				       (SELECT queryid FROM telemetry.statement_texts WHERE query LIKE 'SELECT count(*) FROM (SELECT generate_series%' LIMIT 1),
				       m.seconds, m.server, m.captured_at, m.pid, m.backend_start, 'active', m.usename, m.datname
				FROM moved m
				ON CONFLICT (sample_id, batch, own, pid, state, wait_event_type, wait_event, queryid, captured_at)
				DO UPDATE SET seconds = b.seconds + excluded.seconds`, runID)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			for _, f := range d.Findings {
				if f.Pattern == "statement_regression" || f.Pattern == "more_work" {
					t.Errorf("run %d: %s for a statement that took no longer: %s", runID, f.Pattern, f.Summary)
				}
			}
			if d.UnexplainedSeconds == nil {
				t.Fatalf("run %d: nothing unexplained, want the 1.5 s booked to a statement no slower per call", runID)
			}
			if u := *d.UnexplainedSeconds; u < 1 {
				t.Errorf("run %d: %.1f s unexplained, want the 1.5 s booked to a statement no slower per call", runID, u)
			}
		}})
}
