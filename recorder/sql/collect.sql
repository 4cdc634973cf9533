-- Generated from the collectors' statements by schema.CollectSQL: do not edit.
-- Each function runs one collection query, with a branch per server version where it differs.

DROP FUNCTION IF EXISTS telemetry._collect_wal();
CREATE OR REPLACE FUNCTION telemetry._collect_wal()
RETURNS TABLE (wal_records bigint, wal_fpi bigint, wal_bytes bigint, wal_buffers_full bigint, wal_write_time double precision, wal_sync_time double precision, stats_reset timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    IF current_setting('server_version_num')::int >= 180000 THEN
    RETURN QUERY SELECT w.wal_records, w.wal_fpi, w.wal_bytes::bigint, w.wal_buffers_full, io.write_time, io.fsync_time, w.stats_reset
FROM pg_stat_wal w,
     (SELECT sum(write_time) AS write_time, sum(fsync_time) AS fsync_time FROM pg_stat_io WHERE object = 'wal' AND context = 'normal') io;
    ELSE
    RETURN QUERY SELECT wal_records, wal_fpi, wal_bytes::bigint, wal_buffers_full, wal_write_time, wal_sync_time, stats_reset FROM pg_stat_wal;
    END IF;
END
$collect$;

DROP FUNCTION IF EXISTS telemetry._collect_checkpointer();
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

DROP FUNCTION IF EXISTS telemetry._collect_control_checkpoint();
CREATE OR REPLACE FUNCTION telemetry._collect_control_checkpoint()
RETURNS TABLE (checkpoint_lsn text, checkpoint_time timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT checkpoint_lsn::text, checkpoint_time FROM pg_control_checkpoint();
END
$collect$;

DROP FUNCTION IF EXISTS telemetry._collect_bgwriter();
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

DROP FUNCTION IF EXISTS telemetry._collect_io();
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

DROP FUNCTION IF EXISTS telemetry._collect_client_backend_writes();
CREATE OR REPLACE FUNCTION telemetry._collect_client_backend_writes()
RETURNS TABLE (writes bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    IF current_setting('server_version_num')::int >= 170000 THEN
    RETURN QUERY SELECT sum(writes)::bigint FROM pg_stat_io WHERE backend_type = 'client backend' AND object = 'relation';
    ELSE
    END IF;
END
$collect$;

DROP FUNCTION IF EXISTS telemetry._collect_io_reset();
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

DROP FUNCTION IF EXISTS telemetry._collect_databases();
CREATE OR REPLACE FUNCTION telemetry._collect_databases()
RETURNS TABLE (datname name, xact_commit bigint, xact_rollback bigint, blks_read bigint, blks_hit bigint, temp_files bigint, temp_bytes bigint, deadlocks bigint, stats_reset timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT datname, xact_commit, xact_rollback, blks_read, blks_hit, temp_files, temp_bytes, deadlocks, stats_reset
FROM pg_stat_database WHERE datname IS NOT NULL ORDER BY datname;
END
$collect$;

DROP FUNCTION IF EXISTS telemetry._collect_replication_slots();
CREATE OR REPLACE FUNCTION telemetry._collect_replication_slots()
RETURNS TABLE (slot_name text, slot_type text, active boolean, retained_wal_bytes bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT slot_name::text, slot_type, active, ((CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END) - restart_lsn)::bigint
FROM pg_replication_slots ORDER BY slot_name;
END
$collect$;

DROP FUNCTION IF EXISTS telemetry._collect_autovacuum_workers();
CREATE OR REPLACE FUNCTION telemetry._collect_autovacuum_workers()
RETURNS TABLE (workers integer)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'autovacuum worker';
END
$collect$;

DROP FUNCTION IF EXISTS telemetry._collect_tables(p_schemas text[], p_names text[]);
CREATE OR REPLACE FUNCTION telemetry._collect_tables(p_schemas text[], p_names text[])
RETURNS TABLE (relid oid, schemaname text, relname text, relation_size bigint, total_size bigint, indexes_size bigint, n_live_tup bigint, n_dead_tup bigint, n_tup_ins bigint, n_tup_upd bigint, n_tup_del bigint, n_tup_hot_upd bigint, last_vacuum timestamptz, last_autovacuum timestamptz, last_analyze timestamptz, last_autoanalyze timestamptz, vacuum_count bigint, autovacuum_count bigint, analyze_count bigint, autoanalyze_count bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    RETURN QUERY WITH wanted AS MATERIALIZED (
	SELECT c.oid AS relid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	JOIN unnest($1::text[], $2::text[]) AS w(nsp, rel) ON n.nspname = w.nsp AND c.relname = w.rel
	WHERE c.relkind IN ('r', 't', 'm', 'p') UNION SELECT relid FROM telemetry.tracked_tables
), files AS MATERIALIZED (
	SELECT w.relid, f.oid FROM wanted w JOIN pg_class c ON c.oid = w.relid
	CROSS JOIN LATERAL (SELECT c.oid UNION ALL SELECT c.reltoastrelid WHERE c.reltoastrelid <> 0
		UNION ALL SELECT indexrelid FROM pg_index WHERE indrelid IN (c.oid, c.reltoastrelid)) AS f(oid)
), locks AS MATERIALIZED (
	SELECT relation, mode FROM pg_locks
	WHERE locktype = 'relation' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
	  AND pid IS DISTINCT FROM pg_backend_pid()
), sizes AS (
	WITH sized AS (
		SELECT relid, bool_and(oid NOT IN (SELECT relation FROM locks WHERE mode = 'AccessExclusiveLock')) AS safe
		FROM files GROUP BY relid
	)
	SELECT z.relid, z.relation, z.heap + z.indexes, z.indexes
	FROM sized, LATERAL (SELECT sized.relid, pg_relation_size(sized.relid) AS relation, pg_table_size(sized.relid) AS heap,
		pg_indexes_size(sized.relid) AS indexes WHERE sized.safe OFFSET 0) AS z
)
SELECT s.relid, s.schemaname::text, s.relname::text, z.relation, z.total, z.indexes, s.n_live_tup, s.n_dead_tup, s.n_tup_ins, s.n_tup_upd, s.n_tup_del, s.n_tup_hot_upd,
	s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze,
	s.vacuum_count, s.autovacuum_count, s.analyze_count, s.autoanalyze_count
FROM pg_stat_all_tables s LEFT JOIN sizes z(relid, relation, total, indexes) ON z.relid = s.relid
WHERE s.relid = ANY (ARRAY(SELECT relid FROM wanted))
ORDER BY s.schemaname, s.relname;
END
$collect$;

DROP FUNCTION IF EXISTS telemetry._collect_relation_states(p_schemas text[], p_names text[], p_relids oid[]);
CREATE OR REPLACE FUNCTION telemetry._collect_relation_states(p_schemas text[], p_names text[], p_relids oid[])
RETURNS TABLE (relid oid, schemaname text, relname text, relfilenode oid, reltuples double precision, n_live_tup bigint, n_mod_since_analyze bigint, last_analyze timestamptz, last_autoanalyze timestamptz, last_vacuum timestamptz, last_autovacuum timestamptz, total_size bigint, autovacuum_enabled boolean, indexes text, triggers text, foreign_keys text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    RETURN QUERY WITH wanted AS MATERIALIZED (
	SELECT c.oid AS relid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	JOIN unnest($1::text[], $2::text[]) AS w(nsp, rel) ON n.nspname = w.nsp AND c.relname = w.rel
	WHERE c.relkind IN ('r', 't', 'm', 'p') UNION SELECT relid FROM telemetry.tracked_tables UNION SELECT unnest($3::oid[])
), files AS MATERIALIZED (
	SELECT w.relid, f.oid FROM wanted w JOIN pg_class c ON c.oid = w.relid
	CROSS JOIN LATERAL (SELECT c.oid UNION ALL SELECT c.reltoastrelid WHERE c.reltoastrelid <> 0
		UNION ALL SELECT indexrelid FROM pg_index WHERE indrelid IN (c.oid, c.reltoastrelid)) AS f(oid)
), locks AS MATERIALIZED (
	SELECT relation, mode FROM pg_locks
	WHERE locktype = 'relation' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
	  AND pid IS DISTINCT FROM pg_backend_pid()
), sizes AS (
	WITH sized AS (
	SELECT relid, bool_and(oid NOT IN (SELECT relation FROM locks WHERE mode = 'AccessExclusiveLock')) AS safe
	FROM files GROUP BY relid
)
SELECT z.relid, z.relation, z.heap + z.indexes, z.indexes
FROM sized, LATERAL (SELECT sized.relid, pg_relation_size(sized.relid) AS relation, pg_table_size(sized.relid) AS heap,
	pg_indexes_size(sized.relid) AS indexes WHERE sized.safe OFFSET 0) AS z
), foreign_keys AS MATERIALIZED (
	SELECT x.relid, r.conname, format('%s.%s', tn.nspname, tc.relname) AS table_name,
		format('%s.%s', fn.nspname, fc.relname) AS references_name, pg_get_constraintdef(r.oid) AS definition
	FROM (SELECT k.oid, k.conrelid AS relid FROM pg_constraint k WHERE k.contype = 'f' AND k.conrelid IN (SELECT relid FROM wanted)
	      UNION
	      SELECT k.oid, k.confrelid FROM pg_constraint k WHERE k.contype = 'f' AND k.confrelid IN (SELECT relid FROM wanted)) x
	JOIN pg_constraint k ON k.oid = x.oid
	JOIN pg_constraint r ON r.oid = CASE WHEN k.conparentid <> 0 THEN k.conparentid ELSE k.oid END
	JOIN pg_class tc ON tc.oid = r.conrelid JOIN pg_namespace tn ON tn.oid = tc.relnamespace
	JOIN pg_class fc ON fc.oid = r.confrelid JOIN pg_namespace fn ON fn.oid = fc.relnamespace
)
SELECT c.oid, n.nspname::text, c.relname::text, nullif(c.relfilenode, 0), c.reltuples::float8,
	s.n_live_tup, s.n_mod_since_analyze, s.last_analyze, s.last_autoanalyze, s.last_vacuum, s.last_autovacuum, z.total,
	coalesce((SELECT o.option_value::boolean FROM pg_options_to_table(c.reloptions) o WHERE o.option_name = 'autovacuum_enabled'), true),
	CASE WHEN z.relid IS NOT NULL THEN
	coalesce((SELECT jsonb_agg(jsonb_build_object('name', ic.relname, 'definition', pg_get_indexdef(i.indexrelid),
	                                              'valid', i.indisvalid, 'ready', i.indisready) ORDER BY ic.relname)
	          FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = c.oid), '[]')::text END,
	CASE WHEN z.relid IS NOT NULL THEN
	coalesce((SELECT jsonb_agg(jsonb_build_object('name', t.tgname, 'table', CASE WHEN p.oid IS NULL THEN format('%s.%s', n.nspname, c.relname) ELSE format('%s.%s', pn.nspname, pc.relname) END,
	                                              'definition', pg_get_triggerdef(t.oid), 'enabled', t.tgenabled IN ('O', 'A')) ORDER BY t.tgname)
	          FROM pg_trigger t LEFT JOIN pg_trigger p ON p.oid = t.tgparentid
	          LEFT JOIN pg_class pc ON pc.oid = p.tgrelid LEFT JOIN pg_namespace pn ON pn.oid = pc.relnamespace
	          WHERE t.tgrelid = c.oid AND NOT t.tgisinternal), '[]')::text END,
	coalesce((SELECT jsonb_agg(DISTINCT jsonb_build_object('name', f.conname, 'table', f.table_name, 'references', f.references_name,
	                                                       'definition', f.definition))
	          FROM foreign_keys f WHERE f.relid = c.oid), '[]')::text
FROM wanted w JOIN pg_class c ON c.oid = w.relid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN (SELECT * FROM pg_stat_all_tables s WHERE s.relid = ANY (ARRAY(SELECT relid FROM wanted))) s ON s.relid = c.oid
LEFT JOIN sizes z(relid, relation, total, indexes) ON z.relid = c.oid
WHERE c.relkind IN ('r', 'p', 'm')
ORDER BY n.nspname, c.relname;
END
$collect$;

DROP FUNCTION IF EXISTS telemetry._collect_settings();
CREATE OR REPLACE FUNCTION telemetry._collect_settings()
RETURNS TABLE (settings text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT jsonb_build_object(
	'settings', coalesce((SELECT jsonb_object_agg(name, jsonb_build_object('setting', setting, 'unit', unit, 'source', source,
	                                                                      'category', category, 'pending_restart', pending_restart))
	                      FROM pg_settings
	                      WHERE source NOT IN ('default', 'override', 'client', 'session', 'database', 'user', 'database user', 'interactive')
	                         OR pending_restart), '{}'),
	'role_settings', coalesce((SELECT jsonb_agg(jsonb_build_object('role', r.rolname, 'database', d.datname, 'settings', to_jsonb(s.setconfig))
	                                            ORDER BY r.rolname NULLS FIRST, d.datname NULLS FIRST)
	                           FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON d.oid = s.setdatabase
	                           WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))), '[]'),
	'conf_load_time', pg_conf_load_time(),
	'start_time', pg_postmaster_start_time(),
	'version', current_setting('server_version'),
	'extensions', coalesce((SELECT jsonb_object_agg(extname, extversion) FROM pg_extension), '{}'))::text;
END
$collect$;

DROP FUNCTION IF EXISTS telemetry._collect_session_groups();
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

DROP FUNCTION IF EXISTS telemetry._collect_active_sessions();
CREATE OR REPLACE FUNCTION telemetry._collect_active_sessions()
RETURNS TABLE (pid integer, datname text, usename text, application_name text, backend_type text, state text, wait_event_type text, wait_event text, query_start timestamptz, state_change timestamptz, query_preview text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT pid, datname::text, usename::text, application_name, backend_type, state,
	wait_event_type, wait_event, query_start, state_change, left(query, 200)
FROM pg_stat_activity WHERE state NOT LIKE 'idle%' AND pid <> pg_backend_pid() AND coalesce(application_name, '') NOT LIKE 'pg-batch-exporter%' AND backend_type IS NOT NULL
ORDER BY query_start NULLS LAST, pid LIMIT 25;
END
$collect$;

DROP FUNCTION IF EXISTS telemetry._collect_session_waits(p_query_text_bytes integer, p_names text[], p_roles text[], p_pids integer[], p_all_idle boolean);
CREATE OR REPLACE FUNCTION telemetry._collect_session_waits(p_query_text_bytes integer, p_names text[], p_roles text[], p_pids integer[], p_all_idle boolean)
RETURNS TABLE (pid integer, application_name text, usename text, datname text, state text, wait_event_type text, wait_event text, query_id bigint, query_start timestamptz, backend_start timestamptz, query_text text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT pid, coalesce(application_name, ''), coalesce(usename::text, ''), coalesce(datname::text, ''),
	CASE WHEN state NOT LIKE 'idle%' THEN 'active' ELSE state END,
	coalesce(wait_event_type, 'Running'), coalesce(wait_event, 'CPU'),
	coalesce(query_id, 0), query_start, backend_start,
	CASE WHEN query_id IS NULL AND wait_event_type = 'Lock' THEN pg_catalog.left(query, $1) ELSE '' END
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND (state NOT LIKE 'idle%'
		OR (state IS NOT NULL AND ($5 OR application_name = ANY ($2) OR usename = ANY ($3) OR pid = ANY ($4))))
	AND pid <> pg_backend_pid() AND coalesce(application_name, '') NOT LIKE 'pg-batch-exporter%';
END
$collect$;

DROP FUNCTION IF EXISTS telemetry._collect_lock_waits();
CREATE OR REPLACE FUNCTION telemetry._collect_lock_waits()
RETURNS TABLE (blocked_pid integer, blocked_user text, blocked_app text, blocked_query_preview text, waited_seconds double precision, blocking_pid integer, blocking_user text, blocking_app text, blocking_query_preview text, blocking_state text, lock_type text, locked_relation text, locked_object text, datname text, waitstart timestamptz, blocked_backend_start timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT DISTINCT ON (a.pid, blocker.pid)
	a.pid, a.usename::text, a.application_name, left(a.query, 200),
	extract(epoch FROM clock_timestamp() - l.waitstart)::float8,
	blocker.pid, coalesce(b.usename::text, p.owner::text), coalesce(b.application_name, ''), coalesce(left(b.query, 200), p.gid),
	CASE WHEN b.pid IS NULL THEN 'prepared transaction' ELSE b.state END,
	l.locktype,
	CASE WHEN l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		THEN l.relation::regclass::text ELSE l.relation::text END,
	CASE l.locktype
		-- pg_advisory_lock(bigint): the key's high and low halves, objsubid 1; (int, int): 2
		WHEN 'advisory' THEN 'key ' || CASE WHEN l.objsubid = 1 THEN (l.classid::int8 << 32 | l.objid::int8)::text
			ELSE format('(%s, %s)', l.classid::int8 << 32 >> 32, l.objid::int8 << 32 >> 32) END
		WHEN 'transactionid' THEN 'transaction ' || l.transactionid
		WHEN 'spectoken' THEN 'transaction ' || l.transactionid
		WHEN 'virtualxid' THEN 'virtual transaction ' || l.virtualxid
		WHEN 'tuple' THEN format('row (%s,%s)', l.page, l.tuple)
		WHEN 'page' THEN 'page ' || l.page
		WHEN 'object' THEN format('object %s/%s/%s', l.classid, l.objid, l.objsubid)
	END,
	a.datname::text, l.waitstart, a.backend_start
FROM pg_stat_activity a
CROSS JOIN LATERAL unnest(pg_blocking_pids(a.pid)) AS blocker(pid)
LEFT JOIN pg_stat_activity b ON b.pid = blocker.pid
LEFT JOIN LATERAL (
	SELECT locktype, database, relation, page, tuple, virtualxid, transactionid, classid, objid, objsubid, waitstart
	FROM pg_locks
	WHERE pid = a.pid AND NOT granted ORDER BY waitstart NULLS LAST LIMIT 1
) l ON true
-- (a prepared transaction's locks are shown with no pid: its lock on its own transaction ID
-- tells which virtual transaction holds them, a row's changed in a subtransaction included)
LEFT JOIN pg_prepared_xacts p ON blocker.pid = 0
	AND (p.transaction = l.transactionid
	     OR EXISTS (
	        SELECT FROM pg_locks h JOIN pg_locks x ON x.virtualtransaction = h.virtualtransaction AND x.pid IS NULL AND x.locktype = 'transactionid'
	        WHERE h.pid IS NULL AND h.granted AND x.transactionid = p.transaction
	          AND (l.locktype = 'transactionid' AND h.locktype = 'transactionid' AND h.transactionid = l.transactionid
	               OR l.locktype = 'relation' AND h.locktype = 'relation' AND h.database = l.database AND h.relation = l.relation)))
WHERE a.wait_event_type = 'Lock' AND (b.pid IS NOT NULL OR p.gid IS NOT NULL)
ORDER BY a.pid, blocker.pid, p.prepared;
END
$collect$;

DROP FUNCTION IF EXISTS telemetry._collect_xmin_holders();
CREATE OR REPLACE FUNCTION telemetry._collect_xmin_holders()
RETURNS TABLE (rank integer, kind text, pid integer, datname text, usename text, name text, state text, held_since timestamptz, horizon_xid bigint, xmin_age bigint, query_preview text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT row_number() OVER (ORDER BY xmin_age DESC, kind, pid, name)::int AS rank, kind, pid, datname, usename, name, state,
	held_since, horizon_xid, xmin_age, query_preview
FROM (SELECT h.*, row_number() OVER (PARTITION BY h.datname, h.kind ORDER BY h.xmin_age DESC, h.pid, h.name) AS in_database
      FROM (SELECT CASE WHEN backend_type = 'walsender' THEN 'standby_feedback' ELSE 'session' END AS kind,
                   pid, datname::text, usename::text, application_name AS name, state,
                   CASE WHEN backend_xid IS NOT NULL AND (backend_xmin IS NULL OR pg_catalog.age(backend_xid) >= pg_catalog.age(backend_xmin))
                             OR state IS DISTINCT FROM 'active' THEN xact_start
                        ELSE query_start END AS held_since,
                   (CASE WHEN backend_xmin IS NULL OR pg_catalog.age(backend_xid) > pg_catalog.age(backend_xmin)
                         THEN backend_xid ELSE backend_xmin END)::text::bigint AS horizon_xid,
                   greatest(pg_catalog.age(backend_xmin), pg_catalog.age(backend_xid))::bigint AS xmin_age,
                   pg_catalog.left(query, 200) AS query_preview
            FROM pg_stat_activity
            WHERE (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL)
              AND backend_type IS DISTINCT FROM 'parallel worker'
              AND NOT (backend_type = 'walsender' AND datname IS NOT NULL)
              AND pid NOT IN (SELECT v.pid FROM pg_stat_progress_vacuum v)
              AND pid <> pg_backend_pid() AND coalesce(application_name, '') NOT LIKE 'pg-batch-exporter%'
            UNION ALL
            SELECT 'prepared_transaction', NULL, database::text, owner::text, gid, NULL, prepared, transaction::text::bigint,
                   pg_catalog.age(transaction)::bigint, NULL
            FROM pg_prepared_xacts
            UNION ALL
            SELECT CASE WHEN slot_type = 'physical' THEN 'standby_feedback' ELSE 'replication_slot' END, active_pid, NULL,
                   NULL, slot_name::text, CASE WHEN active THEN 'active' ELSE 'inactive' END,
                   NULL, xmin::text::bigint, pg_catalog.age(xmin)::bigint, NULL
            FROM pg_replication_slots WHERE xmin IS NOT NULL) h) r
WHERE in_database <= 3
ORDER BY 1 LIMIT 50;
END
$collect$;

DROP FUNCTION IF EXISTS telemetry._collect_progress();
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

DROP FUNCTION IF EXISTS telemetry._collect_replication();
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

-- _statements_extension: pg_stat_statements' schema (quoted) and version where it is usable in
-- this database (installed, loaded, 1.9 or later), as the statements collector decides.
CREATE OR REPLACE FUNCTION telemetry._statements_extension()
RETURNS TABLE (schema text, major integer, minor integer)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
DECLARE
    v_schema text;
    v_version text;
    v_loaded boolean;
BEGIN
    SELECT pg_catalog.quote_ident(n.nspname), e.extversion,
	pg_catalog.current_setting('shared_preload_libraries') ~ '(^|[\s,/"])pg_stat_statements(\.so)?("|\s|,|$)'
FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'pg_stat_statements'
    INTO v_schema, v_version, v_loaded;
    IF v_schema IS NULL OR NOT v_loaded
       OR (split_part(v_version, '.', 1)::int, split_part(v_version, '.', 2)::int) < (1, 9) THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT v_schema, split_part(v_version, '.', 1)::int, split_part(v_version, '.', 2)::int;
END
$collect$;

CREATE OR REPLACE FUNCTION telemetry._collect_statements()
RETURNS TABLE (userid oid, dbid oid, username text, datname text, toplevel boolean, queryid bigint, plans bigint, total_plan_time double precision, calls bigint, total_exec_time double precision, rows bigint, shared_blks_hit bigint, shared_blks_read bigint, shared_blks_dirtied bigint, shared_blks_written bigint, local_blks_hit bigint, local_blks_read bigint, local_blks_dirtied bigint, local_blks_written bigint, temp_blks_read bigint, temp_blks_written bigint, blk_read_time double precision, blk_write_time double precision, local_blk_read_time double precision, local_blk_write_time double precision, wal_records bigint, wal_fpi bigint, wal_bytes bigint, wal_buffers_full bigint, parallel_workers_to_launch bigint, parallel_workers_launched bigint, stats_since timestamptz, minmax_stats_since timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
DECLARE
    e record;
BEGIN
    SELECT * INTO e FROM telemetry._statements_extension();
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF (e.major, e.minor) >= (1, 12) THEN
    RETURN QUERY EXECUTE format($statement$SELECT s.userid, s.dbid, r.rolname::text, d.datname::text, s.toplevel, s.queryid,
	s.plans, s.total_plan_time, s.calls, s.total_exec_time, s.rows,
	s.shared_blks_hit, s.shared_blks_read, s.shared_blks_dirtied, s.shared_blks_written,
	s.local_blks_hit, s.local_blks_read, s.local_blks_dirtied, s.local_blks_written,
	s.temp_blks_read, s.temp_blks_written, s.shared_blk_read_time + s.local_blk_read_time, s.shared_blk_write_time + s.local_blk_write_time,
	s.local_blk_read_time, s.local_blk_write_time,
	s.wal_records, s.wal_fpi, s.wal_bytes::int8, s.wal_buffers_full, s.parallel_workers_to_launch, s.parallel_workers_launched, s.stats_since, s.minmax_stats_since
FROM %1$s.pg_stat_statements(false) s
LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.userid
LEFT JOIN pg_catalog.pg_database d ON d.oid = s.dbid
WHERE s.queryid IS NOT NULL$statement$, e.schema);
    ELSIF (e.major, e.minor) >= (1, 11) THEN
    RETURN QUERY EXECUTE format($statement$SELECT s.userid, s.dbid, r.rolname::text, d.datname::text, s.toplevel, s.queryid,
	s.plans, s.total_plan_time, s.calls, s.total_exec_time, s.rows,
	s.shared_blks_hit, s.shared_blks_read, s.shared_blks_dirtied, s.shared_blks_written,
	s.local_blks_hit, s.local_blks_read, s.local_blks_dirtied, s.local_blks_written,
	s.temp_blks_read, s.temp_blks_written, s.shared_blk_read_time + s.local_blk_read_time, s.shared_blk_write_time + s.local_blk_write_time,
	s.local_blk_read_time, s.local_blk_write_time,
	s.wal_records, s.wal_fpi, s.wal_bytes::int8, NULL::int8, NULL::int8, NULL::int8, s.stats_since, s.minmax_stats_since
FROM %1$s.pg_stat_statements(false) s
LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.userid
LEFT JOIN pg_catalog.pg_database d ON d.oid = s.dbid
WHERE s.queryid IS NOT NULL$statement$, e.schema);
    ELSE
    RETURN QUERY EXECUTE format($statement$SELECT s.userid, s.dbid, r.rolname::text, d.datname::text, s.toplevel, s.queryid,
	s.plans, s.total_plan_time, s.calls, s.total_exec_time, s.rows,
	s.shared_blks_hit, s.shared_blks_read, s.shared_blks_dirtied, s.shared_blks_written,
	s.local_blks_hit, s.local_blks_read, s.local_blks_dirtied, s.local_blks_written,
	s.temp_blks_read, s.temp_blks_written, s.blk_read_time, s.blk_write_time, NULL::float8, NULL::float8,
	s.wal_records, s.wal_fpi, s.wal_bytes::int8, NULL::int8, NULL::int8, NULL::int8, NULL::timestamptz, NULL::timestamptz
FROM %1$s.pg_stat_statements(false) s
LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.userid
LEFT JOIN pg_catalog.pg_database d ON d.oid = s.dbid
WHERE s.queryid IS NOT NULL$statement$, e.schema);
    END IF;
END
$collect$;
REVOKE EXECUTE ON FUNCTION telemetry._collect_statements() FROM PUBLIC;

CREATE OR REPLACE FUNCTION telemetry._collect_statements_info()
RETURNS TABLE (dealloc bigint, stats_reset timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
DECLARE
    e record;
BEGIN
    SELECT * INTO e FROM telemetry._statements_extension();
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format($statement$SELECT dealloc, stats_reset FROM %1$s.pg_stat_statements_info$statement$, e.schema);
END
$collect$;
REVOKE EXECUTE ON FUNCTION telemetry._collect_statements_info() FROM PUBLIC;

CREATE OR REPLACE FUNCTION telemetry._collect_statement_texts(p_queryids bigint[], p_length integer)
RETURNS TABLE (queryid bigint, query text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
DECLARE
    e record;
BEGIN
    SELECT * INTO e FROM telemetry._statements_extension();
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format($statement$SELECT DISTINCT ON (queryid) queryid, pg_catalog.left(query, $2)
FROM %1$s.pg_stat_statements(true)
WHERE queryid = ANY ($1) AND query IS NOT NULL
ORDER BY queryid$statement$, e.schema) USING p_queryids, p_length;
END
$collect$;
REVOKE EXECUTE ON FUNCTION telemetry._collect_statement_texts(bigint[], integer) FROM PUBLIC;

-- The tables declared in collectors/recorded.go, as the recorder writes them from its collections.

CREATE OR REPLACE FUNCTION telemetry._record_snapshots(p_id integer, p_server text, p_at timestamptz)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $record$
BEGIN
    INSERT INTO telemetry.table_snapshots (snapshot_id, relid, schemaname, relname, pg_relation_size,
        pg_total_relation_size, pg_indexes_size, n_live_tup, n_dead_tup, n_tup_ins, n_tup_upd,
        n_tup_del, n_tup_hot_upd, last_vacuum, last_autovacuum, last_analyze, last_autoanalyze,
        vacuum_count, autovacuum_count, analyze_count, autoanalyze_count, server, captured_at)
    SELECT p_id, c.relid, c.schemaname, c.relname, c.relation_size, c.total_size, c.indexes_size,
        c.n_live_tup, c.n_dead_tup, c.n_tup_ins, c.n_tup_upd, c.n_tup_del, c.n_tup_hot_upd,
        c.last_vacuum, c.last_autovacuum, c.last_analyze, c.last_autoanalyze, c.vacuum_count,
        c.autovacuum_count, c.analyze_count, c.autoanalyze_count, p_server, p_at
    FROM telemetry._collect_tables('{}', '{}') c;
    INSERT INTO telemetry.replication_snapshots (snapshot_id, pid, client_addr, application_name,
        state, sync_state, sent_lsn, write_lsn, flush_lsn, replay_lsn, write_lag, flush_lag,
        replay_lag, server, captured_at)
    SELECT p_id, c.pid, c.client_addr::inet, c.application_name, c.state, c.sync_state,
        c.sent_lsn::pg_lsn, c.write_lsn::pg_lsn, c.flush_lsn::pg_lsn, c.replay_lsn::pg_lsn,
        make_interval(secs => c.write_lag_seconds), make_interval(secs => c.flush_lag_seconds),
        make_interval(secs => c.replay_lag_seconds), p_server, p_at
    FROM telemetry._collect_replication() c;
    INSERT INTO telemetry.relation_states (snapshot_id, relid, schemaname, relname, relfilenode,
        reltuples, n_live_tup, n_mod_since_analyze, last_analyze, last_autoanalyze, last_vacuum,
        last_autovacuum, total_size, autovacuum_enabled, indexes, triggers, foreign_keys, server,
        captured_at)
    SELECT p_id, c.relid, c.schemaname, c.relname, c.relfilenode, c.reltuples, c.n_live_tup,
        c.n_mod_since_analyze, c.last_analyze, c.last_autoanalyze, c.last_vacuum, c.last_autovacuum,
        c.total_size, c.autovacuum_enabled, c.indexes::jsonb, c.triggers::jsonb,
        c.foreign_keys::jsonb, p_server, p_at
    FROM telemetry._collect_relation_states('{}', '{}', '{}') c;
END
$record$;
REVOKE EXECUTE ON FUNCTION telemetry._record_snapshots(integer, text, timestamptz) FROM PUBLIC;

CREATE OR REPLACE FUNCTION telemetry._record_samples(p_id integer, p_server text, p_at timestamptz)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $record$
BEGIN
    INSERT INTO telemetry.wait_samples (sample_id, backend_type, wait_event_type, wait_event, state,
        count, server, captured_at)
    SELECT p_id, c.backend_type, c.wait_event_type, c.wait_event, c.state, c.count, p_server, p_at
    FROM telemetry._collect_session_groups() c;
    INSERT INTO telemetry.activity_samples (sample_id, pid, usename, application_name, backend_type,
        state, wait_event_type, wait_event, query_start, state_change, query_preview, datname,
        server, captured_at)
    SELECT p_id, c.pid, c.usename, c.application_name, c.backend_type, c.state, c.wait_event_type,
        c.wait_event, c.query_start, c.state_change, telemetry._normalized_query(c.query_preview),
        c.datname, p_server, p_at
    FROM telemetry._collect_active_sessions() c;
    INSERT INTO telemetry.progress_samples (sample_id, progress_type, pid, relid, relname, phase,
        blocks_total, blocks_done, tuples_total, tuples_done, bytes_total, bytes_done, details,
        datname, server, captured_at)
    SELECT p_id, c.progress_type, c.pid, c.relid, c.relname, c.phase, c.blocks_total, c.blocks_done,
        c.tuples_total, c.tuples_done, c.bytes_total, c.bytes_done, c.details, c.datname, p_server,
        p_at
    FROM telemetry._collect_progress() c;
    INSERT INTO telemetry.lock_samples (sample_id, blocked_pid, blocked_user, blocked_app,
        blocked_query_preview, blocked_duration, blocking_pid, blocking_user, blocking_app,
        blocking_query_preview, lock_type, locked_relation, datname, blocking_state, locked_object,
        server, captured_at)
    SELECT p_id, c.blocked_pid, c.blocked_user, c.blocked_app,
        telemetry._normalized_query(c.blocked_query_preview),
        make_interval(secs => c.waited_seconds), c.blocking_pid, c.blocking_user, c.blocking_app,
        telemetry._normalized_query(c.blocking_query_preview), c.lock_type, c.locked_relation,
        c.datname, c.blocking_state, c.locked_object, p_server, p_at
    FROM telemetry._collect_lock_waits() c;
    INSERT INTO telemetry.xmin_horizon_samples (sample_id, rank, kind, pid, datname, usename, name,
        state, held_since, horizon_xid, xmin_age, query_preview, server, captured_at)
    SELECT p_id, c.rank, c.kind, c.pid, c.datname, c.usename, c.name, c.state, c.held_since,
        c.horizon_xid, c.xmin_age, telemetry._normalized_query(c.query_preview), p_server, p_at
    FROM telemetry._collect_xmin_holders() c;
END
$record$;
REVOKE EXECUTE ON FUNCTION telemetry._record_samples(integer, text, timestamptz) FROM PUBLIC;
