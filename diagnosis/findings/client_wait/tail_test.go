package clientwait_test

import (
	"math"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
)

// TestLastSampleStandsForTheRunsEnd: the time from a run's last sample to its end is booked as
// that sample saw its sessions, up to the sample's span; where the sample holds several rows of
// a session (the exporter sums its 250 ms readings by state, wait and statement), they share
// that time, not each its own. Here the run ends 0.4 s after its last sample, its samples of its
// first 2 s are dropped (a second of it at least is then no sample's: 'no own session active',
// so the account is not scaled to the run's wall time and shows what was booked), and the last
// sample's rows of the batch's session are then split in two halves each: the account must
// stay as it was (booked per row, the two halves took 0.4 s each, 0.8 s of a tail of 0.4).
func TestLastSampleStandsForTheRunsEnd(t *testing.T) {
	sleep := func(t *testing.T, l *lab.Lab, c *pgx.Conn) { lab.MustExec(t, c, `SELECT pg_sleep(4)`) }
	lab.RunSlow(t, lab.SlowRun{CheckAlone: true, Usual: sleep, Slow: sleep,
		After: func(l *lab.Lab, runID int64) {
			l.Exec(`UPDATE telemetry.batch_runs r SET ended_at = (SELECT max(b.captured_at) FROM telemetry.batch_wait_samples b
						WHERE b.batch = r.batch AND b.own AND b.captured_at BETWEEN r.started_at AND r.ended_at) + interval '0.4 s'
					WHERE r.run_id = $1`, runID)
			l.Exec(`DELETE FROM telemetry.batch_wait_samples b USING telemetry.batch_runs r
					WHERE r.run_id = $1 AND b.batch = r.batch AND b.own AND b.captured_at BETWEEN r.started_at AND r.started_at + interval '2 s'`, runID)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			account := func() (sessions, noOwn float64) {
				if err := l.Admin.QueryRow(t.Context(), `SELECT coalesce(sum(a.seconds) FILTER (WHERE a.bucket <> 'no own session active'), 0)::float8,
					coalesce(sum(a.seconds) FILTER (WHERE a.bucket = 'no own session active'), 0)::float8
					FROM telemetry._run_account_rows($1) a WHERE a.this_run`, runID).Scan(&sessions, &noOwn); err != nil {
					t.Fatal(err)
				}
				return sessions, noOwn
			}
			sessions, noOwn := account()
			l.Exec(`WITH last AS (
						SELECT b.ctid AS row, b.* FROM telemetry.batch_wait_samples b JOIN telemetry.batch_runs r ON r.run_id = $1
						WHERE b.batch = r.batch AND b.own AND b.captured_at = (SELECT max(x.captured_at) FROM telemetry.batch_wait_samples x
							WHERE x.batch = r.batch AND x.own AND x.captured_at BETWEEN r.started_at AND r.ended_at)),
					halved AS (UPDATE telemetry.batch_wait_samples b SET seconds = b.seconds / 2 FROM last WHERE b.ctid = last.row)
					INSERT INTO telemetry.batch_wait_samples (sample_id, batch, own, wait_event_type, wait_event, queryid, seconds, server,
					                                          captured_at, pid, backend_start, state, usename, datname)
					SELECT sample_id, batch, own, wait_event_type, coalesce(wait_event, '') || ' (half)', queryid, seconds / 2, server,
					       captured_at, pid, backend_start, state, usename, datname FROM last`, runID)
			split, splitNoOwn := account()
			t.Logf("sessions %.3f s, no own session active %.3f s; with the last sample's rows split: %.3f s, %.3f s", sessions, noOwn, split, splitNoOwn)
			if math.Abs(split-sessions) > 0.005 || math.Abs(splitNoOwn-noOwn) > 0.005 {
				t.Errorf("run %d: the last sample's rows split in halves changed the account: sessions %.3f s to %.3f, no own session active %.3f s to %.3f",
					runID, sessions, split, noOwn, splitNoOwn)
			}
			if noOwn < 0.5 {
				t.Errorf("run %d: %.3f s no own session's, want a second of the run's first two at least: the account was scaled, and shows less than was booked", runID, noOwn)
			}
		}})
}
