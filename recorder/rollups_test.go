package recorder

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pg-batch-exporter/pg-batch-exporter/schema"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// rollupData fills the schema with $2 hours up to $1 of what the recorder writes for server $3,
// at irregular instants (samples about every 30 s, snapshots about a minute apart, statements
// every hour or so, none on a minute's boundary) with varied content: waits idle and not, lock
// waits in some samples, vacuums and temporary-file waits now and then, statement waits with a
// queryid and without (their text only), of a batch's own sessions and of others. Sums of
// arbitrary doubles included. Each sample's rollups are added as the recorder adds them, one
// sample after the other (_rollup_sample).
var rollupData = []string{
	`SELECT setseed(0.22)`,
	`SELECT telemetry._ensure_partitions(d) FROM generate_series($1::timestamptz - $2::int * interval '1 hour', $1::timestamptz, interval '1 day') d`,
	`SELECT telemetry._ensure_partitions($1::timestamptz)`,
	`INSERT INTO telemetry.snapshots (captured_at, pg_version, wal_bytes, ckpt_timed, ckpt_requested, ckpt_buffers,
		bgw_buffers_clean, bgw_buffers_alloc, io_client_writes, io_client_buffer_writes, temp_files, temp_bytes, server, db_stats_reset)
	SELECT $1::timestamptz - $2::int * interval '1 hour' + i * interval '1 minute' + random() * interval '40 seconds',
		17, i * 4000000::bigint, i / 5, i / 60, i * 900, i * 40, i * 3000, i * 1500, i * 1500, i / 30, (i / 30) * 8388608::bigint, $3, NULL
	FROM generate_series(0, $2::int * 60 - 1) i`,
	`INSERT INTO telemetry.table_snapshots (snapshot_id, relid, schemaname, relname, pg_relation_size, pg_total_relation_size,
		n_live_tup, n_dead_tup, n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd, last_autovacuum, autovacuum_count,
		autoanalyze_count, server, captured_at)
	SELECT s.id, 16384 + t, 'public', 'table_' || t, 8192 * (1000 + s.n * t), 8192 * (1500 + s.n * t), 100000 + s.n,
		s.n % 500, s.n * 60, s.n * 20, s.n * 5, s.n * 15, s.captured_at - (s.n % 90) * interval '1 minute', s.n / 90, s.n / 45,
		s.server, s.captured_at
	FROM (SELECT id, captured_at, server, row_number() OVER (ORDER BY captured_at) AS n FROM telemetry.snapshots WHERE server = $3) s,
		generate_series(1, 3) t`,
	// Two standbys in most snapshots (one without a name or an address now and then, a lag
	// unknown in some), a third for a while: rolled up by their table's trigger.
	`INSERT INTO telemetry.replication_snapshots (snapshot_id, pid, client_addr, application_name, state, sync_state,
		sent_lsn, write_lsn, flush_lsn, replay_lsn, write_lag, flush_lag, replay_lag, server, captured_at)
	SELECT s.id, 4000 + k, CASE WHEN k = 2 AND random() < 0.2 THEN NULL ELSE ('10.0.0.' || k)::inet END,
		CASE WHEN k = 2 AND random() < 0.2 THEN NULL ELSE 'standby' || k END, 'streaming', 'async',
		lsn, lsn, lsn, CASE WHEN random() < 0.1 THEN NULL ELSE lsn - floor(random() * 300000000)::numeric END,
		NULL, NULL, CASE WHEN random() < 0.1 THEN NULL ELSE random() * interval '90 seconds' END, s.server, s.captured_at
	FROM (SELECT id, captured_at, server, pg_lsn '1/0' + (row_number() OVER (ORDER BY captured_at) * 4000000)::numeric AS lsn
	      FROM telemetry.snapshots WHERE server = $3) s, generate_series(1, 3) k
	WHERE k < 3 AND random() < 0.9 OR k = 3 AND s.captured_at < $1::timestamptz - $2::int * interval '20 minutes'`,
	`INSERT INTO telemetry.samples (captured_at, server)
	SELECT $1::timestamptz - $2::int * interval '1 hour' + i * interval '30 seconds' + random() * interval '20 seconds', $3
	FROM generate_series(0, $2::int * 120 - 1) i`,
	`INSERT INTO telemetry.wait_samples (sample_id, backend_type, wait_event_type, wait_event, state, count, server, captured_at)
	SELECT s.id, g.backend_type, g.wait_event_type, g.wait_event, g.state, 1 + floor(random() * 6)::int, s.server, s.captured_at
	FROM telemetry.samples s, (VALUES
		('client backend', 'Running', 'CPU', 'active'), ('client backend', 'Running', 'CPU', 'idle in transaction'),
		('client backend', 'IO', 'DataFileRead', 'active'), ('client backend', 'Lock', 'transactionid', 'active'),
		('client backend', 'Lock', 'relation', 'active'), ('client backend', 'Lock', 'relation', 'idle in transaction'),
		('client backend', 'Lock', 'extend', 'active'), ('client backend', 'Client', 'ClientRead', 'idle'),
		('client backend', 'IO', 'BufFileWrite', 'active'), ('checkpointer', 'Activity', 'CheckpointerMain', 'unknown'),
		('autovacuum worker', 'Running', 'CPU', 'active'), ('autovacuum worker', 'Lock', 'relation', 'active')
	) g (backend_type, wait_event_type, wait_event, state)
	WHERE s.server = $3 AND random() < 0.4`,
	`INSERT INTO telemetry.wait_time_samples (sample_id, wait_event_type, wait_event, seconds, server, captured_at)
	SELECT s.id, w.wait_event_type, w.wait_event, random() * 30, s.server, s.captured_at
	FROM telemetry.samples s, (VALUES ('Running', 'CPU'), ('IO', 'DataFileRead'), ('Lock', 'transactionid'),
		('Lock', 'relation'), ('Lock', 'extend'), ('IO', 'WALWrite'), ('IO', 'BufFileWrite')) w (wait_event_type, wait_event)
	WHERE s.server = $3 AND random() < 0.5`,
	`INSERT INTO telemetry.progress_samples (sample_id, progress_type, pid, relid, relname, phase, server, captured_at)
	SELECT s.id, 'vacuum', 20000 + t, CASE WHEN t = 5 AND random() < 0.3 THEN NULL ELSE 16384 + t % 4 END,
		CASE WHEN t = 3 AND random() < 0.3 THEN NULL ELSE 'table_' || t % 4 END,
		(ARRAY['scanning heap', 'vacuuming indexes', NULL])[1 + floor(random() * 3)::int], s.server, s.captured_at
	FROM telemetry.samples s, generate_series(1, 5) t
	WHERE s.server = $3 AND random() < 0.05`,
	`INSERT INTO telemetry.activity_samples (sample_id, pid, backend_type, state, wait_event_type, wait_event, query_preview, server, captured_at)
	SELECT s.id, 10000 + k, 'client backend', 'active', 'IO', (ARRAY['BufFileWrite', 'BufFileRead', 'DataFileRead'])[1 + k % 3],
		'SELECT * FROM t' || k || ' ORDER BY $1', s.server, s.captured_at
	FROM telemetry.samples s, generate_series(1, 5) k
	WHERE s.server = $3 AND random() < 0.1`,
	`INSERT INTO telemetry.lock_samples (sample_id, blocked_pid, blocking_pid, blocking_app, blocked_duration, lock_type, locked_relation, server, captured_at)
	SELECT s.id, 10000 + l % 3, 10010 + l, 'app' || l % 2, random() * interval '60 seconds', 'relation', 'public.table_1', s.server, s.captured_at
	FROM telemetry.samples s, generate_series(1, 4) l
	WHERE s.server = $3 AND random() < 0.1`,
	`INSERT INTO telemetry.lock_wait_episodes (sample_id, blocked_pid, blocking_pid, blocking_pids, lock_type, locked_relation,
		started_at, last_seen_at, ended_at, duration, still_waiting, server, captured_at)
	SELECT s.id, 10000 + s.id % 7, 10010, '{10010}', (ARRAY['relation', 'extend'])[1 + s.id % 2], 'public.table_1',
		s.captured_at - d, s.captured_at - interval '1 second', s.captured_at - interval '0.5 second', d - interval '0.5 second', false,
		s.server, s.captured_at
	FROM telemetry.samples s, LATERAL (SELECT random() * interval '3 minutes' + interval '1 second' AS d) x
	WHERE s.server = $3 AND random() < 0.02`,
	// Statements: five entries read in full about hourly, a sixth appearing halfway.
	`INSERT INTO telemetry.statement_snapshots (snapshot_id, userid, dbid, toplevel, queryid, datname, username, calls, plans,
		total_plan_time, total_exec_time, rows, shared_blks_hit, shared_blks_read, shared_blks_dirtied, shared_blks_written,
		local_blks_read, local_blks_written, temp_blks_read, temp_blks_written, blk_read_time, blk_write_time,
		wal_records, wal_fpi, wal_bytes, server, captured_at)
	SELECT s.id, 10, 5, true, 1000 + q, 'app', 'etl', s.n * q, 0, 0.5 * s.n, 120.5 * s.n * q, 10 * s.n, 500 * s.n, 50 * s.n, 0, 0,
		0, 0, 0, s.n * q, 0, 0, 0, 0, 5000 * s.n, s.server, s.captured_at
	FROM (SELECT id, captured_at, server, row_number() OVER (ORDER BY captured_at) AS n FROM telemetry.snapshots
		WHERE server = $3) s, generate_series(1, 6) q
	WHERE s.n % 60 = 7 AND (q < 6 OR s.n > $2::int * 30)`,
	`INSERT INTO telemetry.statement_info_snapshots (snapshot_id, dealloc, stats_reset, entries, full_read, server, captured_at)
	SELECT DISTINCT snapshot_id, 0, $1::timestamptz - interval '30 days', 6, true, server, captured_at
	FROM telemetry.statement_snapshots WHERE server = $3`,
	`INSERT INTO telemetry.statement_texts (server, queryid, query, first_seen)
	SELECT $3, 1000 + q, 'UPDATE t' || q || ' SET v = $1 WHERE id = $2::int', $1::timestamptz - interval '30 days' FROM generate_series(1, 6) q`,
	`INSERT INTO telemetry.statement_wait_samples (sample_id, batch, queryid, wait_event_type, wait_event, before_query_id, query_text, seconds, server, captured_at)
	SELECT s.id, (ARRAY['', 'nightly'])[1 + floor(random() * 2)::int], q.queryid, q.wait_event_type, q.wait_event, q.before_query_id,
		q.query_text, random() * 20, s.server, s.captured_at
	FROM telemetry.samples s, (VALUES (1001, 'Running', 'CPU', false, ''), (1002, 'IO', 'DataFileRead', false, ''),
		(1003, 'Lock', 'relation', false, ''), (1003, 'Lock', 'relation', true, ''),
		(0, 'Lock', 'relation', false, 'UPDATE t4 SET v = 7 WHERE id = 9'), (0, 'Lock', 'relation', false, 'UPDATE t5 SET v = 1 WHERE id = 2'),
		(0, 'Lock', 'transactionid', false, 'SELECT 1')) q (queryid, wait_event_type, wait_event, before_query_id, query_text)
	WHERE s.server = $3 AND random() < 0.3`,
	// Statements of the first eight hours and of the first two alone: in the running totals of
	// every later day, in no later window; the second gone before the day cleanup cuts into.
	`INSERT INTO telemetry.statement_wait_samples (sample_id, batch, queryid, wait_event_type, wait_event, before_query_id, query_text, seconds, server, captured_at)
	SELECT s.id, 'nightly', q.queryid, 'IO', 'DataFileRead', false, '', random() * 5, s.server, s.captured_at
	FROM telemetry.samples s, (VALUES (1004, 8), (1005, 2)) q (queryid, hours)
	WHERE s.server = $3 AND s.captured_at < $1::timestamptz - ($2::int - q.hours) * interval '1 hour' AND random() < 0.3`,
	`INSERT INTO telemetry.tracked_tables (relid, schemaname, relname) SELECT 16384 + t, 'public', 'table_' || t FROM generate_series(1, 2) t
	ON CONFLICT DO NOTHING`,
	`SELECT telemetry._note_server($3, $3, 17, $1)`,
	`SELECT count(telemetry._rollup_sample(x.server, x.id, x.captured_at))
	FROM (SELECT * FROM telemetry.samples WHERE server = $3 ORDER BY captured_at) x`,
}

