-- Generated from the collectors' statements by recorder.CollectSQL: do not edit.
-- Each function runs one collection query, with a branch per server version where it differs.

CREATE OR REPLACE FUNCTION telemetry._collect_wal()
RETURNS TABLE (wal_records bigint, wal_fpi bigint, wal_bytes bigint, wal_buffers_full bigint, wal_write_time double precision, wal_sync_time double precision, stats_reset timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    IF current_setting('server_version_num')::int >= 180000 THEN
    RETURN QUERY SELECT wal_records, wal_fpi, wal_bytes::bigint, wal_buffers_full, NULL::float8, NULL::float8, stats_reset FROM pg_stat_wal;
    ELSE
    RETURN QUERY SELECT wal_records, wal_fpi, wal_bytes::bigint, wal_buffers_full, wal_write_time, wal_sync_time, stats_reset FROM pg_stat_wal;
    END IF;
END
$collect$;

CREATE OR REPLACE FUNCTION telemetry._collect_checkpointer()
RETURNS TABLE (timed bigint, requested bigint, write_time double precision, sync_time double precision, buffers_written bigint, stats_reset timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    IF current_setting('server_version_num')::int >= 170000 THEN
    RETURN QUERY SELECT num_timed, num_requested, write_time, sync_time, buffers_written, stats_reset FROM pg_stat_checkpointer;
    ELSE
    RETURN QUERY SELECT checkpoints_timed, checkpoints_req, checkpoint_write_time, checkpoint_sync_time, buffers_checkpoint, stats_reset FROM pg_stat_bgwriter;
    END IF;
END
$collect$;

CREATE OR REPLACE FUNCTION telemetry._collect_control_checkpoint()
RETURNS TABLE (checkpoint_lsn text, checkpoint_time timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT checkpoint_lsn::text, checkpoint_time FROM pg_control_checkpoint();
END
$collect$;

CREATE OR REPLACE FUNCTION telemetry._collect_bgwriter()
RETURNS TABLE (buffers_clean bigint, maxwritten_clean bigint, buffers_alloc bigint, buffers_backend bigint, buffers_backend_fsync bigint, stats_reset timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    IF current_setting('server_version_num')::int >= 170000 THEN
    RETURN QUERY SELECT buffers_clean, maxwritten_clean, buffers_alloc, NULL::bigint, NULL::bigint, stats_reset FROM pg_stat_bgwriter;
    ELSE
    RETURN QUERY SELECT buffers_clean, maxwritten_clean, buffers_alloc, buffers_backend, buffers_backend_fsync, stats_reset FROM pg_stat_bgwriter;
    END IF;
END
$collect$;

CREATE OR REPLACE FUNCTION telemetry._collect_io()
RETURNS TABLE (backend_type text, object text, context text, reads bigint, read_time double precision, writes bigint, write_time double precision, writebacks bigint, writeback_time double precision, extends bigint, extend_time double precision, hits bigint, evictions bigint, reuses bigint, fsyncs bigint, fsync_time double precision)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    IF current_setting('server_version_num')::int >= 160000 THEN
    RETURN QUERY SELECT backend_type, object, context, reads, read_time, writes, write_time,
	writebacks, writeback_time, extends, extend_time, hits, evictions, reuses, fsyncs, fsync_time
FROM pg_stat_io;
    ELSE
    END IF;
END
$collect$;

CREATE OR REPLACE FUNCTION telemetry._collect_io_reset()
RETURNS TABLE (stats_reset timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    IF current_setting('server_version_num')::int >= 160000 THEN
    RETURN QUERY SELECT max(stats_reset) FROM pg_stat_io;
    ELSE
    END IF;
END
$collect$;

CREATE OR REPLACE FUNCTION telemetry._collect_databases()
RETURNS TABLE (datname name, xact_commit bigint, xact_rollback bigint, blks_read bigint, blks_hit bigint, temp_files bigint, temp_bytes bigint, deadlocks bigint, stats_reset timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT datname, xact_commit, xact_rollback, blks_read, blks_hit, temp_files, temp_bytes, deadlocks, stats_reset
FROM pg_stat_database WHERE datname IS NOT NULL ORDER BY datname;
END
$collect$;

CREATE OR REPLACE FUNCTION telemetry._collect_replication_slots()
RETURNS TABLE (slot_name text, slot_type text, active boolean, retained_wal_bytes bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT slot_name::text, slot_type, active, ((CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END) - restart_lsn)::bigint
FROM pg_replication_slots ORDER BY slot_name;
END
$collect$;

CREATE OR REPLACE FUNCTION telemetry._collect_autovacuum_workers()
RETURNS TABLE (workers integer)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'autovacuum worker';
END
$collect$;

CREATE OR REPLACE FUNCTION telemetry._collect_tables(p_schemas text[], p_names text[])
RETURNS TABLE (relid oid, schemaname text, relname text, relation_size bigint, total_size bigint, indexes_size bigint, n_live_tup bigint, n_dead_tup bigint, n_tup_ins bigint, n_tup_upd bigint, n_tup_del bigint, n_tup_hot_upd bigint, last_vacuum timestamptz, last_autovacuum timestamptz, last_analyze timestamptz, last_autoanalyze timestamptz, vacuum_count bigint, autovacuum_count bigint, analyze_count bigint, autoanalyze_count bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    RETURN QUERY WITH wanted AS (
	SELECT c.oid AS relid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	JOIN unnest($1::text[], $2::text[]) AS w(nsp, rel) ON n.nspname = w.nsp AND c.relname = w.rel UNION SELECT relid FROM telemetry.tracked_tables
), exclusive AS (
	SELECT relation FROM pg_locks
	WHERE locktype = 'relation' AND mode = 'AccessExclusiveLock'
	  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
), busy AS MATERIALIZED (
	SELECT c.oid AS relid FROM pg_class c JOIN wanted w ON w.relid = c.oid
	WHERE EXISTS (
		SELECT FROM (SELECT c.oid UNION ALL SELECT c.reltoastrelid
			UNION ALL SELECT indexrelid FROM pg_index WHERE indrelid IN (c.oid, c.reltoastrelid)) AS opened(oid)
		JOIN exclusive e ON e.relation = opened.oid)
)
SELECT s.relid, s.schemaname::text, s.relname::text, CASE WHEN size_safe THEN pg_relation_size(s.relid) END,
	CASE WHEN size_safe THEN pg_total_relation_size(s.relid) END,
	CASE WHEN size_safe THEN pg_indexes_size(s.relid) END,
	s.n_live_tup, s.n_dead_tup, s.n_tup_ins, s.n_tup_upd, s.n_tup_del, s.n_tup_hot_upd,
	s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze,
	s.vacuum_count, s.autovacuum_count, s.analyze_count, s.autoanalyze_count
FROM pg_stat_all_tables s JOIN wanted USING (relid)
CROSS JOIN LATERAL (SELECT s.relid NOT IN (SELECT relid FROM busy) AS size_safe) AS safety
ORDER BY s.schemaname, s.relname;
END
$collect$;

CREATE OR REPLACE FUNCTION telemetry._collect_session_groups()
RETURNS TABLE (backend_type text, wait_event_type text, wait_event text, state text, count integer)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT backend_type, coalesce(wait_event_type, 'Running'),
	coalesce(wait_event, 'CPU'), coalesce(state, 'unknown'), count(*)::int
FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND coalesce(application_name, '') NOT LIKE 'pg-batch-exporter%' AND backend_type IS NOT NULL
GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4;
END
$collect$;

CREATE OR REPLACE FUNCTION telemetry._collect_active_sessions()
RETURNS TABLE (pid integer, datname text, usename text, application_name text, backend_type text, state text, wait_event_type text, wait_event text, query_start timestamptz, state_change timestamptz, query_preview text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT pid, datname::text, usename::text, application_name, backend_type, state,
	wait_event_type, wait_event, query_start, state_change, left(query, 200)
FROM pg_stat_activity WHERE state <> 'idle' AND pid <> pg_backend_pid() AND coalesce(application_name, '') NOT LIKE 'pg-batch-exporter%' AND backend_type IS NOT NULL
ORDER BY query_start NULLS LAST, pid LIMIT 25;
END
$collect$;

CREATE OR REPLACE FUNCTION telemetry._collect_lock_waits()
RETURNS TABLE (blocked_pid integer, blocked_user text, blocked_app text, blocked_query_preview text, waited_seconds double precision, blocking_pid integer, blocking_user text, blocking_app text, blocking_query_preview text, lock_type text, locked_relation text, datname text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT DISTINCT ON (a.pid, b.pid)
	a.pid, a.usename::text, a.application_name, left(a.query, 200),
	extract(epoch FROM clock_timestamp() - l.waitstart)::float8,
	b.pid, b.usename::text, b.application_name, left(b.query, 200),
	l.locktype,
	CASE WHEN l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		THEN l.relation::regclass::text ELSE l.relation::text END,
	a.datname::text
FROM pg_stat_activity a
CROSS JOIN LATERAL unnest(pg_blocking_pids(a.pid)) AS blocker(pid)
JOIN pg_stat_activity b ON b.pid = blocker.pid
LEFT JOIN LATERAL (
	SELECT locktype, database, relation, waitstart FROM pg_locks
	WHERE pid = a.pid AND NOT granted ORDER BY waitstart NULLS LAST LIMIT 1
) l ON true
WHERE a.wait_event_type = 'Lock'
ORDER BY a.pid, b.pid;
END
$collect$;

CREATE OR REPLACE FUNCTION telemetry._collect_progress()
RETURNS TABLE (progress_type text, pid integer, datname text, relid oid, relname text, phase text, blocks_total bigint, blocks_done bigint, tuples_total bigint, tuples_done bigint, bytes_total bigint, bytes_done bigint, details jsonb)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    RETURN QUERY WITH p(progress_type, pid, datid, datname, relid, phase, blocks_total, blocks_done,
	tuples_total, tuples_done, bytes_total, bytes_done, row) AS (
	SELECT 'vacuum', pid, datid, datname, relid, phase, heap_blks_total, heap_blks_scanned,
		(to_jsonb(v)->>'max_dead_tuples')::bigint,
		coalesce((to_jsonb(v)->>'num_dead_tuples')::bigint, (to_jsonb(v)->>'num_dead_item_ids')::bigint),
		NULL::bigint, NULL::bigint, to_jsonb(v)
	FROM pg_stat_progress_vacuum v
	UNION ALL
	SELECT 'analyze', pid, datid, datname, relid, phase, sample_blks_total, sample_blks_scanned,
		NULL, NULL, NULL, NULL, to_jsonb(a)
	FROM pg_stat_progress_analyze a
	UNION ALL
	SELECT 'copy', pid, datid, datname, relid, NULL, NULL, NULL,
		NULL, tuples_processed, bytes_total, bytes_processed, to_jsonb(c)
	FROM pg_stat_progress_copy c
	UNION ALL
	SELECT 'create_index', pid, datid, datname, relid, phase, blocks_total, blocks_done,
		tuples_total, tuples_done, NULL, NULL, to_jsonb(i)
	FROM pg_stat_progress_create_index i
	UNION ALL
	SELECT 'cluster', pid, datid, datname, relid, phase, heap_blks_total, heap_blks_scanned,
		NULL, heap_tuples_scanned, NULL, NULL, to_jsonb(k)
	FROM pg_stat_progress_cluster k
)
SELECT progress_type, pid, datname::text, relid,
	CASE WHEN datid = (SELECT oid FROM pg_database WHERE datname = current_database())
		THEN (SELECT relname::text FROM pg_class WHERE oid = p.relid) END,
	phase, blocks_total, blocks_done, tuples_total, tuples_done, bytes_total, bytes_done,
	row - ARRAY['pid', 'datid', 'datname', 'relid', 'phase']
FROM p ORDER BY progress_type, pid;
END
$collect$;

CREATE OR REPLACE FUNCTION telemetry._collect_replication()
RETURNS TABLE (pid integer, client_addr text, application_name text, state text, sync_state text, sent_lsn text, write_lsn text, flush_lsn text, replay_lsn text, write_lag_bytes bigint, flush_lag_bytes bigint, replay_lag_bytes bigint, write_lag_seconds double precision, flush_lag_seconds double precision, replay_lag_seconds double precision)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT pid, host(client_addr), application_name, state, sync_state,
	sent_lsn::text, write_lsn::text, flush_lsn::text, replay_lsn::text,
	((CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END) - write_lsn)::bigint, ((CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END) - flush_lsn)::bigint, ((CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END) - replay_lsn)::bigint,
	extract(epoch FROM write_lag)::float8, extract(epoch FROM flush_lag)::float8, extract(epoch FROM replay_lag)::float8
FROM pg_stat_replication ORDER BY pid;
END
$collect$;
