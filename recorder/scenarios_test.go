package recorder

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// untilCompare records snapshots until compare() over [start, that snapshot] satisfies cond
// (server-wide statistics are flushed asynchronously), and returns that row.
func (e *env) untilCompare(c *pgx.Conn, start time.Time, cond string) map[string]any {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		end := e.record(collectors.TierSnapshot)
		rows := pgtest.Query(e.t, c, `SELECT *, (`+cond+`) AS ok FROM telemetry.compare($1, $2)`, start, end)
		if len(rows) == 1 && rows[0]["ok"] == true {
			return rows[0]
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("compare never satisfied %s: %v", cond, rows)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestScenarioCheckpointAndTempSpill(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		c := e.conn()
		start := e.record(collectors.TierSnapshot)
		e.exec(`CREATE TABLE batch AS SELECT g AS id, repeat('x', 100) AS pad FROM generate_series(1, 20000) g; CHECKPOINT`)
		row := e.untilCompare(c, start, `checkpoint_occurred AND ckpt_requested_delta >= 1 AND wal_bytes_delta > 0`)
		if row["wal_bytes_pretty"] == nil {
			t.Errorf("wal_bytes_pretty is NULL: %v", row)
		}
		start = e.record(collectors.TierSnapshot)
		e.exec(`SET work_mem = '64kB'; SELECT count(*) FROM (SELECT * FROM generate_series(1, 200000) g ORDER BY g DESC) s`)
		row = e.untilCompare(c, start, `temp_files_delta >= 1 AND temp_bytes_delta > 0`)
		if p, _ := row["temp_bytes_pretty"].(string); !strings.HasSuffix(p, "B") {
			t.Errorf("temp_bytes_pretty = %v", row["temp_bytes_pretty"])
		}
	})
}