// rollupFunctions are the window analysis functions, each as a query of its whole output
// ($1, $2: the window; $3: the server) as one text.
var rollupFunctions = map[string]string{
	"compare":             `SELECT jsonb_agg(to_jsonb(f))::text FROM telemetry.compare($1, $2, $3) f`,
	"table_compare":       `SELECT jsonb_agg(to_jsonb(f))::text FROM telemetry.table_compare('table_1', $1, $2, 'public', $3) f`,
	"wait_summary":        `SELECT jsonb_agg(to_jsonb(f))::text FROM telemetry.wait_summary($1, $2, $3) f`,
	"client_wait_summary": `SELECT jsonb_agg(to_jsonb(f))::text FROM telemetry.client_wait_summary($1, $2, $3) f`,
	"statement_compare":   `SELECT jsonb_agg(to_jsonb(f))::text FROM telemetry.statement_compare($1, $2, $3) f`,
	"lock_episodes":       `SELECT jsonb_agg(to_jsonb(f))::text FROM telemetry.lock_episodes($1, $2, $3) f`,
	"diagnose":            `SELECT jsonb_agg(to_jsonb(f))::text FROM telemetry.diagnose($1, $2, $3) f`,
	// The report's charts: by the hour over the windows longer than 36 hours.
	"window_series": `SELECT jsonb_agg(to_jsonb(f))::text FROM telemetry.window_series($1, $2, $3) f`,
}

