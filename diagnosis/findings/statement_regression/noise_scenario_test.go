package statementregression_test

import (
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
)

// TestSamplingNoiseIsNoRegression: the wait sampler books a sample's whole span to the
// statement it sees at its instant, so a statement can be booked seconds it did not take. Here
// the run's 1.2 s pause (where its baseline runs paused 0.2 s) is recorded as the batch's work
// statement (a hundred sleeps of 10 ms: pg_stat_statements counts the same second of it in
// every run, whatever the machine's load), as if every sample had caught that statement. It
// took no longer, and was booked less than sampling_noise_seconds (2) beyond what it counted,
// so it is neither statement_regression nor more work: its booked seconds are no cause's, left
// unexplained. (The pause leaves 0.8 s of that for the client's round trips and the samples'
// spans: with a pause of 1.7 s, once on CI's loaded machine, the run's whole time booked to
// the statement was beyond it, and the statement a regression, as the rule says.)
func TestSamplingNoiseIsNoRegression(t *testing.T) {
	// Check alone judges: on a loaded machine the sampler's gaps in the run are its own
	// sessions' unseen time, told as client_wait above info; this test is about the work statement.
	lab.RunSlow(t, lab.SlowRun{CheckAlone: true, Usual: noiseWork(100, 0.2), Slow: noiseWork(100, 1.2), After: pauseBookedToWork,
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			for _, f := range d.Findings {
				t.Logf("%s %s: %s", f.Pattern, f.Severity, f.Summary)
				if f.Pattern == "statement_regression" || f.Pattern == "more_work" {
					t.Errorf("run %d: %s for a statement that took no longer: %s", runID, f.Pattern, f.Summary)
				}
			}
			if causes := sleepCauses(t, l, runID, noiseWorkStatement); len(causes) != 1 || causes[0] != "unattributed" {
				t.Errorf("run %d: the work statement's sleeps' causes %v, want them unattributed (its booked seconds left unexplained)", runID, causes)
			}
		}})
}

// TestSamplingNoiseOfAGrownStatement: as TestSamplingNoiseIsNoRegression, but the work
// statement also ran 12% more often (112 calls against 100: statement_growth_ratio), 0.1 s
// more by pg_stat_statements, under cause_min_seconds. The samples booked it far beyond that
// (statement_slower_ratio times what was counted): its rise is the samples' noise, not more
// work, and its booked seconds stay unexplained rather than more_work's.
func TestSamplingNoiseOfAGrownStatement(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{CheckAlone: true, Usual: noiseWork(100, 0.2), Slow: noiseWork(112, 1.2), After: pauseBookedToWork,
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			for _, f := range d.Findings {
				t.Logf("%s %s: %s", f.Pattern, f.Severity, f.Summary)
				if f.Severity != "info" && (f.Pattern == "statement_regression" || f.Pattern == "more_work") {
					t.Errorf("run %d: %s for a statement 0.1 s longer by pg_stat_statements: %s", runID, f.Pattern, f.Summary)
				}
			}
			if causes := sleepCauses(t, l, runID, noiseWorkStatement); len(causes) != 1 || causes[0] != "unattributed" {
				t.Errorf("run %d: the work statement's sleeps' causes %v, want them unattributed (its booked seconds left unexplained)", runID, causes)
			}
		}})
}

// noiseWork is the noise scenarios' batch: calls sleeps of 10 ms (the work statement:
// pg_stat_statements counts the same time for it whatever the machine's load), then a pause.
func noiseWork(calls int, pause float64) func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
	return func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
		for range calls {
			lab.MustExec(t, c, `SELECT pg_sleep(0.01), 'work'`)
		}
		lab.MustExec(t, c, `SELECT pg_sleep($1)`, pause)
	}
}

const noiseWorkStatement = `(SELECT queryid FROM telemetry.statement_texts WHERE query LIKE 'SELECT pg_sleep($1), $2%' LIMIT 1)`

// pauseBookedToWork records the run's pause as the work statement's, as if every sample had
// caught that statement.
func pauseBookedToWork(l *lab.Lab, runID int64) {
	// (a reading that caught both statements adds the pause to the work statement's row)
	l.Exec(`WITH moved AS (
				DELETE FROM telemetry.batch_wait_samples b USING telemetry.batch_runs r
				WHERE r.run_id = $1 AND b.batch = r.batch AND b.own AND b.captured_at BETWEEN r.started_at AND r.ended_at
				  AND b.queryid IN (SELECT queryid FROM telemetry.statement_texts WHERE query = 'SELECT pg_sleep($1)')
				RETURNING b.*)
			INSERT INTO telemetry.batch_wait_samples AS b (sample_id, batch, own, wait_event_type, wait_event, queryid, seconds, server,
			                                          captured_at, pid, backend_start, state, usename, datname)
			SELECT m.sample_id, m.batch, m.own, m.wait_event_type, m.wait_event, `+noiseWorkStatement+`,
			       m.seconds, m.server, m.captured_at, m.pid, m.backend_start, m.state, m.usename, m.datname
			FROM moved m
			ON CONFLICT (sample_id, batch, own, pid, state, wait_event_type, wait_event, queryid, captured_at)
			DO UPDATE SET seconds = b.seconds + excluded.seconds`, runID)
	// and the same readings by statement, as the sampler records them beside: with both
	// moved, the work statement is one of the run's own (sampled), as it would be had the
	// sampler caught it. (Once, on CI's loaded machine, its two samples had caught only the
	// pause: the work statement was no statement of the run's, and its booked seconds went
	// to statement_regression, the cause of a statement without figures.)
	l.Exec(`UPDATE telemetry.statement_wait_samples x SET queryid = `+noiseWorkStatement+`
			FROM telemetry.batch_runs r
			WHERE r.run_id = $1 AND x.batch = r.batch AND x.captured_at BETWEEN r.started_at AND r.ended_at
			  AND x.queryid IN (SELECT queryid FROM telemetry.statement_texts WHERE query = 'SELECT pg_sleep($1)')`, runID)
}

// sleepCauses are the causes the run's account gave the sleeps (Timeout:PgSleep) booked to the
// statement whose queryid the SQL expression statement gives.
func sleepCauses(t *testing.T, l *lab.Lab, runID int64, statement string) []string {
	t.Helper()
	var causes []string
	if err := l.Admin.QueryRow(t.Context(), `SELECT coalesce(array_agg(DISTINCT r->>'cause'), '{}')
		FROM jsonb_array_elements(telemetry._run_causes($1, (SELECT jsonb_agg(to_jsonb(s)) FROM telemetry._run_statements($1) s)) -> 'rows') r
		WHERE r->>'bucket' = 'Timeout:PgSleep' AND (r->>'queryid')::bigint = `+statement, runID).Scan(&causes); err != nil {
		t.Fatal(err)
	}
	return causes
}