func TestScenarioLockWaits(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		e.exec(`CREATE TABLE t (id int)`)
		ctx := context.Background()
		holder, waiter, jumper := e.conn(), e.conn(), e.conn()
		// holder has ACCESS SHARE; waiter queues for ACCESS EXCLUSIVE behind it; jumper's
		// ACCESS SHARE is compatible with holder's but queues behind waiter's request.
		if _, err := holder.Exec(ctx, `BEGIN; SELECT * FROM t`); err != nil {
			t.Fatal(err)
		}
		var holderPID, waiterPID, jumperPID int32
		for _, p := range []struct {
			c   *pgx.Conn
			pid *int32
		}{{holder, &holderPID}, {waiter, &waiterPID}, {jumper, &jumperPID}} {
			if err := p.c.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(p.pid); err != nil {
				t.Fatal(err)
			}
		}
		done := make(chan error, 1)
		waited := make(chan error, 1)
		go func() { _, err := waiter.Exec(ctx, `BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE`); waited <- err }()
		watch := e.conn()
		eventually(t, watch, `SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1`, waiterPID)
		go func() { _, err := jumper.Exec(ctx, `SELECT * FROM t`); done <- err }()
		eventually(t, watch, `SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1`, jumperPID)

		e.record(collectors.TierSample)
		var want []string
		for _, pid := range []int32{waiterPID, jumperPID} {
			var blockers []int32
			if err := watch.QueryRow(ctx, `SELECT pg_blocking_pids($1)`, pid).Scan(&blockers); err != nil {
				t.Fatal(err)
			}
			for _, b := range blockers {
				want = append(want, fmt.Sprint(pid, "<-", b))
			}
		}
		rows := pgtest.Query(t, watch, `SELECT blocked_pid, blocking_pid, blocked_duration, locked_relation, lock_type FROM telemetry.recent_locks`)
		var got []string
		for _, r := range rows {
			got = append(got, fmt.Sprint(r["blocked_pid"], "<-", r["blocking_pid"]))
			if r["locked_relation"] != "public.t" || r["lock_type"] != "relation" || r["blocked_duration"] == nil {
				t.Errorf("lock row %v", r)
			}
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) || !slices.Contains(got, fmt.Sprint(jumperPID, "<-", waiterPID)) {
			t.Errorf("recorded pairs %v, pg_blocking_pids says %v (jumper %d must wait for waiter %d)", got, want, jumperPID, waiterPID)
		}
		if _, err := holder.Exec(ctx, `COMMIT`); err != nil {
			t.Fatal(err)
		}
		if err := <-waited; err != nil {
			t.Fatal(err)
		}
		if _, err := waiter.Exec(ctx, `COMMIT`); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

func TestScenarioProgress(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		e.exec(`CREATE TABLE big (id int, pad text) WITH (autovacuum_enabled = off);
			INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 30000) g; DELETE FROM big WHERE id % 2 = 0`)
		ctx := context.Background()
		watch := e.conn()
		// Each command is slowed down (cost delay) or held (an open writer for CREATE INDEX
		// CONCURRENTLY, an unfinished COPY) so that a sample sees it running.
		ops := []struct{ typ, setup, cmd string }{
			{"vacuum", `SET vacuum_cost_delay = '100ms'; SET vacuum_cost_limit = 1`, `VACUUM big`},
			{"analyze", `SET vacuum_cost_delay = '100ms'; SET vacuum_cost_limit = 1`, `ANALYZE big`},
			{"create_index", ``, `CREATE INDEX CONCURRENTLY big_id ON big (id)`},
			{"copy", ``, `COPY big FROM STDIN`},
		}
		writer := e.conn()
		if _, err := writer.Exec(ctx, `BEGIN; INSERT INTO big VALUES (0, 'held')`); err != nil {
			t.Fatal(err)
		}
		for _, op := range ops {
			c := e.conn()
			var pid int32
			if err := c.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
				t.Fatal(err)
			}
			if op.setup != "" {
				if _, err := c.Exec(ctx, op.setup); err != nil {
					t.Fatal(err)
				}
			}
			opCtx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() {
				defer close(done)
				if op.typ == "copy" {
					_, _ = c.PgConn().CopyFrom(opCtx, blockingReader{ctx: opCtx}, op.cmd)
					return
				}
				_, _ = c.Exec(ctx, op.cmd)
			}()
			view := map[string]string{"vacuum": "vacuum", "analyze": "analyze", "create_index": "create_index", "copy": "copy"}[op.typ]
			eventually(t, watch, `SELECT EXISTS (SELECT FROM pg_stat_progress_`+view+` WHERE pid = $1)`, pid)
			e.record(collectors.TierSample)
			rows := pgtest.Query(t, watch, `SELECT * FROM telemetry.recent_progress WHERE progress_type = $1 AND pid = $2`, op.typ, pid)
			if len(rows) != 1 || rows[0]["relname"] != "big" || rows[0]["details"] == nil || rows[0]["datname"] == nil {
				t.Errorf("%s: recent_progress %v", op.typ, rows)
			}
			if _, err := watch.Exec(ctx, `SELECT pg_cancel_backend($1)`, pid); err != nil {
				t.Fatal(err)
			}
			cancel() // ends the COPY's data stream
			<-done
		}
	})
}

// blockingReader is a COPY source that sends nothing until ctx ends or it is cancelled.
type blockingReader struct{ ctx context.Context }

func (r blockingReader) Read([]byte) (int, error) {
	<-r.ctx.Done()
	return 0, r.ctx.Err()
}

func TestScenarioAutovacuumOnTrackedTable(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		c := e.conn()
		e.exec(`CREATE TABLE av (id int) WITH (autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0,
			autovacuum_analyze_threshold = 0, autovacuum_analyze_scale_factor = 0);
			SELECT telemetry.track_table('av')`)
		start := e.record(collectors.TierSnapshot)
		e.exec(`INSERT INTO av SELECT generate_series(1, 5000); DELETE FROM av WHERE id <= 2500`)
		eventually(t, c, `SELECT autovacuum_count > 0 AND autoanalyze_count > 0 FROM pg_stat_user_tables WHERE relname = 'av'`)
		end := e.record(collectors.TierSnapshot)
		rows := pgtest.Query(t, c, `SELECT * FROM telemetry.table_compare('av', $1, $2)`, start, end)
		if len(rows) != 1 || rows[0]["autovacuum_ran"] != true || rows[0]["autoanalyze_ran"] != true ||
			rows[0]["autovacuum_count_delta"].(int64) < 1 || rows[0]["deletes_delta"] != int64(2500) {
			t.Errorf("table_compare: %v", rows)
		}
		deltas := pgtest.Query(t, c, `SELECT * FROM telemetry.table_deltas WHERE relname = 'av'`)
		if len(deltas) != 1 || deltas[0]["autovacuum_ran"] != true || deltas[0]["inserts_delta"] != int64(5000) {
			t.Errorf("table_deltas: %v", deltas)
		}
	})
}