// vacuumEvidence is diagnose's vacuum evidence over a window ($1, $2) of server $3: the tables
// vacuumed, and the shares of its samples that saw a vacuum (on a tracked table).
const vacuumEvidence = `SELECT coalesce((SELECT jsonb_build_object('vacuums', f.evidence->'vacuums',
		'tracked', (f.evidence->>'pct_of_samples_tracked')::float8, 'any', (f.evidence->>'pct_of_samples_any')::float8)
	FROM telemetry.diagnose($1, $2, $3) f WHERE f.pattern = 'autovacuum_interference'),
	jsonb_build_object('vacuums', NULL, 'tracked', 0, 'any', 0))::text`

// rawVacuumEvidence is that evidence from the raw progress rows, as autovacuum_interference
// read them before the vacuum rollups (0025).
const rawVacuumEvidence = `WITH v AS (
		SELECT p.sample_id, p.relid, p.relname, p.phase FROM telemetry.progress_samples p
		WHERE p.server = $3 AND p.captured_at BETWEEN $1 AND $2 AND p.progress_type = 'vacuum'),
	vac AS (
		SELECT p.relid, p.relname, p.relid IN (SELECT relid FROM telemetry.tracked_tables) AS tracked,
			count(DISTINCT p.sample_id) AS samples, array_agg(DISTINCT p.phase) AS phases
		FROM v p GROUP BY 1, 2, 3),
	s AS (SELECT bool_or(p.relid IN (SELECT relid FROM telemetry.tracked_tables)) AS tracked FROM v p GROUP BY p.sample_id),
	n AS (SELECT count(*) AS n FROM telemetry.samples WHERE server = $3 AND captured_at BETWEEN $1 AND $2)
	SELECT jsonb_build_object('vacuums', (SELECT jsonb_agg(to_jsonb(x) ORDER BY x.relid, x.relname) FROM vac x),
		'tracked', coalesce(round(100.0 * (SELECT count(*) FILTER (WHERE tracked) FROM s) / nullif(n.n, 0), 1), 0)::float8,
		'any', coalesce(round(100.0 * (SELECT count(*) FROM s) / nullif(n.n, 0), 1), 0)::float8)::text FROM n`

// blockedSeries is window_series' chart of sessions blocked on locks ($1, $2: a window of over
// 36 hours, drawn by the hour; $3: the server).
const blockedSeries = `SELECT coalesce(string_agg(format('%s %s', offset_seconds, value), ',' ORDER BY offset_seconds), '')
	FROM telemetry.window_series($1, $2, $3) WHERE series = 'locks'`

// rawBlockedSeries is that chart from the raw lock samples, as window_series read them before
// 0026: each hour with samples in the window, the most sessions one of them saw blocked.
const rawBlockedSeries = `WITH s AS (SELECT date_bin('1 hour', captured_at, timestamptz '1970-01-01 00:00:00+00') AS h FROM telemetry.samples
		WHERE server = $3 AND captured_at >= $1 AND captured_at < $2 GROUP BY 1),
	b AS (SELECT date_bin('1 hour', l.captured_at, timestamptz '1970-01-01 00:00:00+00') AS h, max(l.n) AS n
		FROM (SELECT captured_at, count(DISTINCT blocked_pid) AS n FROM telemetry.lock_samples
			WHERE server = $3 AND captured_at >= $1 AND captured_at < $2 GROUP BY sample_id, captured_at) l GROUP BY 1)
	SELECT coalesce(string_agg(format('%s %s', extract(epoch FROM greatest(s.h, $1) - $1)::float8, coalesce(b.n, 0)::float8), ',' ORDER BY s.h), '')
	FROM s LEFT JOIN b USING (h)`

