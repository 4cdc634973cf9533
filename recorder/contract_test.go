package recorder

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// contract is ../shared/spec/telemetry-schema.md: each relation's or function result's
// leading columns, "name type" in order. Appended columns are allowed after them.
var contract = map[string]string{
	"table snapshots": `id integer, captured_at timestamptz, pg_version integer,
		wal_records bigint, wal_fpi bigint, wal_bytes bigint, wal_write_time double precision,
		wal_sync_time double precision, checkpoint_lsn pg_lsn, checkpoint_time timestamptz,
		ckpt_timed bigint, ckpt_requested bigint, ckpt_write_time double precision,
		ckpt_sync_time double precision, ckpt_buffers bigint, bgw_buffers_clean bigint,
		bgw_maxwritten_clean bigint, bgw_buffers_alloc bigint, bgw_buffers_backend bigint,
		bgw_buffers_backend_fsync bigint, autovacuum_workers integer, slots_count integer,
		slots_max_retained_wal bigint, io_checkpointer_writes bigint,
		io_checkpointer_write_time double precision, io_checkpointer_fsyncs bigint,
		io_checkpointer_fsync_time double precision, io_autovacuum_writes bigint,
		io_autovacuum_write_time double precision, io_client_writes bigint,
		io_client_write_time double precision, io_bgwriter_writes bigint,
		io_bgwriter_write_time double precision, temp_files bigint, temp_bytes bigint`,
	"table tracked_tables": `relid oid, schemaname text, relname text, added_at timestamptz`,
	"table table_snapshots": `snapshot_id integer, relid oid, schemaname text, relname text, pg_relation_size bigint,
		pg_total_relation_size bigint, pg_indexes_size bigint, n_live_tup bigint,
		n_dead_tup bigint, n_tup_ins bigint, n_tup_upd bigint, n_tup_del bigint,
		n_tup_hot_upd bigint, last_vacuum timestamptz, last_autovacuum timestamptz,
		last_analyze timestamptz, last_autoanalyze timestamptz, vacuum_count bigint,
		autovacuum_count bigint, analyze_count bigint, autoanalyze_count bigint`,
	"table replication_snapshots": `snapshot_id integer, pid integer,
		client_addr inet, application_name text, state text, sync_state text, sent_lsn pg_lsn,
		write_lsn pg_lsn, flush_lsn pg_lsn, replay_lsn pg_lsn, write_lag interval,
		flush_lag interval, replay_lag interval`,
	"table samples": `id integer, captured_at timestamptz`,
	"table wait_samples": `sample_id integer, backend_type text, wait_event_type text,
		wait_event text, state text, count integer`,
	"table activity_samples": `sample_id integer, pid integer, usename text, application_name text, backend_type text,
		state text, wait_event_type text, wait_event text, query_start timestamptz, state_change timestamptz,
		query_preview text`,
	"table progress_samples": `sample_id integer, progress_type text, pid integer, relid oid, relname text, phase text,
		blocks_total bigint, blocks_done bigint, tuples_total bigint, tuples_done bigint,
		bytes_total bigint, bytes_done bigint, details jsonb`,
	"table lock_samples": `sample_id integer, blocked_pid integer, blocked_user text, blocked_app text,
		blocked_query_preview text, blocked_duration interval, blocking_pid integer,
		blocking_user text, blocking_app text, blocking_query_preview text, lock_type text,
		locked_relation text`,
	"function track_table":         `text`,
	"function untrack_table":       `text`,
	"function list_tracked_tables": `schemaname text, relname text, added_at timestamptz`,
	"function cleanup":             `deleted_snapshots bigint, deleted_samples bigint`,
	"function _pretty_bytes":       `text`,
	"function compare": `start_snapshot_at timestamptz, end_snapshot_at timestamptz, elapsed_seconds numeric,
		checkpoint_occurred boolean, ckpt_timed_delta bigint, ckpt_requested_delta bigint,
		ckpt_write_time_ms numeric, ckpt_sync_time_ms numeric, ckpt_buffers_delta bigint,
		wal_bytes_delta bigint, wal_bytes_pretty text, wal_write_time_ms numeric,
		wal_sync_time_ms numeric, bgw_buffers_clean_delta bigint, bgw_buffers_alloc_delta bigint,
		bgw_buffers_backend_delta bigint, bgw_buffers_backend_fsync_delta bigint,
		slots_count integer, slots_max_retained_wal bigint, slots_max_retained_pretty text,
		io_ckpt_writes_delta bigint, io_ckpt_write_time_ms numeric, io_ckpt_fsyncs_delta bigint,
		io_ckpt_fsync_time_ms numeric, io_autovacuum_writes_delta bigint,
		io_autovacuum_write_time_ms numeric, io_client_writes_delta bigint,
		io_client_write_time_ms numeric, io_bgwriter_writes_delta bigint,
		io_bgwriter_write_time_ms numeric, temp_files_delta bigint, temp_bytes_delta bigint,
		temp_bytes_pretty text`,
	"function table_compare": `table_name text, start_snapshot_at timestamptz, end_snapshot_at timestamptz, elapsed_seconds numeric,
		size_start text, size_end text, size_delta text, total_size_delta text,
		n_live_tup_start bigint, n_live_tup_end bigint, n_dead_tup_end bigint,
		dead_tuple_ratio numeric, inserts_delta bigint,
		updates_delta bigint, deletes_delta bigint, hot_updates_delta bigint,
		autovacuum_ran boolean, autoanalyze_ran boolean, autovacuum_count_delta bigint,
		autoanalyze_count_delta bigint`,
	"function wait_summary": `backend_type text, wait_event_type text, wait_event text, sample_count bigint,
		total_waiters bigint, avg_waiters numeric, max_waiters integer, pct_of_samples numeric`,
	"view deltas": `id integer, captured_at timestamptz, pg_version integer, interval_seconds numeric, checkpoint_occurred boolean,
		ckpt_timed_delta bigint, ckpt_requested_delta bigint, ckpt_write_time_ms numeric, ckpt_sync_time_ms numeric,
		ckpt_buffers_delta bigint, wal_bytes_delta bigint, wal_bytes_pretty text, wal_write_time_ms numeric,
		wal_sync_time_ms numeric, bgw_buffers_clean_delta bigint, bgw_buffers_alloc_delta bigint,
		bgw_buffers_backend_delta bigint, bgw_buffers_backend_fsync_delta bigint,
		autovacuum_workers_active integer, slots_count integer, slots_max_retained_wal bigint, slots_max_retained_pretty text,
		io_ckpt_writes_delta bigint, io_ckpt_write_time_ms numeric, io_ckpt_fsyncs_delta bigint,
		io_ckpt_fsync_time_ms numeric, io_autovacuum_writes_delta bigint,
		io_autovacuum_write_time_ms numeric, io_client_writes_delta bigint,
		io_client_write_time_ms numeric, io_bgwriter_writes_delta bigint,
		io_bgwriter_write_time_ms numeric, temp_files_delta bigint, temp_bytes_delta bigint, temp_bytes_pretty text`,
	"view table_deltas": `snapshot_id integer, captured_at timestamptz, schemaname text, relname text,
		interval_seconds numeric, size_delta_bytes bigint, size_delta_pretty text, total_size_delta_bytes bigint,
		n_live_tup bigint, n_dead_tup bigint, dead_tuple_ratio double precision, inserts_delta bigint,
		updates_delta bigint, deletes_delta bigint, hot_updates_delta bigint, autovacuum_ran boolean, autoanalyze_ran boolean,
		autovacuum_count_delta bigint, autoanalyze_count_delta bigint, last_autovacuum timestamptz, last_autoanalyze timestamptz`,
	"view recent_waits": `captured_at timestamptz, backend_type text, wait_event_type text, wait_event text, state text, count integer`,
	"view recent_activity": `captured_at timestamptz, pid integer, usename text, application_name text, backend_type text, state text,
		wait_event_type text, wait_event text, query_start timestamptz, running_for interval, query_preview text`,
	"view recent_locks": `captured_at timestamptz, blocked_pid integer, blocked_user text, blocked_app text, blocked_duration interval,
		blocking_pid integer, blocking_user text, blocking_app text, lock_type text, locked_relation text,
		blocked_query_preview text, blocking_query_preview text`,
	"view recent_progress": `captured_at timestamptz, progress_type text, pid integer, relname text, phase text, blocks_done bigint,
		blocks_total bigint, blocks_pct numeric, tuples_done bigint, tuples_total bigint, bytes_done bigint, bytes_total bigint,
		bytes_done_pretty text, details jsonb`,
	"view recent_replication": `captured_at timestamptz, pid integer, client_addr inet, application_name text, state text,
		sync_state text, sent_lsn pg_lsn, write_lsn pg_lsn, flush_lsn pg_lsn, replay_lsn pg_lsn, replay_lag_bytes bigint,
		replay_lag_pretty text, write_lag interval, flush_lag interval, replay_lag interval`,
	// Beyond the seed: statements (the spec's own section; a run's verdict is checked in
	// TestRunStatementsContract).
	"function statement_compare": `queryid bigint, query text, calls_delta bigint, total_time_ms double precision,
		mean_time_ms double precision, rows_delta bigint, shared_blks_read_delta bigint, shared_blks_hit_delta bigint,
		temp_blks_written_delta bigint, wal_bytes_delta numeric`,
	"function run_statements": `rank integer, queryid bigint, query text, time_ms double precision,
		baseline_time_ms double precision, calls bigint, baseline_calls double precision, rows bigint,
		baseline_rows double precision, explains_ms double precision, verdict text`,
}

