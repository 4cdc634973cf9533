package recorder

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/diagnosis"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// TestAnalysisRefusesBadInput: a window whose end is before its start, or whose ends are not
// finite, an unknown server name and an overlong batch name are each a clear error, never
// a row with a negative elapsed time, empty times, or no rows at all. So is a time out of
// range ('infinity', the year 12000) in every function that takes one (issue 17), and a batch
// name with a control character.
func TestAnalysisRefusesBadInput(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		e.record(collectors.TierSnapshot)
		e.record(collectors.TierSample)
		c := e.conn()
		var server string
		if err := c.QueryRow(context.Background(), `SELECT server FROM telemetry.servers`).Scan(&server); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ sql, want string }{
			{`SELECT * FROM telemetry.compare(now(), now() - interval '1 hour')`, "is before the start"},
			{`SELECT * FROM telemetry.table_compare('t', now(), now() - interval '1 hour')`, "is before the start"},
			{`SELECT * FROM telemetry.wait_summary(now(), now() - interval '1 hour')`, "is before the start"},
			{`SELECT * FROM telemetry.statement_compare(now(), now() - interval '1 hour')`, "is before the start"},
			{`SELECT * FROM telemetry.lock_episodes(now(), now() - interval '1 hour')`, "is before the start"},
			{`SELECT * FROM telemetry.diagnose(now(), now() - interval '1 hour')`, "is before the start"},
			{`SELECT * FROM telemetry.diagnose('-infinity', 'infinity')`, "the window's start (-infinity) must be a finite time from 2000-01-01 to a day from now"},
			{`SELECT * FROM telemetry.compare('-infinity', now())`, "must be a finite time"},
			{`SELECT * FROM telemetry.compare(now(), '12000-01-01')`, "the window's end (12000-01-01"},
			{`SELECT * FROM telemetry.lock_episodes('1999-12-31', now())`, "the window's start (1999-12-31"},
			// Issue 17, finding 2: a run's times, from every function that takes one.
			{`SELECT telemetry.batch_begin('nightly', 'marker', 'infinity')`, "the run's start (infinity) must be a finite time"},
			{`SELECT telemetry.batch_begin('nightly', 'marker', '-infinity')`, "the run's start (-infinity) must be a finite time"},
			{`SELECT telemetry.batch_begin('nightly', 'marker', '12000-01-01')`, "the run's start (12000-01-01"},
			{`SELECT telemetry.batch_end('nightly', 'succeeded', 0, 'infinity')`, "the run's end (infinity) must be a finite time"},
			{`SELECT telemetry._note_server('s', 's', 17, 'infinity')`, "the server's last_seen (infinity)"},
			{`SELECT telemetry._drop_partitions_before('infinity')`, "the cutoff (infinity)"},
			// Finding 8: control characters in a batch's name.
			{"SELECT telemetry.batch_begin(E'night\tly')", `batch name "night\tly" has a control character`},
			{"SELECT telemetry.batch_begin(E'nightly\n')", "has a control character"},
			{"SELECT telemetry.batch_begin(E'nightly\u0085')", "has a control character"},
			{`SELECT * FROM telemetry.compare(NULL, now())`, "needs a start and an end"},
			{`SELECT * FROM telemetry.compare(now() - interval '1 hour', now(), 'no-such-server')`, "no server named 'no-such-server' is recorded (recorded: " + server + ")"},
			{`SELECT * FROM telemetry.diagnose(now() - interval '1 hour', now(), 'no-such-server')`, "no server named 'no-such-server'"},
			{`SELECT * FROM telemetry.client_wait_summary(now() - interval '1 hour', now(), 'no-such-server')`, "no server named 'no-such-server'"},
			{`SELECT * FROM telemetry.statement_compare(now() - interval '1 hour', now(), 'no-such-server')`, "no server named 'no-such-server'"},
			// A run that does not exist, or none named: the run functions say so, never an empty answer.
			{`SELECT * FROM telemetry.run_statements(NULL)`, "no batch run with run_id <NULL>"},
			{`SELECT * FROM telemetry.run_statements(987654321)`, "no batch run with run_id 987654321"},
			{`SELECT * FROM telemetry.diagnose_run(NULL)`, "no batch run with run_id <NULL>"},
			{`SELECT * FROM telemetry.diagnose_run(987654321)`, "no batch run with run_id 987654321"},
			{`SELECT telemetry.batch_begin(repeat('x', 201))`, "batch name of 201 bytes: at most 200"},
			{`SELECT telemetry.batch_begin(repeat('é', 101))`, "batch name of 202 bytes: at most 200"},
		} {
			_, err := c.Exec(context.Background(), tc.sql)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: %v, want an error saying %q", tc.sql, err, tc.want)
			}
		}
		// A begin or end ahead of now (another host's clock, within the day the check allows)
		// is now: a run in the future would have a window that ends before it starts.
		pgtest.MustExec(t, c, `SELECT telemetry.batch_begin('ahead', 'marker', now() + interval '2 hours')`)
		pgtest.MustExec(t, c, `SELECT telemetry.batch_end('ahead', 'succeeded', 0, now() + interval '3 hours')`)
		var ahead bool
		if err := c.QueryRow(context.Background(), `SELECT started_at <= clock_timestamp() AND ended_at <= clock_timestamp()
				FROM telemetry.batch_runs WHERE batch = 'ahead'`).Scan(&ahead); err != nil || !ahead {
			t.Errorf("a run begun and ended in the future: stored in the future (%v)", err)
		}
		// With runs stored, batch_run_durations checks its earliest start as others check theirs.
		for _, tc := range []struct{ sql, want string }{
			{`SELECT * FROM telemetry.batch_run_durations(NULL)`, "the runs' earliest start (NULL) must be a finite time"},
			{`SELECT * FROM telemetry.batch_run_durations('infinity')`, "the runs' earliest start (infinity) must be a finite time"},
		} {
			_, err := c.Exec(context.Background(), tc.sql)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: %v, want an error saying %q", tc.sql, err, tc.want)
			}
		}
		// What is right still answers.
		for _, sql := range []string{
			`SELECT * FROM telemetry.compare(now() - interval '1 hour', now() + interval '1 hour', '` + server + `')`,
			`SELECT * FROM telemetry.compare(now(), now())`,
			`SELECT telemetry.batch_begin(repeat('x', 200))`,
			`SELECT telemetry.batch_begin('nightly', 'marker', now() - interval '1 hour')`,
			`SELECT telemetry.batch_end('nightly', 'succeeded', 0, now())`,
			`SELECT * FROM telemetry.batch_run_durations(now() - interval '1 day', 5, 3)`,
			`SELECT telemetry.batch_begin('nächtlich é ✓')`,
			`SELECT telemetry._drop_partitions_before('-infinity')`, // nothing before it: drops nothing
		} {
			pgtest.MustExec(t, c, sql)
		}
	})
}