func TestScenarioReplicationSlotRetainsWAL(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		c := e.conn()
		slot := fmt.Sprintf("telemetry_test_%d", time.Now().UnixNano())
		e.exec(`SELECT pg_create_physical_replication_slot('` + slot + `', true)`)
		t.Cleanup(func() { e.exec(`SELECT pg_drop_replication_slot('` + slot + `')`) })
		start := e.record(collectors.TierSnapshot)
		e.exec(`CREATE TABLE w AS SELECT generate_series(1, 50000) g`)
		row := e.untilCompare(c, start, `slots_count >= 1 AND slots_max_retained_wal > 0`)
		if row["slots_max_retained_pretty"] == nil {
			t.Errorf("compare: %v", row)
		}
	})
}

// A statistics reset between two snapshots gives NULL deltas, never negative ones. On a
// private server: the reset would disturb the other tests' deltas.
func TestScenarioStatsResetGivesNullDeltas(t *testing.T) {
	v := pgtest.Versions()[len(pgtest.Versions())-1]
	srv := pgtest.StartWith(t, v, pgtest.Options{Private: true})
	e := newEnv(t, srv)
	c := e.conn()
	start := e.record(collectors.TierSnapshot)
	e.exec(`CREATE TABLE x AS SELECT generate_series(1, 10000) g; CHECKPOINT`)
	e.untilCompare(c, start, `wal_bytes_delta > 0 AND ckpt_requested_delta >= 1`)
	e.exec(`SELECT pg_stat_reset_shared('wal'); SELECT pg_stat_reset_shared('` + map[bool]string{true: "checkpointer", false: "bgwriter"}[v >= 17] + `')`)
	end := e.record(collectors.TierSnapshot)
	rows := pgtest.Query(t, c, `SELECT * FROM telemetry.compare($1, $2)`, start, end)
	if len(rows) != 1 || rows[0]["wal_bytes_delta"] != nil || rows[0]["ckpt_requested_delta"] != nil {
		t.Errorf("compare across a reset: %v", rows)
	}
	var negative int
	if err := c.QueryRow(context.Background(), `SELECT count(*) FROM telemetry.deltas
		WHERE wal_bytes_delta < 0 OR ckpt_requested_delta < 0 OR ckpt_timed_delta < 0 OR ckpt_buffers_delta < 0
		   OR ckpt_write_time_ms < 0 OR temp_bytes_delta < 0 OR io_client_writes_delta < 0`).Scan(&negative); err != nil || negative != 0 {
		t.Errorf("negative deltas: %d, %v", negative, err)
	}
}