// contractArgs are the functions' leading arguments: "name type", defaults marked "= ...".
var contractArgs = map[string]string{
	"track_table":         `p_table text, p_schema text = 'public'`,
	"untrack_table":       `p_table text, p_schema text = 'public'`,
	"list_tracked_tables": ``,
	"cleanup":             `p_retain_interval interval = '7 days'`,
	"_pretty_bytes":       `bigint`,
	"compare":             `p_start_time timestamptz, p_end_time timestamptz`,
	"table_compare":       `p_table text, p_start_time timestamptz, p_end_time timestamptz, p_schema text = 'public'`,
	"wait_summary":        `p_start_time timestamptz, p_end_time timestamptz`,
	// the statements' API: "each with the optional trailing p_server text DEFAULT NULL"
	"statement_compare": `p_start_time timestamptz, p_end_time timestamptz, p_server text = NULL`,
	"run_statements":    `p_run_id bigint, p_server text = NULL`,
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.Join(strings.Fields(f), " "); f != "" {
			out = append(out, strings.ReplaceAll(f, "timestamptz", "timestamp with time zone"))
		}
	}
	return out
}

func TestContractFromCatalog(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		c := e.conn()
		ctx := context.Background()
		for key, want := range contract {
			kind, name, _ := strings.Cut(key, " ")
			var got []string
			var sql string
			switch kind {
			case "table", "view":
				sql = `SELECT coalesce(array_agg(attname || ' ' || format_type(atttypid, NULL) ORDER BY attnum), '{}')
					FROM pg_attribute WHERE attrelid = to_regclass('telemetry.' || $1) AND attnum > 0 AND NOT attisdropped`
			case "function":
				sql = `SELECT CASE WHEN p.proretset OR p.prorettype = 'record'::regtype
					THEN (SELECT array_agg(n || ' ' || format_type(ty, NULL) ORDER BY i)
					      FROM unnest(p.proallargtypes, p.proargmodes::text[], p.proargnames) WITH ORDINALITY AS a(ty, m, n, i)
					      WHERE m = 't')
					ELSE ARRAY[format_type(p.prorettype, NULL)] END
					FROM pg_proc p WHERE p.pronamespace = 'telemetry'::regnamespace AND p.proname = $1`
			}
			if err := c.QueryRow(ctx, sql, name).Scan(&got); err != nil {
				t.Errorf("%s: %v", key, err)
				continue
			}
			w := splitList(want)
			if len(got) < len(w) || !slices.Equal(got[:len(w)], w) {
				t.Errorf("%s:\n got %v\nwant %v (then appended columns)", key, got, w)
			}
		}
		for name, want := range contractArgs {
			var args []string
			var overloads int
			err := c.QueryRow(ctx, `SELECT count(*) OVER (), string_to_array(pg_get_function_arguments(p.oid), ', ')
				FROM pg_proc p WHERE p.pronamespace = 'telemetry'::regnamespace AND p.proname = $1`, name).Scan(&overloads, &args)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if overloads != 1 {
				t.Errorf("%s has %d overloads, want 1", name, overloads)
			}
			for i, a := range args {
				args[i] = strings.NewReplacer("timestamp with time zone", "timestamptz", " DEFAULT ", " = ", "::text", "", "::interval", "").Replace(a)
			}
			w := splitList(strings.ReplaceAll(want, "timestamp with time zone", "timestamptz"))
			for i := range w {
				w[i] = strings.ReplaceAll(w[i], "timestamp with time zone", "timestamptz")
			}
			if len(args) < len(w) || !slices.Equal(args[:len(w)], w) {
				t.Errorf("%s arguments: got %v, want %v first", name, args, w)
			}
			for _, extra := range args[len(w):] {
				if !strings.Contains(extra, " = ") {
					t.Errorf("%s: appended argument %q has no default", name, extra)
				}
			}
		}
		// The seed's functions and views are all there.
		for _, stmt := range []string{`SELECT telemetry._pretty_bytes(1023)`, `SELECT * FROM telemetry.recent_activity`,
			`SELECT * FROM telemetry.deltas`, `SELECT * FROM telemetry.table_deltas`, `SELECT * FROM telemetry.recent_waits`} {
			if _, err := c.Exec(ctx, stmt); err != nil {
				t.Errorf("%s: %v", stmt, err)
			}
		}
	})
}

func TestPrettyBytes(t *testing.T) {
	e := newEnv(t, pgtest.Start(t, pgtest.Versions()[0]))
	c := e.conn()
	for in, want := range map[int64]string{1023: "1023 B", 1024: "1.00 KB", 1572864: "1.50 MB", 1 << 30: "1.00 GB"} {
		var got string
		if err := c.QueryRow(context.Background(), `SELECT telemetry._pretty_bytes($1)`, in).Scan(&got); err != nil || got != want {
			t.Errorf("_pretty_bytes(%d) = %q, %v; want %q", in, got, err, want)
		}
	}
	var null *string
	if err := c.QueryRow(context.Background(), `SELECT telemetry._pretty_bytes(NULL)`).Scan(&null); err != nil || null != nil {
		t.Errorf("_pretty_bytes(NULL) = %v, %v", null, err)
	}
}
