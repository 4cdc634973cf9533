package recorder

import (
	"context"
	"testing"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// TestEndedRunsSettled: the Go recorder and pg_cron mode's telemetry_settle job
// (settle_runs(); sample() settles none) store the results of a run whose data are all in
// (telemetry.settle_run: the server recorded settle_after_seconds, 10 minutes, past its end,
// and its end's statement snapshot is written where statements were read at its start), and
// of no run still going or ended since, at the defaults.
func TestEndedRunsSettled(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		ctx := context.Background()
		// runs inserts, for the recorded server, a collection an hour ago (what it recorded
		// before) and three runs: one ended 40 minutes ago, one 5 minutes ago, one going on.
		runs := func(t *testing.T, e *env) (settled, recent, open int64) {
			c := e.conn()
			var server string
			if err := c.QueryRow(ctx, `SELECT server FROM telemetry.servers`).Scan(&server); err != nil {
				t.Fatal(err)
			}
			pgtest.MustExec(t, c, `SELECT telemetry._ensure_partitions(now() - interval '1 hour')`)
			pgtest.MustExec(t, c, `INSERT INTO telemetry.snapshots (captured_at, pg_version, server) VALUES (now() - interval '1 hour', 17, $1)`, server)
			pgtest.MustExec(t, c, `INSERT INTO telemetry.samples (captured_at, server) VALUES (now() - interval '1 hour', $1)`, server)
			for _, r := range []struct {
				id         *int64
				start, end string
			}{{&settled, "50 minutes", "40 minutes"}, {&recent, "8 minutes", "5 minutes"}, {&open, "30 minutes", ""}} {
				status, end := "succeeded", "now() - interval '"+r.end+"'"
				if r.end == "" {
					status, end = "running", "NULL"
				}
				if err := c.QueryRow(ctx, `INSERT INTO telemetry.batch_runs (batch, started_at, ended_at, status, source, server)
					VALUES ('nightly '||$1, now() - $2::interval, `+end+`, $3, 'marker', $4) RETURNING run_id`,
					r.start, r.start, status, server).Scan(r.id); err != nil {
					t.Fatal(err)
				}
			}
			return
		}
		check := func(t *testing.T, e *env, settled int64) {
			c := e.conn()
			eventually(t, c, `SELECT EXISTS (SELECT FROM telemetry.run_results WHERE run_id = $1 AND complete)`, settled)
			if n := pgtest.Query(t, c, `SELECT run_id FROM telemetry.run_results WHERE run_id <> $1`, settled); len(n) != 0 {
				t.Errorf("settled %v too, want only run %d", n, settled)
			}
		}
		t.Run("recorder", func(t *testing.T) {
			e := newEnv(t, srv)
			e.record(collectors.TierSnapshot)
			e.record(collectors.TierSample)
			settled, _, _ := runs(t, e)
			// Statements read an hour ago, before the run (as the collection then did): the run
			// waits for its end's statement snapshot, whose window would otherwise reach the next.
			c := e.conn()
			var server string
			if err := c.QueryRow(ctx, `SELECT server FROM telemetry.servers`).Scan(&server); err != nil {
				t.Fatal(err)
			}
			statementsAt := func(ago string) {
				pgtest.MustExec(t, c, `WITH s AS (INSERT INTO telemetry.snapshots (captured_at, pg_version, server)
					VALUES (now() - $2::interval, 17, $1) RETURNING id, captured_at)
					INSERT INTO telemetry.statement_info_snapshots (snapshot_id, dealloc, stats_reset, entries, full_read, server, captured_at)
					SELECT id, 0, now() - interval '1 day', 0, true, $1, captured_at FROM s`, server, ago)
			}
			statementsAt("61 minutes")
			var id *int64
			if err := c.QueryRow(ctx, `SELECT telemetry.settle_run($1)`, server).Scan(&id); err != nil || id != nil {
				t.Fatalf("settled run %v (%v) before its end's statement snapshot was written, want none", id, err)
			}
			statementsAt("39 minutes")
			ctx, cancel := context.WithCancel(ctx)
			t.Cleanup(cancel)
			// Retention under way as the recorder starts (its first pass; here another session
			// holds its lock a moment): settling waits for it, where it found the lock taken,
			// settled nothing and came back a minute later (two CI runs failed so).
			holder := pgtest.Connect(t, e.dsn, "")
			pgtest.MustExec(t, holder, `SELECT pg_advisory_lock(hashtext('telemetry.retention'), 0)`)
			unlocked := make(chan struct{})
			go func() {
				defer close(unlocked)
				time.Sleep(500 * time.Millisecond)
				_, _ = holder.Exec(ctx, `SELECT pg_advisory_unlock(hashtext('telemetry.retention'), 0)`)
			}()
			go e.rec.Run(ctx)
			<-unlocked
			pgtest.Eventually(t, 15*time.Second, "the run settled once the retention pass was done", func() bool {
				var done bool
				return c.QueryRow(ctx, `SELECT EXISTS (SELECT FROM telemetry.run_results WHERE run_id = $1 AND complete)`, settled).Scan(&done) == nil && done
			})
			check(t, e, settled)
		})
		t.Run("pg_cron mode", func(t *testing.T) {
			e := newEnv(t, srv)
			c := e.conn()
			pgtest.MustExec(t, c, `SELECT telemetry.snapshot()`)
			pgtest.MustExec(t, c, `SELECT telemetry.sample()`)
			settled, _, _ := runs(t, e)
			pgtest.MustExec(t, c, `SELECT telemetry.sample()`)
			if n := pgtest.Query(t, c, `SELECT run_id FROM telemetry.run_results`); len(n) != 0 {
				t.Errorf("sample() settled %v, want none (the telemetry_settle job settles)", n)
			}
			var n int
			if err := c.QueryRow(ctx, `SELECT telemetry.settle_runs()`).Scan(&n); err != nil || n != 1 {
				t.Errorf("settle_runs() settled %d runs (%v), want 1", n, err)
			}
			check(t, e, settled)
		})
	})
}