// TestRollupsAnswerAsRawRows: every window analysis function gives the same output from the
// rollups as from the raw rows alone (SET telemetry.rollups = off), over windows of every
// length from a second to two days, both edges off any minute's boundary (and on one), with
// another server's rows present, whole UTC days among them (statement rollups by day); the
// rollups added sample by sample equal those summed in one pass (rollup_rebuild); and after
// cleanup cut into an hour (of a day read whole from its day rollups), the two still agree.
func TestRollupsAnswerAsRawRows(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		c := e.conn()
		ctx := context.Background()
		// The data end 49 hours after a UTC midnight (an hour or more ago): the day after it is in
		// them whole, and so is the next, so that a window can begin early in the first (read as
		// its whole day less the hours before the window) and hold the second.
		midnight := time.Now().UTC().Add(-50 * time.Hour).Truncate(24 * time.Hour)
		end := midnight.Add(49 * time.Hour)
		for _, server := range []struct {
			name  string
			hours int
		}{{"a", 50}, {"b", 3}} {
			for _, sql := range rollupData {
				// Each statement takes the three, whichever it reads.
				sql := `WITH args AS (SELECT $1::timestamptz, $2::int, $3::text) ` + sql
				if _, err := c.Exec(ctx, sql, end, server.hours, server.name); err != nil {
					t.Fatalf("%s: %v", sql, err)
				}
			}
		}

		rollups := func() string {
			var s string
			if err := c.QueryRow(ctx, `SELECT concat_ws(' | ',
				(SELECT string_agg(r::text, ',' ORDER BY r::text) FROM telemetry.sample_rollups r),
				(SELECT string_agg(r::text, ',' ORDER BY r::text) FROM telemetry.wait_rollups r),
				(SELECT string_agg(r::text, ',' ORDER BY r::text) FROM telemetry.wait_time_rollups r),
				(SELECT string_agg(r::text, ',' ORDER BY r::text) FROM telemetry.statement_wait_rollups r),
				(SELECT string_agg(r::text, ',' ORDER BY r::text) FROM telemetry.statement_wait_totals r),
				(SELECT string_agg(r::text, ',' ORDER BY r::text) FROM telemetry.vacuum_rollups r),
				(SELECT string_agg(r::text, ',' ORDER BY r::text) FROM telemetry.replication_rollups r))`).Scan(&s); err != nil {
				t.Fatal(err)
			}
			return s
		}
		added := rollups()
		var first, last time.Time
		if err := c.QueryRow(ctx, `SELECT min(captured_at), max(captured_at) FROM telemetry.samples WHERE server = 'a'`).Scan(&first, &last); err != nil {
			t.Fatal(err)
		}
		e.exec(`SELECT telemetry.rollup_rebuild(server, min(captured_at), max(captured_at)) FROM telemetry.samples GROUP BY server`)
		if rebuilt := rollups(); rebuilt != added {
			t.Errorf("rollups added sample by sample differ from those rebuilt in one pass:\n%.2000s\n%.2000s", added, rebuilt)
		}

		rng := rand.New(rand.NewPCG(22, 22))
		windows := func(from, to time.Time) [][2]time.Time {
			var out [][2]time.Time
			lengths := []time.Duration{time.Second, 45 * time.Second, 61 * time.Second, 59 * time.Minute,
				61 * time.Minute, 3*time.Hour + 17*time.Minute, 25 * time.Hour, 49 * time.Hour}
			for _, l := range lengths {
				span := to.Sub(from) - l
				if span <= 0 {
					continue
				}
				s := from.Add(time.Duration(rng.Int64N(int64(span)))).Truncate(time.Microsecond)
				out = append(out, [2]time.Time{s, s.Add(l + time.Duration(rng.IntN(999999))*time.Microsecond)})
			}
			// On the boundaries: a minute's, an hour's, a sample's own instant at both ends.
			h := from.Truncate(time.Hour).Add(time.Hour)
			out = append(out, [2]time.Time{h, h.Add(2 * time.Hour)}, [2]time.Time{h.Add(-time.Minute), h.Add(90 * time.Minute)})
			// A whole UTC day and a bit either side, and one from a day's start (statement rollups by day).
			if d := from.Truncate(24 * time.Hour).Add(24 * time.Hour); d.Add(25 * time.Hour).Before(to) {
				out = append(out, [2]time.Time{d.Add(-time.Minute - 13*time.Second), d.Add(25*time.Hour + 7*time.Second)}, [2]time.Time{d, d.Add(24 * time.Hour)})
			}
			var a, b time.Time
			if err := c.QueryRow(ctx, `SELECT (SELECT captured_at FROM telemetry.samples WHERE server = 'a' AND captured_at > $1 ORDER BY 1 LIMIT 1),
				(SELECT captured_at FROM telemetry.samples WHERE server = 'a' AND captured_at > $1 + interval '5 hours' ORDER BY 1 LIMIT 1)`, h).Scan(&a, &b); err != nil {
				t.Fatal(err)
			}
			return append(out, [2]time.Time{a, b})
		}
		compareAll := func(ws [][2]time.Time) {
			t.Helper()
			for _, w := range ws {
				for name, sql := range rollupFunctions {
					answer := func(rollups string) string {
						tx, err := c.Begin(ctx)
						if err != nil {
							t.Fatal(err)
						}
						defer tx.Rollback(ctx)
						if _, err := tx.Exec(ctx, `SELECT set_config('telemetry.rollups', $1, true)`, rollups); err != nil {
							t.Fatal(err)
						}
						var s *string
						if err := tx.QueryRow(ctx, sql, w[0], w[1], "a").Scan(&s); err != nil {
							t.Fatalf("%s %v: %v", name, w, err)
						}
						if s == nil {
							return "none"
						}
						return *s
					}
					if raw, rolled := answer("off"), answer("on"); raw != rolled {
						t.Errorf("%s over %s to %s: from the rollups\n%s\nfrom raw rows\n%s", name,
							w[0].Format(time.RFC3339Nano), w[1].Format(time.RFC3339Nano), rolled, raw)
					}
				}
				// The chart of sessions blocked, by the hour, as the raw lock samples gave it before
				// its rollups.
				if w[1].Sub(w[0]) > 36*time.Hour {
					var got, want string
					if err := c.QueryRow(ctx, blockedSeries, w[0], w[1], "a").Scan(&got); err != nil {
						t.Fatal(err)
					}
					if err := c.QueryRow(ctx, rawBlockedSeries, w[0], w[1], "a").Scan(&want); err != nil {
						t.Fatal(err)
					}
					if got != want || got == "" {
						t.Errorf("window_series' sessions blocked over %s to %s\n%s\nwant, from the raw lock samples,\n%s",
							w[0].Format(time.RFC3339Nano), w[1].Format(time.RFC3339Nano), got, want)
					}
				}
				// The vacuum finding as the raw progress rows gave it before its rollups.
				var got, want string
				if err := c.QueryRow(ctx, vacuumEvidence, w[0], w[1], "a").Scan(&got); err != nil {
					t.Fatal(err)
				}
				if err := c.QueryRow(ctx, rawVacuumEvidence, w[0], w[1], "a").Scan(&want); err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Errorf("diagnose's vacuum evidence over %s to %s\n%s\nwant, from the raw progress rows,\n%s",
						w[0].Format(time.RFC3339Nano), w[1].Format(time.RFC3339Nano), got, want)
				}
			}
		}
		earlyInADay := [2]time.Time{midnight.Add(3*time.Hour + 17*time.Minute + 123457*time.Microsecond), midnight.Add(48*time.Hour + time.Minute)}
		// The data's times of day are fixed: the later comparisons, whose random windows begin
		// too late for it, take a whole UTC day and a bit either side, the day itself, and a
		// window from early in the day before it.
		laterDays := [][2]time.Time{{midnight.Add(24*time.Hour - time.Minute - 13*time.Second), midnight.Add(48*time.Hour + 7*time.Second)},
			{midnight.Add(24 * time.Hour), midnight.Add(48 * time.Hour)},
			{midnight.Add(5*time.Hour + 10*time.Minute + 4321*time.Microsecond), midnight.Add(48*time.Hour + time.Minute)}}
		compareAll(append(windows(first, last), [2]time.Time{first, last}, earlyInADay))
		// That window's first day was read as a whole day less its hours before the window: a
		// change to one of those hours' rollups changes its statements.
		statements := func(q interface {
			QueryRow(context.Context, string, ...any) pgx.Row
		}) string {
			var s string
			if err := q.QueryRow(ctx, rollupFunctions["statement_compare"], earlyInADay[0], earlyInADay[1], "a").Scan(&s); err != nil {
				t.Fatal(err)
			}
			return s
		}
		asRead := statements(c)
		func() {
			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if tag, err := tx.Exec(ctx, `UPDATE telemetry.statement_wait_rollups SET seconds = seconds + 1000
				WHERE server = 'a' AND bucket = '1 hour' AND captured_at = $1`, midnight.Add(time.Hour)); err != nil || tag.RowsAffected() == 0 {
				t.Fatalf("%v, %v", tag, err)
			}
			if statements(tx) == asRead {
				t.Error("statement_compare from 03:17 to 00:01 two days later did not read its first day as the whole day less its first hours")
			}
		}()

		// The run functions too: runs of the batch whose own sessions' statement waits the data
		// has ('nightly'), hours to a day long, over a day's boundary, the later ones with the
		// earlier as their baseline; their own statements are read through the batch's rollups.
		var runs []int64
		for _, r := range [][2]time.Duration{{73*time.Minute + 17*time.Second, 3*time.Hour + 40*time.Minute},
			{5*time.Hour + 2*time.Minute, 7*time.Hour + 31*time.Minute + 9*time.Second},
			{9 * time.Hour, 35*time.Hour + 7*time.Minute}, {21*time.Hour + 30*time.Second, 48 * time.Hour}} {
			var id int64
			if err := c.QueryRow(ctx, `INSERT INTO telemetry.batch_runs (batch, started_at, ended_at, status, source, server)
				VALUES ('nightly', $1, $2, 'succeeded', 'marker', 'a') RETURNING run_id`, first.Add(r[0]), first.Add(r[1])).Scan(&id); err != nil {
				t.Fatal(err)
			}
			runs = append(runs, id)
		}
		runAnswer := func(f string, id int64, rollups string) string {
			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			var s *string
			if err := tx.QueryRow(ctx, `SELECT set_config('telemetry.rollups', $1, true)`, rollups).Scan(&s); err != nil {
				t.Fatal(err)
			}
			if err := tx.QueryRow(ctx, `SELECT jsonb_agg(to_jsonb(f))::text FROM telemetry.`+f+`($1) f`, id).Scan(&s); err != nil {
				t.Fatalf("%s(%d): %v", f, id, err)
			}
			if s == nil {
				return "none"
			}
			return *s
		}
		// compareRuns compares each run's answers; all but the first skip have their statements.
		compareRuns := func(stage string, skip int) {
			t.Helper()
			for i, id := range runs {
				for _, f := range []string{"run_statements", "diagnose_run"} {
					raw, rolled := runAnswer(f, id, "off"), runAnswer(f, id, "on")
					if raw != rolled {
						t.Errorf("%s of run %d, %s: from the rollups\n%s\nfrom raw rows\n%s", f, id, stage, rolled, raw)
					}
					if f == "run_statements" && i >= skip && !strings.Contains(rolled, `"query": "UPDATE t1 SET`) {
						t.Errorf("run_statements of run %d, %s: the batch's statements missing: %.500s", id, stage, rolled)
					}
				}
			}
		}
		compareRuns("before they were settled", 0)

		// Settled, each run's results are stored once (settle_run, the latest ended first) and
		// the later runs read their baseline runs' from them: the same answers.
		settle := func() []int64 {
			var settled []int64
			for {
				var id *int64
				if err := c.QueryRow(ctx, `SELECT telemetry.settle_run('a')`).Scan(&id); err != nil {
					t.Fatal(err)
				}
				if id == nil {
					return settled
				}
				settled = append(settled, *id)
			}
		}
		if settled := settle(); fmt.Sprint(settled) != fmt.Sprint([]int64{runs[3], runs[2], runs[1], runs[0]}) {
			t.Errorf("settled runs %v, want the four, the latest ended first", settled)
		}
		holds := func(what, sql string, args ...any) {
			t.Helper()
			var ok bool
			if err := c.QueryRow(ctx, sql, args...).Scan(&ok); err != nil || !ok {
				t.Errorf("%s: %v, %v", what, ok, err)
			}
		}
		holds("the four runs' results stored", `SELECT count(*) = 4 FROM telemetry.run_results WHERE complete`)
		compareRuns("settled", 0)
		// The stored results are what answered: emptied, the last run's baseline loses them.
		stored := runAnswer("diagnose_run", runs[3], "on")
		if _, err := c.Exec(ctx, `DELETE FROM telemetry.run_result_measures WHERE run_id <> $1`, runs[3]); err != nil {
			t.Fatal(err)
		}
		if runAnswer("diagnose_run", runs[3], "on") == stored {
			t.Error("diagnose_run did not read its baseline runs' stored measures")
		}
		// So are the statement medians of the baselines the settling completed: the first run's
		// next one (the second run's baseline) and the last's; a changed median changes the
		// second run's statements.
		holds("the first and last runs' next baselines' statement medians stored",
			`SELECT array_agg(run_id ORDER BY run_id) = $1 FROM telemetry.run_results WHERE next_baseline_runs IS NOT NULL`,
			[]int64{runs[0], runs[3]})
		holds("the last run's next baseline is the four",
			`SELECT next_baseline_runs = $2 FROM telemetry.run_results WHERE run_id = $1`, runs[3], runs)
		stored = runAnswer("run_statements", runs[1], "on")
		if _, err := c.Exec(ctx, `UPDATE telemetry.run_result_baseline_statements SET seconds = seconds + 1000 WHERE run_id = $1`, runs[0]); err != nil {
			t.Fatal(err)
		}
		if runAnswer("run_statements", runs[1], "on") == stored {
			t.Error("run_statements did not read its baseline's stored statement medians")
		}
		// A threshold changed: the stored results no longer hold, and are computed again.
		e.exec(`UPDATE telemetry.diagnose_thresholds SET value = value + 1 WHERE name = 'statement_min_extra_seconds'`)
		compareRuns("after a threshold changed", 0)
		if settled := settle(); len(settled) != 4 {
			t.Errorf("after a threshold changed, settled again %v, want the four", settled)
		}
		compareRuns("settled again", 0)

		// The rollups are what answered: a changed rollup changes the day's answer.
		day := func() string {
			var s string
			if err := c.QueryRow(ctx, rollupFunctions["wait_summary"], last.Add(-25*time.Hour), last, "a").Scan(&s); err != nil {
				t.Fatal(err)
			}
			return s
		}
		before := day()
		e.exec(`UPDATE telemetry.wait_time_rollups SET seconds = seconds + 3600 WHERE server = 'a' AND bucket = '1 hour'`)
		if day() == before {
			t.Error("wait_summary over a day did not read the hour rollups")
		}
		// So does diagnose's vacuum finding, over most of a day (0025): 23 hours, which hold no
		// whole UTC day (25 hours ending in the first hour after midnight hold one, read from its
		// day rollup and no hour's, checked below).
		diagnosed := func() string {
			var s string
			if err := c.QueryRow(ctx, rollupFunctions["diagnose"], last.Add(-23*time.Hour), last, "a").Scan(&s); err != nil {
				t.Fatal(err)
			}
			return s
		}
		before = diagnosed()
		e.exec(`UPDATE telemetry.vacuum_rollups SET samples = samples + 1 WHERE server = 'a' AND bucket = '1 hour'`)
		if diagnosed() == before {
			t.Error("diagnose over 23 hours did not read the vacuum rollups by hour")
		}
		// and over its 50 hours, by day.
		var all string
		if err := c.QueryRow(ctx, vacuumEvidence, first, last, "a").Scan(&all); err != nil {
			t.Fatal(err)
		}
		e.exec(`UPDATE telemetry.vacuum_rollups SET samples = samples + 1 WHERE server = 'a' AND bucket = '1 day'`)
		if err := c.QueryRow(ctx, vacuumEvidence, first, last, "a").Scan(&before); err != nil || before == all {
			t.Errorf("diagnose over 50 hours did not read the vacuum rollups by day (%v)", err)
		}
		// And the report's chart of sessions blocked on locks over 50 hours, by the hour (0026).
		if err := c.QueryRow(ctx, rollupFunctions["window_series"], first, last, "a").Scan(&before); err != nil {
			t.Fatal(err)
		}
		e.exec(`UPDATE telemetry.sample_rollups SET lock_max_blocked = lock_max_blocked + 5 WHERE server = 'a' AND bucket = '1 hour'`)
		if err := c.QueryRow(ctx, rollupFunctions["window_series"], first, last, "a").Scan(&all); err != nil || all == before {
			t.Errorf("window_series over 50 hours did not read the most sessions blocked from the hour rollups (%v)", err)
		}
		// And statement_compare over two days reads its whole days' statement waits from the
		// running totals at their ends (0024), not from each day's rollups.
		daysEnd := last.Add(-65 * time.Minute)
		days := func() string {
			var s string
			if err := c.QueryRow(ctx, rollupFunctions["statement_compare"], first.Add(10*time.Minute), daysEnd, "a").Scan(&s); err != nil {
				t.Fatal(err)
			}
			return s
		}
		before = days()
		pgtest.MustExec(t, c, `UPDATE telemetry.statement_wait_rollups SET seconds = seconds + 3600 WHERE server = 'a' AND bucket = '1 day'
			AND captured_at > $1::timestamptz - interval '2 days'`, first)
		if days() != before {
			t.Error("statement_compare over two days read day rollups that its running totals hold")
		}
		// An hour more each day: a difference of totals changes, whichever days it takes.
		pgtest.MustExec(t, c, `UPDATE telemetry.statement_wait_totals SET seconds = seconds + 3600 * extract(epoch FROM captured_at) / 86400
			WHERE server = 'a'`)
		if days() == before {
			t.Error("statement_compare over two days did not read the running totals")
		}
		e.exec(`SELECT telemetry.rollup_rebuild(server, min(captured_at), max(captured_at)) FROM telemetry.samples GROUP BY server`)
		if rebuilt := rollups(); rebuilt != added {
			t.Errorf("rollups rebuilt again differ from those added sample by sample:\n%.2000s\n%.2000s", added, rebuilt)
		}

		// Cleanup keeps the last 44 hours: it cuts into an hour (and a minute) of server a's, and
		// into a day that windows from before the cut read whole from its day rollups.
		cut := last.Add(-44 * time.Hour).Add(-17 * time.Second)
		holds("the running totals hold the statement of the first two hours", `SELECT EXISTS (SELECT FROM telemetry.statement_wait_totals
			WHERE server = 'a' AND queryid = 1005)`)
		e.exec(`SELECT telemetry.cleanup(now() - ` + fmt.Sprintf("'%s'::timestamptz", cut.Format(time.RFC3339Nano)) + `)`)
		// Gone before the day cut into (the oldest totals kept are the next day's), it is in none.
		holds("the statement of the first two hours left the running totals", `SELECT NOT EXISTS (SELECT FROM telemetry.statement_wait_totals
			WHERE server = 'a' AND queryid = 1005)`)
		cutDay := cut.UTC().Truncate(24 * time.Hour)
		compareAll(append(append(windows(last.Add(-46*time.Hour), last), laterDays...), [2]time.Time{cutDay.Add(-time.Minute), cutDay.Add(25 * time.Hour)},
			[2]time.Time{cut.Add(-time.Hour), last}))
		// The runs begun before the cut are read from what is left: their stored results went,
		// and they are not settled again.
		holds("no stored results of runs begun before the cut", `SELECT NOT EXISTS (SELECT FROM telemetry.run_results r
			JOIN telemetry.batch_runs b USING (run_id) WHERE b.started_at < $1)`, cut)
		if settled := settle(); len(settled) != 0 {
			t.Errorf("after the cut, settled %v again, want none", settled)
		}
		var cutRuns int // begun before the cut: their start's statement snapshot is gone
		for _, id := range runs {
			var before bool
			if err := c.QueryRow(ctx, `SELECT started_at < $2 FROM telemetry.batch_runs WHERE run_id = $1`, id, cut).Scan(&before); err != nil {
				t.Fatal(err)
			}
			if before {
				cutRuns++
			}
		}
		compareRuns("after the cut", cutRuns)

		// A sample written late, into a day that a later day's running totals summed (as after
		// an outage the recorder buffered through): the totals up to its day go, and the
		// answers still agree, over its day and after it.
		late := last.Add(-30 * time.Hour).Add(7 * time.Second)
		var lateID int64
		if err := c.QueryRow(ctx, `INSERT INTO telemetry.samples (captured_at, server) VALUES ($1, 'a') RETURNING id`, late).Scan(&lateID); err != nil {
			t.Fatal(err)
		}
		pgtest.MustExec(t, c, `INSERT INTO telemetry.statement_wait_samples (sample_id, batch, queryid, wait_event_type, wait_event,
			before_query_id, query_text, seconds, server, captured_at)
			VALUES ($1, 'nightly', 1001, 'Running', 'CPU', false, '', 11.25, 'a', $2), ($1, '', 1009, 'IO', 'DataFileRead', false, '', 3.5, 'a', $2)`,
			lateID, late)
		pgtest.MustExec(t, c, `INSERT INTO telemetry.progress_samples (sample_id, progress_type, pid, relid, relname, phase, server, captured_at)
			VALUES ($1, 'vacuum', 20001, 16385, 'table_1', 'truncating heap', 'a', $2)`, lateID, late)
		pgtest.MustExec(t, c, `SELECT telemetry._rollup_sample('a', $1, $2)`, lateID, late)
		holds("no running totals up to the late sample's day", `SELECT NOT EXISTS (SELECT FROM telemetry.statement_wait_totals
			WHERE server = 'a' AND captured_at <= date_bin('1 day', $1::timestamptz, timestamptz '1970-01-01 00:00:00+00'))`, late)
		lateDay := late.UTC().Truncate(24 * time.Hour)
		compareAll(append(append(windows(last.Add(-44*time.Hour), last), laterDays...), [2]time.Time{lateDay.Add(-time.Minute), lateDay.Add(25 * time.Hour)},
			[2]time.Time{lateDay.Add(24 * time.Hour), last}))
	})
}

