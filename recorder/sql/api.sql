-- The seed's SQL API: tracking, compare, table_compare, wait_summary, cleanup and the views.
-- Analysis functions take the server as an optional last parameter (one function each, no
-- overloads, so the Quick Start's untyped literals still resolve).

CREATE OR REPLACE FUNCTION telemetry._pretty_bytes(bigint)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE
        WHEN $1 IS NULL THEN NULL
        WHEN abs($1) < 1024 THEN $1 || ' B'
        WHEN abs($1) < 1024::numeric ^ 2 THEN round($1 / 1024::numeric, 2) || ' KB'
        WHEN abs($1) < 1024::numeric ^ 3 THEN round($1 / 1024::numeric ^ 2, 2) || ' MB'
        WHEN abs($1) < 1024::numeric ^ 4 THEN round($1 / 1024::numeric ^ 3, 2) || ' GB'
        ELSE round($1 / 1024::numeric ^ 4, 2) || ' TB'
    END
$$;

-- _delta is a counter's growth: NULL (never negative) across a statistics reset or restart,
-- which p_same_epoch says (the counters' stats_reset did not change) where it is known, and a
-- counter going backwards shows otherwise.
CREATE OR REPLACE FUNCTION telemetry._delta(p_end bigint, p_start bigint, p_same_epoch boolean DEFAULT true)
RETURNS bigint LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN p_same_epoch AND p_end >= p_start THEN p_end - p_start END
$$;
CREATE OR REPLACE FUNCTION telemetry._delta_ms(p_end double precision, p_start double precision, p_same_epoch boolean DEFAULT true)
RETURNS numeric LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN p_same_epoch AND p_end >= p_start THEN round((p_end - p_start)::numeric, 3) END
$$;

-- _table_epoch says whether table counters kept counting between two snapshots: pg_stat_reset()
-- and pg_stat_reset_single_table_counters() restart them and set the database's stats_reset.
CREATE OR REPLACE FUNCTION telemetry._table_epoch(p_start_id integer, p_start_at timestamptz,
    p_end_id integer, p_end_at timestamptz)
RETURNS boolean LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN (
        SELECT e.db_stats_reset IS NOT DISTINCT FROM s.db_stats_reset
        FROM telemetry.snapshots s, telemetry.snapshots e
        WHERE s.id = p_start_id AND s.captured_at = p_start_at AND e.id = p_end_id AND e.captured_at = p_end_at);
END
$$;

-- _resolve_server names the server an analysis is about: the one given, else the only one
-- recorded; with several recorded and none named it raises an error listing them.
CREATE OR REPLACE FUNCTION telemetry._resolve_server(p_server text)
RETURNS text LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_count integer;
    v_names text;
BEGIN
    SELECT count(*), string_agg(server, ', ' ORDER BY server) INTO v_count, v_names FROM telemetry.servers;
    IF p_server IS NOT NULL THEN
        IF NOT EXISTS (SELECT FROM telemetry.servers WHERE server = p_server) THEN
            RAISE EXCEPTION 'no server named % is recorded (recorded: %)', quote_literal(p_server), coalesce(v_names, 'none yet')
                USING HINT = 'SELECT server FROM telemetry.servers';
        END IF;
        RETURN p_server;
    END IF;
    IF v_count > 1 THEN
        RAISE EXCEPTION 'several servers are recorded (%): name one as the last argument', v_names
            USING HINT = 'SELECT server FROM telemetry.servers';
    END IF;
    RETURN (SELECT server FROM telemetry.servers);
END
$$;

-- _window_server checks an analysis window (two times _check_time accepts, the end not before the start)
-- and names its server as _resolve_server does.
CREATE OR REPLACE FUNCTION telemetry._window_server(p_start_time timestamptz, p_end_time timestamptz, p_server text)
RETURNS text LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_start_time IS NULL OR p_end_time IS NULL THEN
        RAISE EXCEPTION 'a window needs a start and an end time';
    END IF;
    PERFORM telemetry._check_time(p_start_time, 'the window''s start'), telemetry._check_time(p_end_time, 'the window''s end');
    IF p_end_time < p_start_time THEN
        RAISE EXCEPTION 'the end (%) is before the start (%)', p_end_time, p_start_time;
    END IF;
    RETURN telemetry._resolve_server(p_server);
END
$$;

CREATE OR REPLACE FUNCTION telemetry.track_table(p_table text, p_schema text DEFAULT 'public')
RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_relid oid;
BEGIN
    -- Looked up by name, never spliced into SQL.
    SELECT c.oid INTO v_relid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = p_schema AND c.relname = p_table AND c.relkind IN ('r', 'p', 'm');
    IF v_relid IS NULL THEN
        RAISE EXCEPTION 'Table %.% not found', p_schema, p_table;
    END IF;
    INSERT INTO telemetry.tracked_tables (relid, schemaname, relname) VALUES (v_relid, p_schema, p_table)
    ON CONFLICT (relid) DO NOTHING;
    RETURN format('Now tracking %s.%s', p_schema, p_table);
END
$$;
REVOKE EXECUTE ON FUNCTION telemetry.track_table(text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION telemetry.untrack_table(p_table text, p_schema text DEFAULT 'public')
RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM telemetry.tracked_tables WHERE schemaname = p_schema AND relname = p_table;
    IF FOUND THEN
        RETURN format('Stopped tracking %s.%s', p_schema, p_table);
    END IF;
    RETURN format('Table %s.%s was not being tracked', p_schema, p_table);
END
$$;
REVOKE EXECUTE ON FUNCTION telemetry.untrack_table(text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION telemetry.list_tracked_tables()
RETURNS TABLE (schemaname text, relname text, added_at timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT t.schemaname, t.relname, t.added_at FROM telemetry.tracked_tables t ORDER BY 1, 2
$$;


-- _request_snapshot asks the recorder (LISTENing on this channel) for a snapshot now: a batch's
-- boundary (p_boundary) gets one of its own at once, and batch_begin's names its run
-- (p_run_id), whose start read that snapshot becomes (batch_runs.start_snapshot_at); other
-- requests are spaced by --recorder.request-min-interval. SECURITY DEFINER: a writer needs no
-- privilege on snapshot_requests.
DROP FUNCTION IF EXISTS telemetry._request_snapshot(boolean);
CREATE OR REPLACE FUNCTION telemetry._request_snapshot(p_boundary boolean, p_run_id bigint)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- Requests no recorder consumed (none listening: pg_cron mode) do not pile up.
    DELETE FROM telemetry.snapshot_requests WHERE requested_at < clock_timestamp() - interval '1 minute';
    INSERT INTO telemetry.snapshot_requests (boundary, run_id) VALUES (p_boundary, p_run_id);
    -- A payload of its own: a transaction's identical notifications are folded into one.
    PERFORM pg_notify('telemetry_request_snapshot', clock_timestamp()::text);
END
$$;
REVOKE EXECUTE ON FUNCTION telemetry._request_snapshot(boolean, bigint) FROM PUBLIC;

-- request_snapshot asks the recorder for a snapshot now (at most one per
-- --recorder.request-min-interval).
CREATE OR REPLACE FUNCTION telemetry.request_snapshot()
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM telemetry._request_snapshot(false, NULL);
END
$$;
REVOKE EXECUTE ON FUNCTION telemetry.request_snapshot() FROM PUBLIC;

-- _snapshot_diff is one snapshot against an earlier one: the delta columns that compare()
-- and the deltas view share.
DROP TYPE IF EXISTS telemetry._snapshot_diff CASCADE;
CREATE TYPE telemetry._snapshot_diff AS (
    elapsed_seconds numeric, checkpoint_occurred boolean,
    ckpt_timed_delta bigint, ckpt_requested_delta bigint, ckpt_write_time_ms numeric,
    ckpt_sync_time_ms numeric, ckpt_buffers_delta bigint, wal_bytes_delta bigint,
    wal_bytes_pretty text, wal_write_time_ms numeric, wal_sync_time_ms numeric,
    bgw_buffers_clean_delta bigint, bgw_buffers_alloc_delta bigint, bgw_buffers_backend_delta bigint,
    bgw_buffers_backend_fsync_delta bigint, slots_count integer, slots_max_retained_wal bigint,
    slots_max_retained_pretty text,
    io_ckpt_writes_delta bigint, io_ckpt_write_time_ms numeric, io_ckpt_fsyncs_delta bigint,
    io_ckpt_fsync_time_ms numeric, io_autovacuum_writes_delta bigint, io_autovacuum_write_time_ms numeric,
    io_client_writes_delta bigint, io_client_write_time_ms numeric, io_bgwriter_writes_delta bigint,
    io_bgwriter_write_time_ms numeric, temp_files_delta bigint, temp_bytes_delta bigint,
    temp_bytes_pretty text, io_client_buffer_writes_delta bigint);

CREATE OR REPLACE FUNCTION telemetry._snapshot_diff(s telemetry.snapshots, e telemetry.snapshots)
RETURNS telemetry._snapshot_diff LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT ROW(
        round(extract(epoch FROM e.captured_at - s.captured_at), 3),
        -- checkpoint_time has a resolution of one second: the location tells two apart within one.
        e.checkpoint_time IS DISTINCT FROM s.checkpoint_time OR e.checkpoint_lsn IS DISTINCT FROM s.checkpoint_lsn,
        telemetry._delta(e.ckpt_timed, s.ckpt_timed, e.ckpt_stats_reset IS NOT DISTINCT FROM s.ckpt_stats_reset),
        telemetry._delta(e.ckpt_requested, s.ckpt_requested, e.ckpt_stats_reset IS NOT DISTINCT FROM s.ckpt_stats_reset),
        telemetry._delta_ms(e.ckpt_write_time, s.ckpt_write_time, e.ckpt_stats_reset IS NOT DISTINCT FROM s.ckpt_stats_reset),
        telemetry._delta_ms(e.ckpt_sync_time, s.ckpt_sync_time, e.ckpt_stats_reset IS NOT DISTINCT FROM s.ckpt_stats_reset),
        telemetry._delta(e.ckpt_buffers, s.ckpt_buffers, e.ckpt_stats_reset IS NOT DISTINCT FROM s.ckpt_stats_reset),
        telemetry._delta(e.wal_bytes, s.wal_bytes, e.wal_stats_reset IS NOT DISTINCT FROM s.wal_stats_reset),
        telemetry._pretty_bytes(telemetry._delta(e.wal_bytes, s.wal_bytes, e.wal_stats_reset IS NOT DISTINCT FROM s.wal_stats_reset)),
        -- (from 18 in pg_stat_io: its reset too)
        telemetry._delta_ms(e.wal_write_time, s.wal_write_time, e.wal_stats_reset IS NOT DISTINCT FROM s.wal_stats_reset
                            AND (e.pg_version < 18 OR e.io_stats_reset IS NOT DISTINCT FROM s.io_stats_reset)),
        telemetry._delta_ms(e.wal_sync_time, s.wal_sync_time, e.wal_stats_reset IS NOT DISTINCT FROM s.wal_stats_reset
                            AND (e.pg_version < 18 OR e.io_stats_reset IS NOT DISTINCT FROM s.io_stats_reset)),
        telemetry._delta(e.bgw_buffers_clean, s.bgw_buffers_clean, e.bgw_stats_reset IS NOT DISTINCT FROM s.bgw_stats_reset),
        telemetry._delta(e.bgw_buffers_alloc, s.bgw_buffers_alloc, e.bgw_stats_reset IS NOT DISTINCT FROM s.bgw_stats_reset),
        telemetry._delta(e.bgw_buffers_backend, s.bgw_buffers_backend, e.bgw_stats_reset IS NOT DISTINCT FROM s.bgw_stats_reset),
        telemetry._delta(e.bgw_buffers_backend_fsync, s.bgw_buffers_backend_fsync, e.bgw_stats_reset IS NOT DISTINCT FROM s.bgw_stats_reset),
        e.slots_count, e.slots_max_retained_wal, telemetry._pretty_bytes(e.slots_max_retained_wal),
        telemetry._delta(e.io_checkpointer_writes, s.io_checkpointer_writes, e.io_stats_reset IS NOT DISTINCT FROM s.io_stats_reset),
        telemetry._delta_ms(e.io_checkpointer_write_time, s.io_checkpointer_write_time, e.io_stats_reset IS NOT DISTINCT FROM s.io_stats_reset),
        telemetry._delta(e.io_checkpointer_fsyncs, s.io_checkpointer_fsyncs, e.io_stats_reset IS NOT DISTINCT FROM s.io_stats_reset),
        telemetry._delta_ms(e.io_checkpointer_fsync_time, s.io_checkpointer_fsync_time, e.io_stats_reset IS NOT DISTINCT FROM s.io_stats_reset),
        telemetry._delta(e.io_autovacuum_writes, s.io_autovacuum_writes, e.io_stats_reset IS NOT DISTINCT FROM s.io_stats_reset),
        telemetry._delta_ms(e.io_autovacuum_write_time, s.io_autovacuum_write_time, e.io_stats_reset IS NOT DISTINCT FROM s.io_stats_reset),
        telemetry._delta(e.io_client_writes, s.io_client_writes, e.io_stats_reset IS NOT DISTINCT FROM s.io_stats_reset),
        telemetry._delta_ms(e.io_client_write_time, s.io_client_write_time, e.io_stats_reset IS NOT DISTINCT FROM s.io_stats_reset),
        telemetry._delta(e.io_bgwriter_writes, s.io_bgwriter_writes, e.io_stats_reset IS NOT DISTINCT FROM s.io_stats_reset),
        telemetry._delta_ms(e.io_bgwriter_write_time, s.io_bgwriter_write_time, e.io_stats_reset IS NOT DISTINCT FROM s.io_stats_reset),
        telemetry._delta(e.temp_files, s.temp_files, e.db_stats_reset IS NOT DISTINCT FROM s.db_stats_reset),
        telemetry._delta(e.temp_bytes, s.temp_bytes, e.db_stats_reset IS NOT DISTINCT FROM s.db_stats_reset),
        telemetry._pretty_bytes(telemetry._delta(e.temp_bytes, s.temp_bytes, e.db_stats_reset IS NOT DISTINCT FROM s.db_stats_reset)),
        telemetry._delta(e.io_client_buffer_writes, s.io_client_buffer_writes, e.io_stats_reset IS NOT DISTINCT FROM s.io_stats_reset)
    )::telemetry._snapshot_diff
$$;

-- The window rule: the latest snapshot at or before the start, the earliest at or after the end;
-- _window_ends has either NULL where there is none (the report's series then start or end at
-- the window's own time), _window both or no row. ROWS 1: the planner would assume 1000 rows
-- and hash every snapshot to join them.
CREATE OR REPLACE FUNCTION telemetry._window_ends(p_start_time timestamptz, p_end_time timestamptz, p_server text)
RETURNS TABLE (start_id integer, start_at timestamptz, end_id integer, end_at timestamptz)
LANGUAGE plpgsql STABLE ROWS 1 SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH srv AS (SELECT telemetry._window_server(p_start_time, p_end_time, p_server) AS server)
    SELECT s.id, s.captured_at, e.id, e.captured_at
    FROM srv
    LEFT JOIN LATERAL (SELECT id, captured_at FROM telemetry.snapshots
                       WHERE server = srv.server AND captured_at <= p_start_time ORDER BY captured_at DESC LIMIT 1) s ON true
    LEFT JOIN LATERAL (SELECT id, captured_at FROM telemetry.snapshots
                       WHERE server = srv.server AND captured_at >= p_end_time ORDER BY captured_at LIMIT 1) e ON true;
END
$$;
CREATE OR REPLACE FUNCTION telemetry._window(p_start_time timestamptz, p_end_time timestamptz, p_server text)
RETURNS TABLE (start_id integer, start_at timestamptz, end_id integer, end_at timestamptz)
LANGUAGE sql STABLE ROWS 1 SET search_path = pg_catalog, pg_temp AS $$
    SELECT w.* FROM telemetry._window_ends(p_start_time, p_end_time, p_server) w
    WHERE w.start_id IS NOT NULL AND w.end_id IS NOT NULL
$$;

-- _snapshot_diff is called in FROM, once: (d).* over a function call would run it per column.
-- io_client_buffer_writes_delta is appended (0027): the compare() before it is dropped.
DO $$ BEGIN PERFORM telemetry._drop_if_result_lacks('telemetry.compare(timestamptz, timestamptz, text)', 'io_client_buffer_writes_delta'); END $$;
CREATE OR REPLACE FUNCTION telemetry.compare(p_start_time timestamptz, p_end_time timestamptz, p_server text DEFAULT NULL)
RETURNS TABLE (
    start_snapshot_at timestamptz, end_snapshot_at timestamptz, elapsed_seconds numeric,
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
    temp_bytes_pretty text, io_client_buffer_writes_delta bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT w.start_at, w.end_at, d.*
    FROM telemetry._window(p_start_time, p_end_time, p_server) w
    JOIN telemetry.snapshots s ON s.id = w.start_id AND s.captured_at = w.start_at
    JOIN telemetry.snapshots e ON e.id = w.end_id AND e.captured_at = w.end_at
    CROSS JOIN LATERAL telemetry._snapshot_diff(s, e) d;
END
$$;

-- _tables_compare is table_compare of each table (p_schemas[i].p_tables[i]) over one window,
-- in their order: the window's snapshots are looked up once (diagnose reads every tracked
-- table's; looked up per table, they were most of its cost).
CREATE OR REPLACE FUNCTION telemetry._tables_compare(p_schemas text[], p_tables text[], p_start_time timestamptz,
    p_end_time timestamptz, p_server text)
RETURNS TABLE (
    table_name text, start_snapshot_at timestamptz, end_snapshot_at timestamptz, elapsed_seconds numeric,
    size_start text, size_end text, size_delta text, total_size_delta text,
    n_live_tup_start bigint, n_live_tup_end bigint, n_dead_tup_end bigint, dead_tuple_ratio numeric,
    inserts_delta bigint, updates_delta bigint, deletes_delta bigint, hot_updates_delta bigint,
    autovacuum_ran boolean, autoanalyze_ran boolean, autovacuum_count_delta bigint,
    autoanalyze_count_delta bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT x.schemaname || '.' || x.relname, w.start_at, w.end_at,
        round(extract(epoch FROM w.end_at - w.start_at), 3),
        telemetry._pretty_bytes(s.pg_relation_size), telemetry._pretty_bytes(e.pg_relation_size),
        telemetry._pretty_bytes(e.pg_relation_size - s.pg_relation_size),
        telemetry._pretty_bytes(e.pg_total_relation_size - s.pg_total_relation_size),
        s.n_live_tup, e.n_live_tup, e.n_dead_tup,
        round(e.n_dead_tup::numeric / nullif(e.n_live_tup, 0), 4),
        telemetry._delta(e.n_tup_ins, s.n_tup_ins, ep.same), telemetry._delta(e.n_tup_upd, s.n_tup_upd, ep.same),
        telemetry._delta(e.n_tup_del, s.n_tup_del, ep.same), telemetry._delta(e.n_tup_hot_upd, s.n_tup_hot_upd, ep.same),
        e.last_autovacuum IS NOT NULL AND e.last_autovacuum IS DISTINCT FROM s.last_autovacuum,
        e.last_autoanalyze IS NOT NULL AND e.last_autoanalyze IS DISTINCT FROM s.last_autoanalyze,
        telemetry._delta(e.autovacuum_count, s.autovacuum_count, ep.same),
        telemetry._delta(e.autoanalyze_count, s.autoanalyze_count, ep.same)
    FROM telemetry._window(p_start_time, p_end_time, p_server) w
    CROSS JOIN LATERAL telemetry._table_epoch(w.start_id, w.start_at, w.end_id, w.end_at) ep(same)
    CROSS JOIN unnest(p_schemas, p_tables) WITH ORDINALITY AS x(schemaname, relname, n)
    JOIN telemetry.table_snapshots s ON s.snapshot_id = w.start_id AND s.captured_at = w.start_at
        AND s.schemaname = x.schemaname AND s.relname = x.relname
    JOIN telemetry.table_snapshots e ON e.snapshot_id = w.end_id AND e.captured_at = w.end_at
        AND e.schemaname = x.schemaname AND e.relname = x.relname
    ORDER BY x.n;
END
$$;

CREATE OR REPLACE FUNCTION telemetry.table_compare(p_table text, p_start_time timestamptz, p_end_time timestamptz,
    p_schema text DEFAULT 'public', p_server text DEFAULT NULL)
RETURNS TABLE (
    table_name text, start_snapshot_at timestamptz, end_snapshot_at timestamptz, elapsed_seconds numeric,
    size_start text, size_end text, size_delta text, total_size_delta text,
    n_live_tup_start bigint, n_live_tup_end bigint, n_dead_tup_end bigint, dead_tuple_ratio numeric,
    inserts_delta bigint, updates_delta bigint, deletes_delta bigint, hot_updates_delta bigint,
    autovacuum_ran boolean, autoanalyze_ran boolean, autovacuum_count_delta bigint,
    autoanalyze_count_delta bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM telemetry._tables_compare(ARRAY[p_schema], ARRAY[p_table], p_start_time, p_end_time, p_server)
$$;

-- _wait_summary is wait_summary, optionally for client backends alone. Appended columns come
-- from the high-frequency wait sampler (client backends, not idle): session_seconds spent in
-- the wait and avg_active_sessions over the window, so short waits that the sample grid
-- misses show up too (as rows with sample_count 0). Read from the rollups (sql/rollups.sql).
-- p_server is the caller's, checked with its window by _window_server (a lazily read CTE
-- would skip the check where partition pruning leaves nothing to read).
CREATE OR REPLACE FUNCTION telemetry._wait_summary(p_start_time timestamptz, p_end_time timestamptz,
    p_server text, p_clients_only boolean)
RETURNS TABLE (
    backend_type text, wait_event_type text, wait_event text, sample_count bigint,
    total_waiters bigint, avg_waiters numeric, max_waiters integer, pct_of_samples numeric,
    session_seconds numeric, avg_active_sessions numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH n AS (SELECT c.samples FROM telemetry._window_sample_counts(p_start_time, p_end_time, p_server) c),
    grid AS (
        SELECT g.backend_type, g.wait_event_type, g.wait_event, g.samples AS sample_count, g.waiters AS total_waiters, g.max_waiters
        FROM telemetry._window_wait_groups(p_start_time, p_end_time, p_server) g
        WHERE NOT p_clients_only OR g.backend_type = 'client backend'),
    sampled AS (
        SELECT 'client backend'::text AS backend_type, t.wait_event_type, t.wait_event, t.seconds
        FROM telemetry._window_wait_times(p_start_time, p_end_time, p_server) t)
    SELECT coalesce(g.backend_type, h.backend_type), coalesce(g.wait_event_type, h.wait_event_type),
        coalesce(g.wait_event, h.wait_event), coalesce(g.sample_count, 0), coalesce(g.total_waiters, 0),
        round(g.total_waiters::numeric / g.sample_count, 2), g.max_waiters,
        round(100.0 * coalesce(g.sample_count, 0) / nullif((SELECT samples FROM n), 0), 1),
        round(h.seconds, 1),
        round(h.seconds / nullif(extract(epoch FROM p_end_time - p_start_time), 0), 2)
    FROM grid g FULL JOIN sampled h
        ON h.backend_type = g.backend_type AND h.wait_event_type = g.wait_event_type AND h.wait_event = g.wait_event
    ORDER BY 5 DESC, 4 DESC, h.seconds DESC NULLS LAST, 1, 2, 3
$$;

CREATE OR REPLACE FUNCTION telemetry.wait_summary(p_start_time timestamptz, p_end_time timestamptz, p_server text DEFAULT NULL)
RETURNS TABLE (
    backend_type text, wait_event_type text, wait_event text, sample_count bigint,
    total_waiters bigint, avg_waiters numeric, max_waiters integer, pct_of_samples numeric,
    session_seconds numeric, avg_active_sessions numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM telemetry._wait_summary(p_start_time, p_end_time, telemetry._window_server(p_start_time, p_end_time, p_server), false)
$$;

-- client_wait_summary is wait_summary for client sessions alone: background processes, whose
-- NULL state the seed stores as 'unknown', swamp the seed's summary.
CREATE OR REPLACE FUNCTION telemetry.client_wait_summary(p_start_time timestamptz, p_end_time timestamptz, p_server text DEFAULT NULL)
RETURNS TABLE (
    backend_type text, wait_event_type text, wait_event text, sample_count bigint,
    total_waiters bigint, avg_waiters numeric, max_waiters integer, pct_of_samples numeric,
    session_seconds numeric, avg_active_sessions numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM telemetry._wait_summary(p_start_time, p_end_time, telemetry._window_server(p_start_time, p_end_time, p_server), true)
$$;

-- cleanup keeps the seed's result (parent rows removed) but drops whole day partitions where
-- it can, deleting rows only in the partition that straddles the cutoff (and the rollups of
-- what they summed).
CREATE OR REPLACE FUNCTION telemetry.cleanup(p_retain_interval interval DEFAULT '7 days')
RETURNS TABLE (deleted_snapshots bigint, deleted_samples bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_cutoff timestamptz := now() - p_retain_interval;
    v_whole timestamptz := date_trunc('day', v_cutoff AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    v_n bigint;
BEGIN
    PERFORM telemetry._retention_lock();
    SELECT count(*) INTO deleted_snapshots FROM telemetry.snapshots WHERE captured_at < v_whole;
    SELECT count(*) INTO deleted_samples FROM telemetry.samples WHERE captured_at < v_whole;
    PERFORM telemetry._drop_partitions_before(v_whole);
    DELETE FROM telemetry.snapshots WHERE captured_at < v_cutoff;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    deleted_snapshots := deleted_snapshots + v_n;
    DELETE FROM telemetry.samples WHERE captured_at < v_cutoff;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    deleted_samples := deleted_samples + v_n;
    PERFORM telemetry._rollup_cut(v_cutoff);
    RETURN NEXT;
END
$$;
REVOKE EXECUTE ON FUNCTION telemetry.cleanup(interval) FROM PUBLIC;

CREATE OR REPLACE VIEW telemetry.deltas AS
SELECT e.id, e.captured_at, e.pg_version, d.elapsed_seconds AS interval_seconds, d.checkpoint_occurred,
    d.ckpt_timed_delta, d.ckpt_requested_delta, d.ckpt_write_time_ms, d.ckpt_sync_time_ms,
    d.ckpt_buffers_delta, d.wal_bytes_delta, d.wal_bytes_pretty, d.wal_write_time_ms,
    d.wal_sync_time_ms, d.bgw_buffers_clean_delta, d.bgw_buffers_alloc_delta,
    d.bgw_buffers_backend_delta, d.bgw_buffers_backend_fsync_delta,
    e.autovacuum_workers AS autovacuum_workers_active, d.slots_count, d.slots_max_retained_wal,
    d.slots_max_retained_pretty, d.io_ckpt_writes_delta, d.io_ckpt_write_time_ms,
    d.io_ckpt_fsyncs_delta, d.io_ckpt_fsync_time_ms, d.io_autovacuum_writes_delta,
    d.io_autovacuum_write_time_ms, d.io_client_writes_delta, d.io_client_write_time_ms,
    d.io_bgwriter_writes_delta, d.io_bgwriter_write_time_ms, d.temp_files_delta,
    d.temp_bytes_delta, d.temp_bytes_pretty, e.server
FROM (
    -- Already newest first: "SELECT * FROM telemetry.deltas LIMIT 20" computes 20 differences.
    SELECT s.captured_at, s AS e, lag(s) OVER (PARTITION BY s.server ORDER BY s.captured_at) AS p
    FROM telemetry.snapshots s
    ORDER BY s.captured_at DESC
) pairs
    CROSS JOIN LATERAL (SELECT (pairs.e).*) e
    CROSS JOIN LATERAL telemetry._snapshot_diff(pairs.p, pairs.e) d
-- Not "pairs.p IS NOT NULL": a row is NOT NULL only when every column is, and io_* (15) or
-- bgw_buffers_backend* (17+) are always NULL somewhere.
WHERE (pairs.p).captured_at IS NOT NULL
ORDER BY pairs.captured_at DESC;

CREATE OR REPLACE VIEW telemetry.table_deltas AS
SELECT t.snapshot_id, t.captured_at, t.schemaname, t.relname,
    round(extract(epoch FROM t.captured_at - p.captured_at), 3) AS interval_seconds,
    t.pg_relation_size - p.pg_relation_size AS size_delta_bytes,
    telemetry._pretty_bytes(t.pg_relation_size - p.pg_relation_size) AS size_delta_pretty,
    t.pg_total_relation_size - p.pg_total_relation_size AS total_size_delta_bytes,
    t.n_live_tup, t.n_dead_tup,
    t.n_dead_tup::double precision / nullif(t.n_live_tup, 0) AS dead_tuple_ratio,
    telemetry._delta(t.n_tup_ins, p.n_tup_ins, ep.same) AS inserts_delta,
    telemetry._delta(t.n_tup_upd, p.n_tup_upd, ep.same) AS updates_delta,
    telemetry._delta(t.n_tup_del, p.n_tup_del, ep.same) AS deletes_delta,
    telemetry._delta(t.n_tup_hot_upd, p.n_tup_hot_upd, ep.same) AS hot_updates_delta,
    t.last_autovacuum IS NOT NULL AND t.last_autovacuum IS DISTINCT FROM p.last_autovacuum AS autovacuum_ran,
    t.last_autoanalyze IS NOT NULL AND t.last_autoanalyze IS DISTINCT FROM p.last_autoanalyze AS autoanalyze_ran,
    telemetry._delta(t.autovacuum_count, p.autovacuum_count, ep.same) AS autovacuum_count_delta,
    telemetry._delta(t.autoanalyze_count, p.autoanalyze_count, ep.same) AS autoanalyze_count_delta,
    t.last_autovacuum, t.last_autoanalyze, t.server
FROM telemetry.table_snapshots t
JOIN LATERAL (
    SELECT * FROM telemetry.table_snapshots p
    WHERE p.server = t.server AND p.relid = t.relid AND p.captured_at < t.captured_at
    ORDER BY p.captured_at DESC LIMIT 1
) p ON true
CROSS JOIN LATERAL telemetry._table_epoch(p.snapshot_id, p.captured_at, t.snapshot_id, t.captured_at) ep(same)
ORDER BY t.captured_at DESC, t.schemaname, t.relname;

CREATE OR REPLACE VIEW telemetry.recent_waits AS
SELECT captured_at, backend_type, wait_event_type, wait_event, state, count, server
FROM telemetry.wait_samples
WHERE captured_at > now() - interval '2 hours'
ORDER BY captured_at DESC, count DESC;

CREATE OR REPLACE VIEW telemetry.recent_activity AS
SELECT captured_at, pid, usename, application_name, backend_type, state, wait_event_type, wait_event,
    query_start, captured_at - query_start AS running_for, query_preview, server, datname
FROM telemetry.activity_samples
WHERE captured_at > now() - interval '2 hours'
ORDER BY captured_at DESC, query_start;

CREATE OR REPLACE VIEW telemetry.recent_locks AS
SELECT captured_at, blocked_pid, blocked_user, blocked_app, blocked_duration, blocking_pid, blocking_user,
    blocking_app, lock_type, locked_relation, blocked_query_preview, blocking_query_preview, server, datname,
    blocking_state, locked_object
FROM telemetry.lock_samples
WHERE captured_at > now() - interval '2 hours'
ORDER BY captured_at DESC, blocked_duration DESC NULLS LAST;

-- lock_episodes lists the lock waits in a window that the exporter's wait sampler followed
-- from start to end (lock_wait_episodes): who waited, behind whom, on what and for how long
-- (started_at is pg_locks.waitstart; the end lies between last_seen_at and half a sampler
-- interval or so past ended_at, its estimate; still_waiting: the exporter stopped first, and
-- ended_at is where it was last seen waiting; blocking_batch: the batch whose own session the
-- blocker was, '' for none; blocking_state: the blocker's state when last seen blocking it,
-- idle in transaction where it held the lock between statements, its query the last it ran;
-- locked_object: what a lock on no relation was on, an advisory lock's key, the transaction a
-- row lock waited for). None in pg_cron mode, which has no wait sampler: recent_locks has the samples' pairs there.
DROP FUNCTION IF EXISTS telemetry.lock_episodes(timestamptz, timestamptz, text);
CREATE OR REPLACE FUNCTION telemetry.lock_episodes(p_start_time timestamptz, p_end_time timestamptz, p_server text DEFAULT NULL)
RETURNS TABLE (started_at timestamptz, last_seen_at timestamptz, ended_at timestamptz, duration_seconds numeric, still_waiting boolean,
    blocked_pid integer, blocked_user text, blocked_app text, blocked_query_preview text,
    blocking_pid integer, blocking_user text, blocking_app text, blocking_query_preview text, blocking_pids integer[],
    lock_type text, locked_relation text, datname text, blocked_backend_start timestamptz, server text, blocking_batch text,
    blocking_state text, locked_object text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    -- Checked first: in a CTE, partition pruning could leave the check unread.
    v_server text := telemetry._window_server(p_start_time, p_end_time, p_server);
BEGIN
    RETURN QUERY
    SELECT e.started_at, e.last_seen_at, e.ended_at, round(extract(epoch FROM e.duration), 1), e.still_waiting,
           e.blocked_pid, e.blocked_user, e.blocked_app, e.blocked_query_preview,
           e.blocking_pid, e.blocking_user, e.blocking_app, e.blocking_query_preview, e.blocking_pids,
           e.lock_type, e.locked_relation, e.datname, e.blocked_backend_start, e.server, e.blocking_batch,
           e.blocking_state, e.locked_object
    FROM telemetry.lock_wait_episodes e
    -- An episode is stored with the first sample after its end: captured after the window began.
    WHERE e.server = v_server AND e.captured_at >= p_start_time
      AND e.started_at <= p_end_time AND e.ended_at >= p_start_time
    ORDER BY e.started_at, e.blocked_pid;
END
$$;

CREATE OR REPLACE VIEW telemetry.recent_progress AS
SELECT captured_at, progress_type, pid, relname, phase, blocks_done, blocks_total,
    round(100.0 * blocks_done / nullif(blocks_total, 0), 1) AS blocks_pct,
    tuples_done, tuples_total, bytes_done, bytes_total, telemetry._pretty_bytes(bytes_done) AS bytes_done_pretty,
    details, server, datname
FROM telemetry.progress_samples
WHERE captured_at > now() - interval '2 hours'
ORDER BY captured_at DESC, progress_type, pid;

CREATE OR REPLACE VIEW telemetry.recent_replication AS
SELECT captured_at, pid, client_addr, application_name, state, sync_state, sent_lsn, write_lsn, flush_lsn,
    replay_lsn, (sent_lsn - replay_lsn)::bigint AS replay_lag_bytes,
    telemetry._pretty_bytes((sent_lsn - replay_lsn)::bigint) AS replay_lag_pretty,
    write_lag, flush_lag, replay_lag, server
FROM telemetry.replication_snapshots
WHERE captured_at > now() - interval '2 hours'
ORDER BY captured_at DESC, pid;