// TestLongWindowLockContentionGraded (issue 17, finding 7): lock waits covering under 0.05%
// of a window (5 s of a day) are a lock_contention finding of severity info, not NULL, and
// diagnose's Go reader reads the day.
func TestLongWindowLockContentionGraded(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		for range 3 {
			e.record(collectors.TierSample)
		}
		e.exec(`INSERT INTO telemetry.lock_wait_episodes (sample_id, blocked_pid, blocking_pid, blocking_pids, lock_type,
				locked_relation, started_at, last_seen_at, ended_at, duration, still_waiting, server, captured_at)
			SELECT id, 1, 2, ARRAY[2], 'relation', 'public.t', captured_at - interval '10 s', captured_at - interval '5 s',
				captured_at - interval '5 s', interval '5 s', false, server, captured_at
			FROM telemetry.samples ORDER BY captured_at DESC LIMIT 1`)
		ctx := context.Background()
		var severity *string
		if err := e.conn().QueryRow(ctx, `SELECT severity FROM telemetry.diagnose(now() - interval '1 day', now())
				WHERE pattern = 'lock_contention'`).Scan(&severity); err != nil || severity == nil || *severity != "info" {
			t.Errorf("lock_contention over a day with 5 s of lock waits: severity %v (%v), want info", severity, err)
		}
		rep, err := diagnosis.Window(ctx, e.pool, time.Now().Add(-24*time.Hour), time.Now(), "")
		if err != nil {
			t.Fatalf("diagnose of a day: %v", err)
		}
		for _, f := range rep.Findings {
			if f.Severity == "" {
				t.Errorf("finding %s without a severity", f.Pattern)
			}
		}
		// A row with no grade or summary (a rule's bug, as this one was, or an older schema's)
		// is shown as info, not fatal to the report: this database's rules are swapped for one.
		e.exec(`CREATE OR REPLACE FUNCTION telemetry._diagnose_findings(p_start_time timestamptz, p_end_time timestamptz,
				p_snapshot_start timestamptz, p_server text, p_shared jsonb)
			RETURNS TABLE (pattern text, severity text, score numeric, summary text, evidence jsonb, recommendation text)
			LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$ SELECT 'ungraded'::text, NULL::text, NULL::numeric, NULL::text, '{}'::jsonb, NULL::text $$`)
		rep, err = diagnosis.Window(ctx, e.pool, time.Now().Add(-24*time.Hour), time.Now(), "")
		if err != nil || len(rep.Findings) == 0 || rep.Findings[0].Pattern != "ungraded" || rep.Findings[0].Severity != "info" {
			t.Errorf("diagnose with a finding of NULL severity: %+v, %v; want it shown as info", rep, err)
		}
	})
}