// TestRollupsOnUpgrade: migrations 0025 and 0026 sum the vacuum progress and the sessions
// blocked recorded before them (where the server's rollups are complete) as the recorder adds
// each sample's since; 0028 rolls up the standbys' lag recorded before it as its trigger does.
func TestRollupsOnUpgrade(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		c := e.conn()
		ctx := context.Background()
		for _, sql := range rollupData {
			if _, err := c.Exec(ctx, `WITH args AS (SELECT $1::timestamptz, $2::int, $3::text) `+sql, time.Now().UTC(), 30, "a"); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
		vacuums := func() string {
			var s string
			if err := c.QueryRow(ctx, `SELECT count(*) || ': ' || string_agg(r::text, ',' ORDER BY r::text) FROM telemetry.vacuum_rollups r`).Scan(&s); err != nil {
				t.Fatal(err)
			}
			return s
		}
		blocked := func() string {
			var s string
			if err := c.QueryRow(ctx, `SELECT count(lock_max_blocked) || ': ' || string_agg(r::text, ',' ORDER BY r::text) FROM telemetry.sample_rollups r`).Scan(&s); err != nil {
				t.Fatal(err)
			}
			return s
		}
		standbys := func() string {
			var s string
			if err := c.QueryRow(ctx, `SELECT count(*) || ': ' || string_agg(r::text, ',' ORDER BY r::text) FROM telemetry.replication_rollups r`).Scan(&s); err != nil {
				t.Fatal(err)
			}
			return s
		}
		added, addedBlocked, addedStandbys := vacuums(), blocked(), standbys()
		e.exec(`DELETE FROM telemetry.vacuum_rollups; UPDATE telemetry.sample_rollups SET lock_max_blocked = NULL;
			DELETE FROM telemetry.replication_rollups;
			DELETE FROM telemetry.schema_migrations WHERE name LIKE '0025_%' OR name LIKE '0026_%' OR name LIKE '0028_%'`)
		if err := schema.Migrate(ctx, e.pool); err != nil {
			t.Fatal(err)
		}
		if migrated := standbys(); migrated != addedStandbys || strings.HasPrefix(addedStandbys, "0:") {
			t.Errorf("standbys' rollups after the migration\n%.1000s\nwant, as the rows' trigger added them,\n%.1000s", migrated, addedStandbys)
		}
		if migrated := vacuums(); migrated != added || strings.HasPrefix(added, "0:") {
			t.Errorf("vacuum rollups after the migration\n%.1000s\nwant, as added sample by sample,\n%.1000s", migrated, added)
		}
		if migrated := blocked(); migrated != addedBlocked || strings.HasPrefix(addedBlocked, "0:") {
			t.Errorf("the most sessions blocked after the migration\n%.1000s\nwant, as added sample by sample,\n%.1000s", migrated, addedBlocked)
		}
		// Where the server's rollups are complete from a later hour (recorded before rollups
		// existed), the hours from it on, none before.
		var since time.Time
		if err := c.QueryRow(ctx, `SELECT since + interval '7 hours' FROM telemetry.rollup_coverage WHERE server = 'a'`).Scan(&since); err != nil {
			t.Fatal(err)
		}
		hours := func() string {
			var s string
			if err := c.QueryRow(ctx, `SELECT count(*) FILTER (WHERE captured_at < $1) || ' before; ' || string_agg(r::text, ',' ORDER BY r::text)
				FILTER (WHERE captured_at >= $1) FROM telemetry.vacuum_rollups r WHERE bucket = '1 hour'`, since).Scan(&s); err != nil {
				t.Fatal(err)
			}
			return s
		}
		later := hours()
		pgtest.MustExec(t, c, `UPDATE telemetry.rollup_coverage SET since = $1 WHERE server = 'a'`, since)
		e.exec(`DELETE FROM telemetry.vacuum_rollups; DELETE FROM telemetry.schema_migrations WHERE name LIKE '0025_%'`)
		if err := schema.Migrate(ctx, e.pool); err != nil {
			t.Fatal(err)
		}
		if migrated, want := hours(), "0 before; "+strings.SplitN(later, "; ", 2)[1]; migrated != want {
			t.Errorf("vacuum rollups by hour after the migration, the server's complete from %v\n%.1000s\nwant\n%.1000s", since, migrated, want)
		}
	})
}