func TestCleanupAndRetention(t *testing.T) {
	e := newEnv(t, pgtest.Start(t, pgtest.Versions()[0]))
	c := e.conn()
	ctx := context.Background()
	e.record(collectors.TierSnapshot)
	e.record(collectors.TierSample)
	// Old rows: 3 snapshots and 2 samples (each with a child row), 8 and 10 days back.
	e.exec(`
		SELECT telemetry._ensure_partitions(now() - d * interval '1 day') FROM unnest(ARRAY[8, 10]) d;
		INSERT INTO telemetry.snapshots (captured_at, pg_version, server)
		SELECT now() - interval '8 days' - n * interval '1 minute', 15, 'old' FROM generate_series(1, 2) n
		UNION ALL SELECT now() - interval '10 days', 15, 'old';
		INSERT INTO telemetry.table_snapshots (snapshot_id, relid, server, captured_at)
		SELECT id, 1, server, captured_at FROM telemetry.snapshots WHERE server = 'old';
		INSERT INTO telemetry.samples (captured_at, server) VALUES (now() - interval '8 days', 'old'), (now() - interval '10 days', 'old');
		INSERT INTO telemetry.wait_samples (sample_id, backend_type, wait_event_type, wait_event, state, count, server, captured_at)
		SELECT id, 'client backend', 'Running', 'CPU', 'active', 1, server, captured_at FROM telemetry.samples WHERE server = 'old'`)
	rows := pgtest.Query(t, c, `SELECT * FROM telemetry.cleanup('7 days')`)
	if len(rows) != 1 || rows[0]["deleted_snapshots"] != int64(3) || rows[0]["deleted_samples"] != int64(2) {
		t.Errorf("cleanup: %v", rows)
	}
	var left int
	if err := c.QueryRow(ctx, `SELECT (SELECT count(*) FROM telemetry.table_snapshots WHERE server = 'old')
		+ (SELECT count(*) FROM telemetry.wait_samples WHERE server = 'old')`).Scan(&left); err != nil || left != 0 {
		t.Errorf("children left behind: %d, %v", left, err)
	}
	if got := pgtest.Query(t, c, `SELECT * FROM telemetry.cleanup()`); got[0]["deleted_snapshots"] != int64(0) {
		t.Errorf("second cleanup: %v", got)
	}
	// The recorder's retention drops whole days.
	e.exec(`SELECT telemetry._ensure_partitions(now() - interval '9 days')`)
	if err := e.rec.applyRetention(ctx); err != nil {
		t.Fatal(err)
	}
	var partitions int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_inherits WHERE inhparent = 'telemetry.samples'::regclass`).Scan(&partitions); err != nil || partitions != 1 {
		t.Errorf("sample partitions after retention: %d, %v (want today's only)", partitions, err)
	}
}

// TestScenarioResetThenRegrowthGivesNullDeltas: after pg_stat_reset_shared('io') and
// pg_stat_reset(), counters that grow back past their old values are not read as growth: the
// recorded reset times make io_* (16+) and the tracked table's deltas NULL. Private servers:
// the resets would disturb the other tests' deltas.
func TestScenarioResetThenRegrowthGivesNullDeltas(t *testing.T) {
	for _, v := range pgtest.Versions() {
		t.Run(fmt.Sprintf("pg%d", v), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, pgtest.StartWith(t, v, pgtest.Options{Private: true}))
			c := e.conn()
			ctx := context.Background()
			pgtest.MustExec(t, c, `CREATE TABLE public.r (g int)`)
			pgtest.MustExec(t, c, `SELECT telemetry.track_table('r')`)
			insert := func(n int) {
				pgtest.MustExec(t, c, `SELECT pg_stat_force_next_flush()`)
				pgtest.MustExec(t, c, `INSERT INTO public.r SELECT generate_series(1, $1)`, n)
			}
			insert(100)
			pgtest.MustExec(t, c, `CHECKPOINT`)
			eventually(t, c, `SELECT n_tup_ins = 100 FROM pg_stat_user_tables WHERE relid = 'public.r'::regclass`)
			start := e.record(collectors.TierSnapshot)
			var ckptWrites *int64
			if err := c.QueryRow(ctx, `SELECT io_checkpointer_writes FROM telemetry.snapshots WHERE captured_at = $1`, start).Scan(&ckptWrites); err != nil {
				t.Fatal(err)
			}

			pgtest.MustExec(t, c, `SELECT pg_stat_reset()`)
			if v >= 16 {
				pgtest.MustExec(t, c, `SELECT pg_stat_reset_shared('io')`)
				// More checkpoint writes than before the reset.
				pgtest.MustExec(t, c, `CREATE TABLE public.dirty (g int)`)
				for range 20 {
					pgtest.MustExec(t, c, `INSERT INTO public.dirty SELECT generate_series(1, 50000); CHECKPOINT`)
					var now int64
					if err := c.QueryRow(ctx, `SELECT sum(writes)::bigint FROM pg_stat_io WHERE backend_type = 'checkpointer'`).Scan(&now); err != nil {
						t.Fatal(err)
					}
					if now > *ckptWrites {
						break
					}
				}
			}
			insert(300)
			eventually(t, c, `SELECT n_tup_ins = 300 FROM pg_stat_user_tables WHERE relid = 'public.r'::regclass`)
			end := e.record(collectors.TierSnapshot)

			if v >= 16 {
				rows := pgtest.Query(t, c, `SELECT s.io_checkpointer_writes AS before, e.io_checkpointer_writes AS after, d.io_ckpt_writes_delta
					FROM telemetry.snapshots s, telemetry.snapshots e, telemetry.compare($1, $2) d
					WHERE s.captured_at = $1 AND e.captured_at = $2`, start, end)
				if len(rows) != 1 || rows[0]["after"].(int64) <= rows[0]["before"].(int64) || rows[0]["io_ckpt_writes_delta"] != nil {
					t.Errorf("checkpointer writes grown back past their old value across a reset: %v, want io_ckpt_writes_delta NULL", rows)
				}
			}
			rows := pgtest.Query(t, c, `SELECT inserts_delta FROM telemetry.table_compare('r', $1, $2)`, start, end)
			if len(rows) != 1 || rows[0]["inserts_delta"] != nil {
				t.Errorf("table_compare across pg_stat_reset(), 100 inserts then 300: %v, want inserts_delta NULL", rows)
			}
			rows = pgtest.Query(t, c, `SELECT inserts_delta FROM telemetry.table_deltas WHERE relname = 'r' AND captured_at = $1`, end)
			if len(rows) != 1 || rows[0]["inserts_delta"] != nil {
				t.Errorf("table_deltas across pg_stat_reset(): %v, want inserts_delta NULL", rows)
			}
		})
	}
}

// TestCountersThatMoved: what 17 and 18 moved out of the views the seed read is filled from
// where it went (../shared/spec/pg-catalog-by-version.md). io_client_buffer_writes (0027) is what
// bgw_buffers_backend was, on 17 and later: pg_stat_io's client-backend writes of relations,
// never the WAL's, which 18 counts there too (a batch's commits looked like buffers backends
// wrote). wal_write_time is pg_stat_io's WAL write time on 18 (pg_stat_wal's before). After a
// transaction writing some 50 MB of WAL through 1 MB of WAL buffers, by the Go recorder's
// snapshots and by telemetry.snapshot(): on 18, io_client_writes counts the WAL's writes beyond
// io_client_buffer_writes; on 17 this counts the insert's evictions, no more than
// io_client_writes; before 17 it is NULL, as bgw_buffers_backend is not; and the WAL's write
// time grew on every version (track_wal_io_timing is on).
func TestCountersThatMoved(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		c := e.conn()
		e.exec(`CREATE TABLE batch (id int, pad text)`)
		for _, by := range []string{"the recorder", "snapshot()"} {
			snapshot := func() (at time.Time) {
				if by == "the recorder" {
					return e.record(collectors.TierSnapshot)
				}
				if err := c.QueryRow(context.Background(), `SELECT telemetry.snapshot()`).Scan(&at); err != nil {
					t.Fatal(err)
				}
				return at
			}
			start := snapshot()
			e.exec(`INSERT INTO batch SELECT g, repeat('x', 500) FROM generate_series(1, 100000) g`)
			// A session's I/O counts reach pg_stat_io when it flushes its statistics (idle, at
			// most a second late, or as it exits): read again until they show, 20 s at most.
			for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
				row := pgtest.Query(t, c, `SELECT io_client_buffer_writes_delta AS buffers, io_client_writes_delta AS all_writes,
					bgw_buffers_backend_delta AS before17, wal_write_time_ms > 0 AS wal_timed FROM telemetry.compare($1, $2)`, start, snapshot())[0]
				buffers, _ := row["buffers"].(int64)
				all, _ := row["all_writes"].(int64)
				var problem string
				switch major := srv.Major; {
				case row["wal_timed"] != true:
					problem = "want the WAL's write time to have grown"
				case major < 17:
					if row["buffers"] != nil || row["before17"] == nil {
						problem = "want io_client_buffer_writes NULL and bgw_buffers_backend not"
					}
				case major == 17:
					if row["buffers"] == nil || buffers == 0 || buffers > all {
						problem = "want io_client_buffer_writes to count the insert's evictions, and at most io_client_writes"
					}
				default:
					if row["buffers"] == nil || all-buffers < 10 {
						problem = "want io_client_writes to count the WAL's writes beyond io_client_buffer_writes"
					}
				}
				if problem == "" {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("%s: %v, %s", by, row, problem)
					break
				}
			}
		}
	})
}