// TestRollupDaysInUTC: a window's whole days, and the hours around them, are UTC days and hours
// whatever the session's time zone: a day added in one with summer time (or an offset of half
// an hour) is 23 or 25 hours, and would leave an hour of the window out or count it twice.
func TestRollupDaysInUTC(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		c := e.conn()
		ctx := context.Background()
		e.exec(`INSERT INTO telemetry.rollup_coverage (server, since) VALUES ('dst', '2024-01-01 00:00:00+00')`)
		for _, zone := range []string{"UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"} {
			pgtest.MustExec(t, c, `SELECT set_config('TimeZone', $1, false)`, zone)
			// Over the last Sunday of October 2024 (Berlin's summer time ends) and the first of
			// November (New York's).
			var pieces string
			if err := c.QueryRow(ctx, `SELECT string_agg(format('%s %s %s', bucket, to_char(piece_from AT TIME ZONE 'UTC', 'MM-DD HH24:MI'),
					to_char(piece_to AT TIME ZONE 'UTC', 'MM-DD HH24:MI')), ', ' ORDER BY piece_from, bucket)
				FROM telemetry._rollup_span('2024-10-26 12:30:00+00', '2024-11-04 12:30:00+00', 'dst', false)`).Scan(&pieces); err != nil {
				t.Fatal(err)
			}
			if want := "01:00:00 10-26 13:00 10-27 00:00, 1 day 10-27 00:00 11-04 00:00, 01:00:00 11-04 00:00 11-04 12:00"; pieces != want {
				t.Errorf("time zone %s: the window's pieces\n%s\nwant\n%s", zone, pieces, want)
			}
		}
	})
}
