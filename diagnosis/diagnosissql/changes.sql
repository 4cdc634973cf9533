-- What changed since a run's baseline (issue 20): the relations its batch touches (their
-- indexes, triggers, foreign keys, statistics, rewrites, size) and the server's settings, start and version (the
-- tables: schema/migrations/0017_batch_relations_and_settings.sql). The run cause
-- diagnosis/findings/what_changed makes each change a finding, the statements it slowed its
-- children; run_changes (there) lists them all.

INSERT INTO telemetry.diagnose_thresholds (name, value, unit, description) VALUES
    ('stale_statistics_pct', 20, 'percent',
     'statistics_stale: rows modified since the table''s last analyze at the run''s start, as a share of its rows (50 rows at least), where they were below it in the baseline.'),
    ('table_growth_ratio', 3, 'ratio',
     'table_grew: a table the batch touches at least this many times its size at the baseline.')
ON CONFLICT (name) DO UPDATE SET unit = excluded.unit, description = excluded.description;

-- _setting_can_slow tells the settings whose change can slow a batch, by their pg_settings
-- category: the planner's and memory (a plan, a spill), the WAL's and checkpoints' (a lowered
-- max_wal_size brings checkpoints and full-page images; synchronous_commit, commit waits) and
-- replication's (synchronous_standby_names). Not logging, statistics or connection settings.
CREATE OR REPLACE FUNCTION telemetry._setting_can_slow(p_category text)
RETURNS boolean LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(p_category ~ '^(Query Tuning|Resource Usage|Write-Ahead Log|Replication)', false)
$$;

-- _change_points are the two instants a run's changes compare: before, the latest baseline
-- run's end snapshot (where the batch last ran normally); after, where the run's start snapshot
-- is looked for (_run_window's snapshot_start). No baseline run: no row.
CREATE OR REPLACE FUNCTION telemetry._change_points(p_run_id bigint)
RETURNS TABLE (server text, before_at timestamptz, after_at timestamptz, end_at timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT srv.server,
           coalesce((SELECT min(s.captured_at) FROM telemetry.snapshots s
                     WHERE s.server = srv.server AND s.captured_at >= lb.end_time AND s.captured_at < w.start_time), lb.end_time),
           w.snapshot_start,
           coalesce((SELECT min(s.captured_at) FROM telemetry.snapshots s WHERE s.server = srv.server AND s.captured_at >= w.end_time), w.end_time)
    FROM telemetry._run_window(p_run_id) w, LATERAL (SELECT telemetry._resolve_server(w.server) AS server) srv,
         LATERAL (SELECT b.end_time FROM telemetry._baseline_runs(p_run_id) b ORDER BY b.start_time DESC LIMIT 1) lb;
END
$$;

-- _tracked_relids are the tables a server's table snapshots had between p_from and p_to: each
-- the next relid with a row in the window, one index probe a day partition (the window's rows
-- all, read for their distinct relids, were a month's 430,000 at 10 tracked tables: 140 ms).
CREATE OR REPLACE FUNCTION telemetry._tracked_relids(p_server text, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (relid oid)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH RECURSIVE t AS (
        SELECT (SELECT min(x.relid) FROM telemetry.table_snapshots x
                WHERE x.server = p_server AND x.captured_at BETWEEN p_from AND p_to) AS relid
        UNION ALL
        SELECT (SELECT min(x.relid) FROM telemetry.table_snapshots x
                WHERE x.server = p_server AND x.relid > t.relid AND x.captured_at BETWEEN p_from AND p_to)
        FROM t WHERE t.relid IS NOT NULL)
    SELECT t.relid FROM t WHERE t.relid IS NOT NULL;
END
$$;

-- _run_relations are the relations a run's batch touches: those its own sessions held locks
-- on during the run or its baseline runs (batch_relations), and the tracked tables of the run.
-- (In PL/pgSQL, as _tracked_relids, for a plan kept in the session: a SQL function is planned
-- at each call until PostgreSQL 18, and planning their day partitions was most of the time.)
CREATE OR REPLACE FUNCTION telemetry._run_relations(p_run_id bigint)
RETURNS TABLE (relid oid)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT DISTINCT x.relid FROM telemetry._change_points(p_run_id) p, telemetry._run_window(p_run_id) w,
        LATERAL (SELECT b.relid FROM telemetry.batch_relations b, telemetry._baseline_runs(p_run_id) br
                 WHERE b.server = p.server AND b.batch = w.batch AND b.captured_at BETWEEN br.start_time AND br.end_time
                 UNION ALL
                 SELECT b.relid FROM telemetry.batch_relations b
                 WHERE b.server = p.server AND b.batch = w.batch AND b.captured_at BETWEEN w.start_time AND w.end_time
                 UNION ALL
                 SELECT t.relid FROM telemetry._tracked_relids(p.server, w.start_time, p.end_at) t) x;
END
$$;

-- _relation_state_at is a relation's state as last read at or before p_at (after p_after).
CREATE OR REPLACE FUNCTION telemetry._relation_state_at(p_server text, p_relid oid, p_after timestamptz, p_at timestamptz)
RETURNS SETOF telemetry.relation_states
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM telemetry.relation_states s
    WHERE s.server = p_server AND s.relid = p_relid AND s.captured_at > p_after AND s.captured_at <= p_at
    ORDER BY s.captured_at DESC LIMIT 1
$$;

-- _settings_at are the server's settings as kept at or before p_at (server_settings).
CREATE OR REPLACE FUNCTION telemetry._settings_at(p_server text, p_at timestamptz)
RETURNS jsonb LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT s.settings FROM telemetry.server_settings s WHERE s.server = p_server AND s.captured_at <= p_at
    ORDER BY s.captured_at DESC LIMIT 1
$$;

-- _run_roles are the roles a run's batch ran as: its own sessions' (batch_relations), and the
-- role that began it with batch_begin.
CREATE OR REPLACE FUNCTION telemetry._run_roles(p_run_id bigint)
RETURNS TABLE (role text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT b.username FROM telemetry._run_window(p_run_id) w, LATERAL (SELECT telemetry._resolve_server(w.server) AS server) srv,
        telemetry.batch_relations b
    WHERE b.server = srv.server AND b.batch = w.batch AND b.captured_at BETWEEN w.start_time AND w.end_time
    UNION
    SELECT r.began_by::text FROM telemetry.batch_runs r WHERE r.run_id = p_run_id AND r.began_by IS NOT NULL
$$;

-- _state_list_changes: a relation's list of indexes, triggers or foreign keys (p_list) in two
-- of its states (relation_states rows as JSON), paired by table and name: (before, after),
-- NULL where one is missing, the pairs that differ; none where either state did not read it
-- (NULL: read before 0022, or not read while the table was locked).
CREATE OR REPLACE FUNCTION telemetry._state_list_changes(p_before jsonb, p_after jsonb, p_list text)
RETURNS TABLE (before jsonb, after jsonb)
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH known AS (SELECT jsonb_typeof(p_before -> p_list) = 'array' AND jsonb_typeof(p_after -> p_list) = 'array' AS yes),
    b AS (SELECT e.value, concat_ws('.', e.value ->> 'table', e.value ->> 'name') AS k
          FROM known, jsonb_array_elements(CASE WHEN known.yes THEN p_before -> p_list END) e),
    a AS (SELECT e.value, concat_ws('.', e.value ->> 'table', e.value ->> 'name') AS k
          FROM known, jsonb_array_elements(CASE WHEN known.yes THEN p_after -> p_list END) e)
    SELECT b.value, a.value FROM b FULL JOIN a ON a.k = b.k WHERE b.value IS DISTINCT FROM a.value
$$;

-- _run_changes: what differs between a run's start and its latest baseline run's end (the
-- _change_points), one row a change: kind, the object changed, its old and new value, a
-- detail, the relation (relid) it is of, and whether it can slow the batch's statements:
-- a relation's change, a planner or memory setting, a per-role or per-database setting of the
-- batch's role and database, a restart (cold cache) or an upgrade; not a change to
-- logging, say (affects false: told at info, never blamed).
--   index_dropped, index_created, index_invalid   an index of a relation the batch touches
--                      (of one whose state was first read in the run, by name only: the
--                      settings' index catalog)
--   statistics_stale   rows modified since the last analyze at the run's start, over
--                      stale_statistics_pct of its rows where the baseline's were not
--   table_rewritten    a new relfilenode (VACUUM FULL, CLUSTER, TRUNCATE, ALTER TABLE ... TYPE)
--   table_grew         its size table_growth_ratio times its baseline's or more (bloat: its
--                      live rows did not grow as much)
--   autovacuum_disabled   autovacuum_enabled = false set on the table since the baseline;
--                      the bloat and stale statistics that came since are told with it, not
--                      as table_grew and statistics_stale (affects: where either came)
--   trigger_created, trigger_enabled, trigger_changed (its definition), trigger_dropped,
--   trigger_disabled   a user trigger of a relation the batch touches (the last two cannot
--                      slow it)
--   foreign_key_added, foreign_key_changed, foreign_key_dropped   a foreign key of a relation
--                      the batch touches, or referencing it (each row written, or deleted on
--                      the referenced side, is checked; not where it is NOT ENFORCED, nor
--                      where it was only validated)
--   setting_changed    a server setting (pg_settings: from the configuration, or a pending restart)
--   role_setting_changed   ALTER ROLE/DATABASE ... SET of the batch's database (pg_db_role_setting)
--   server_restarted, server_upgraded, extension_changed
--   function_changed   a function or procedure of the database redeployed (CREATE OR REPLACE,
--                      ALTER FUNCTION): another body or attributes; its relid is a table the
--                      batch touches whose trigger runs it (the first by name), if any
CREATE OR REPLACE FUNCTION telemetry._run_changes(p_run_id bigint)
RETURNS TABLE (kind text, object text, old text, new text, detail text, relid oid, affects boolean)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH p AS (SELECT * FROM telemetry._change_points(p_run_id)),
    r AS (SELECT * FROM telemetry._run_relations(p_run_id)),
    rel AS (
        SELECT b.*, coalesce(a1.relid, a2.relid) IS NOT NULL AS has_after,
               CASE WHEN a1.relid IS NOT NULL THEN to_jsonb(a1) ELSE to_jsonb(a2) END AS a, to_jsonb(b) AS b_row
        FROM p, r,
             LATERAL telemetry._relation_state_at(p.server, r.relid, '-infinity', p.before_at) b
             LEFT JOIN LATERAL telemetry._relation_state_at(p.server, r.relid, p.before_at, p.after_at) a1 ON true
             LEFT JOIN LATERAL (SELECT * FROM telemetry.relation_states s
                                WHERE s.server = p.server AND s.relid = r.relid AND s.captured_at > p.after_at AND s.captured_at <= p.end_at
                                ORDER BY s.captured_at LIMIT 1) a2 ON a1.relid IS NULL),
    pair AS (  -- each relation's state before (b_row) and after (a), named
        SELECT format('%s.%s', rel.schemaname, rel.relname) AS name, rel.relid, rel.b_row AS b, rel.a
        FROM rel WHERE rel.has_after),
    idx AS (SELECT pair.name, pair.relid, x.before AS bi, x.after AS ai FROM pair, telemetry._state_list_changes(pair.b, pair.a, 'indexes') x),
    -- Triggers and foreign keys once each though more than one of its tables is the batch's (a
    -- partition's copy of its parent's trigger or key is the parent's).
    trg AS (
        SELECT DISTINCT ON (coalesce(x.after, x.before) ->> 'table', coalesce(x.after, x.before) ->> 'name') pair.relid, x.before AS bt, x.after AS at
        FROM pair, telemetry._state_list_changes(pair.b, pair.a, 'triggers') x
        ORDER BY coalesce(x.after, x.before) ->> 'table', coalesce(x.after, x.before) ->> 'name', pair.relid),
    -- A key's sides the batch touches: the table it is defined on (inserts and key updates
    -- are checked) and the one it references (deletes and key updates are).
    fk AS (
        SELECT DISTINCT ON (coalesce(x.after, x.before) ->> 'table', coalesce(x.after, x.before) ->> 'name') pair.relid, x.before AS bk, x.after AS ak,
               bool_or(pair.name = coalesce(x.after, x.before) ->> 'table') OVER w AS on_table,
               bool_or(pair.name = coalesce(x.after, x.before) ->> 'references') OVER w AS on_referenced,
               (x.after ->> 'definition') NOT LIKE '% NOT ENFORCED%' AS enforced,
               replace(x.before ->> 'definition', ' NOT VALID', '') IS NOT DISTINCT FROM replace(x.after ->> 'definition', ' NOT VALID', '') AS validated_only
        FROM pair, telemetry._state_list_changes(pair.b, pair.a, 'foreign_keys') x
        WINDOW w AS (PARTITION BY coalesce(x.after, x.before) ->> 'table', coalesce(x.after, x.before) ->> 'name')
        ORDER BY coalesce(x.after, x.before) ->> 'table', coalesce(x.after, x.before) ->> 'name', pair.relid),
    stale0 AS (
        SELECT pair.*, (pair.a ->> 'n_mod_since_analyze')::numeric AS mods,
               greatest((pair.a ->> 'reltuples')::numeric, (pair.a ->> 'n_live_tup')::numeric, 0) AS rows_now,
               (pair.b ->> 'n_mod_since_analyze')::numeric AS b_mods,
               greatest((pair.b ->> 'reltuples')::numeric, (pair.b ->> 'n_live_tup')::numeric, 0) AS b_rows,
               (pair.a ->> 'total_size')::numeric / nullif((pair.b ->> 'total_size')::numeric, 0) AS size_ratio,
               -- autovacuum_enabled = false set on the table since the baseline
               coalesce((pair.b ->> 'autovacuum_enabled')::boolean, true) AND NOT coalesce((pair.a ->> 'autovacuum_enabled')::boolean, true) AS av_off
        FROM pair),
    -- is_stale: statistics_stale's rule; grew: table_grew's; bloated: grown while its live rows
    -- did not (known at both ends): dead rows and free space, not data.
    stale AS (
        SELECT s.*, s.is_grew AND s.b_rows > 0 AND s.rows_now > 0 AND s.rows_now < telemetry._threshold('table_growth_ratio') * s.b_rows AS bloated
        FROM (SELECT s0.*,
                     coalesce(s0.mods >= greatest(50, telemetry._threshold('stale_statistics_pct') / 100 * s0.rows_now)
                              AND (s0.b_mods IS NULL OR s0.b_mods < greatest(50, telemetry._threshold('stale_statistics_pct') / 100 * s0.b_rows)), false) AS is_stale,
                     coalesce(s0.size_ratio >= telemetry._threshold('table_growth_ratio'), false) AS is_grew
              FROM stale0 s0) s),
    st AS (SELECT p.server, telemetry._settings_at(p.server, p.before_at) AS b, telemetry._settings_at(p.server, p.after_at) AS a FROM p),
    -- A relation whose state was first read after the baseline (in its baseline runs, its
    -- statements too brief for the sampler to see them hold its locks; not tracked): its
    -- indexes' names as the settings kept them at the batch's boundaries (the Go exporter's
    -- catalog, 'indexes'; a table without indexes is not in it).
    unseen AS (
        SELECT format('%s.%s', a.schemaname, a.relname) AS name, r.relid
        FROM p, r,
             LATERAL (SELECT s.schemaname, s.relname FROM telemetry.relation_states s
                      WHERE s.server = p.server AND s.relid = r.relid AND s.captured_at > p.before_at AND s.captured_at <= p.end_at
                      ORDER BY s.captured_at LIMIT 1) a
        WHERE NOT EXISTS (SELECT FROM telemetry.relation_states s WHERE s.server = p.server AND s.relid = r.relid AND s.captured_at <= p.before_at)),
    cat AS (
        SELECT u.name, u.relid, st.b -> 'indexes' -> u.name AS bi, coalesce(st.a -> 'indexes' -> u.name, '[]') AS ai
        FROM unseen u, st
        WHERE jsonb_typeof(st.b -> 'indexes' -> u.name) = 'array' AND jsonb_typeof(st.a -> 'indexes') = 'object'),
    -- The functions' fingerprints at both ends, each expanded once (a database may have
    -- thousands: looked up one by one in the documents, each lookup a copy of them).
    fn AS (SELECT st.b -> 'functions' AS b, st.a -> 'functions' AS a FROM st
           WHERE jsonb_typeof(st.a -> 'functions') = 'object' AND jsonb_typeof(st.b -> 'functions') = 'object'
             AND st.a -> 'functions' <> st.b -> 'functions'),
    fa AS (SELECT x.name, x.md5 FROM fn, jsonb_each_text(fn.a) x (name, md5)),
    fb AS (SELECT x.name, x.md5 FROM fn, jsonb_each_text(fn.b) x (name, md5))
    SELECT 'index_dropped', format('%s on %s', idx.bi ->> 'name', idx.name), idx.bi ->> 'definition', NULL,
           'the statements that used it read the table otherwise', idx.relid, true
    FROM idx WHERE idx.ai IS NULL
    UNION ALL
    SELECT 'index_dropped', format('%s on %s', x.name, cat.name), NULL, NULL,
           'the statements that used it read the table otherwise (its definition was not kept: the table''s state was first read after the baseline)',
           cat.relid, true
    FROM cat, jsonb_array_elements_text(cat.bi) x (name) WHERE NOT cat.ai ? x.name
    UNION ALL
    SELECT 'index_created', format('%s on %s', x.name, cat.name), NULL, NULL,
           'each row the batch writes to the table updates it too; the planner may choose it over the plans the batch ran with', cat.relid, true
    FROM cat, jsonb_array_elements_text(cat.ai) x (name) WHERE NOT cat.bi ? x.name
    UNION ALL
    SELECT 'index_created', format('%s on %s', idx.ai ->> 'name', idx.name), NULL, idx.ai ->> 'definition',
           'each row the batch writes to the table updates it too; the planner may choose it over the plans the batch ran with', idx.relid, true
    FROM idx WHERE idx.bi IS NULL
    UNION ALL
    SELECT 'index_invalid', format('%s on %s', idx.ai ->> 'name', idx.name), 'valid', 'invalid',
           'not valid (a failed CREATE INDEX CONCURRENTLY or REINDEX): the planner does not use it; REINDEX INDEX CONCURRENTLY rebuilds it',
           idx.relid, true
    FROM idx WHERE idx.bi IS NOT NULL AND idx.ai IS NOT NULL
               AND NOT ((idx.ai ->> 'valid')::boolean AND (idx.ai ->> 'ready')::boolean)
               AND ((idx.bi ->> 'valid')::boolean AND (idx.bi ->> 'ready')::boolean)
    UNION ALL
    SELECT CASE WHEN trg.bt IS NULL THEN 'trigger_created' WHEN trg.at IS NULL THEN 'trigger_dropped'
                WHEN (trg.at ->> 'enabled')::boolean AND NOT (trg.bt ->> 'enabled')::boolean THEN 'trigger_enabled'
                WHEN (trg.bt ->> 'enabled')::boolean AND NOT (trg.at ->> 'enabled')::boolean THEN 'trigger_disabled'
                ELSE 'trigger_changed' END,
           format('%s on %s', coalesce(trg.at, trg.bt) ->> 'name', coalesce(trg.at, trg.bt) ->> 'table'),
           (trg.bt ->> 'definition') || CASE WHEN (trg.bt ->> 'enabled')::boolean THEN '' ELSE ' (disabled)' END,
           (trg.at ->> 'definition') || CASE WHEN (trg.at ->> 'enabled')::boolean THEN '' ELSE ' (disabled)' END,
           CASE WHEN (trg.at ->> 'enabled')::boolean
                THEN 'it fires for the statements that write the table: its function''s work, and what it writes, adds to theirs'
                WHEN trg.bt IS NULL THEN 'created disabled: it does not fire'
                WHEN NOT (trg.bt ->> 'enabled')::boolean THEN 'disabled before and after: it does not fire'
                ELSE 'it no longer fires for the batch''s writes' END,
           trg.relid, coalesce((trg.at ->> 'enabled')::boolean, false)
    FROM trg
    UNION ALL
    SELECT CASE WHEN fk.bk IS NULL THEN 'foreign_key_added' WHEN fk.ak IS NULL THEN 'foreign_key_dropped' ELSE 'foreign_key_changed' END,
           format('%s on %s', coalesce(fk.ak, fk.bk) ->> 'name', coalesce(fk.ak, fk.bk) ->> 'table'),
           fk.bk ->> 'definition', fk.ak ->> 'definition',
           CASE WHEN fk.ak IS NULL THEN 'its checks no longer run'
                WHEN NOT fk.enforced THEN 'not enforced: it checks nothing'
                WHEN fk.bk IS NOT NULL AND fk.validated_only THEN 'validated (VALIDATE CONSTRAINT): the checks of each row are as before'
                ELSE concat_ws('; ',
                    CASE WHEN fk.on_table OR NOT fk.on_referenced
                         THEN format('each row the batch inserts into %s, or whose key it updates, is looked up in %s', fk.ak ->> 'table', fk.ak ->> 'references') END,
                    CASE WHEN fk.on_referenced OR NOT fk.on_table
                         THEN format('each row the batch deletes from %s, or whose key it updates, is looked for in %s: without an index on its referencing columns, by a scan',
                                     fk.ak ->> 'references', fk.ak ->> 'table') END) END,
           fk.relid, fk.ak IS NOT NULL AND fk.enforced AND NOT (fk.bk IS NOT NULL AND fk.validated_only)
    FROM fk
    UNION ALL
    SELECT 'statistics_stale', s.name,
           format('%s rows modified since its last analyze', coalesce(s.b_mods::text, 'unknown')),
           format('%s rows modified since its last analyze (%s%% of %s rows)', s.mods, round(100 * s.mods / greatest(s.rows_now, 1)), round(s.rows_now)),
           concat_ws('; ',
                     'the planner estimates from statistics older than the data',
                     CASE WHEN NOT (s.a ->> 'autovacuum_enabled')::boolean THEN 'autovacuum is off for the table (autovacuum_enabled = false): nothing analyzes it' END,
                     format('last analyzed %s', coalesce(greatest(s.a ->> 'last_analyze', s.a ->> 'last_autoanalyze'), 'never')),
                     CASE WHEN greatest(s.b ->> 'last_analyze', s.b ->> 'last_autoanalyze') IS DISTINCT FROM greatest(s.a ->> 'last_analyze', s.a ->> 'last_autoanalyze') THEN NULL
                          WHEN s.b_mods IS NOT NULL THEN 'no analyze since the baseline' END),
           s.relid, true
    FROM stale s
    WHERE s.is_stale AND NOT s.av_off  -- where autovacuum was turned off since, autovacuum_disabled tells it
    UNION ALL
    -- autovacuum turned off for the table since the baseline: what it let build up since (the
    -- table bloated by dead rows, statistics gone stale) is told here, not as table_grew or
    -- statistics_stale, so that the statements' time goes to the one change; it slowed nothing
    -- where neither came (affects false).
    SELECT 'autovacuum_disabled', s.name, 'autovacuum_enabled = true', 'autovacuum_enabled = false',
           concat_ws('; ',
                     'nothing vacuums or analyzes the table since',
                     CASE WHEN s.bloated THEN format('it is %s times its size at the baseline (%s -> %s) at %s: dead rows its updates and deletes left, which every scan of it still reads',
                                                     round(s.size_ratio, 1), telemetry._pretty_bytes((s.b ->> 'total_size')::bigint), telemetry._pretty_bytes((s.a ->> 'total_size')::bigint),
                                                     CASE WHEN s.rows_now BETWEEN 0.9 * s.b_rows AND 1.1 * s.b_rows THEN format('the same %s live rows', round(s.rows_now))
                                                          ELSE format('%s live rows (%s at the baseline)', round(s.rows_now), round(s.b_rows)) END) END,
                     CASE WHEN s.is_stale THEN format('%s rows modified since its last analyze (%s%% of its rows): the planner estimates from statistics older than the data',
                                                      s.mods, round(100 * s.mods / greatest(s.rows_now, 1))) END),
           s.relid, s.bloated OR s.is_stale
    FROM stale s WHERE s.av_off
    UNION ALL
    SELECT 'table_rewritten', pair.name, pair.b ->> 'relfilenode', pair.a ->> 'relfilenode',
           'a new relfilenode (VACUUM FULL, CLUSTER, TRUNCATE or ALTER TABLE): its pages, statistics and caches are new',
           pair.relid, true
    FROM pair WHERE pair.b ->> 'relfilenode' IS DISTINCT FROM pair.a ->> 'relfilenode'
    UNION ALL
    SELECT 'table_grew', s.name, telemetry._pretty_bytes((s.b ->> 'total_size')::bigint), telemetry._pretty_bytes((s.a ->> 'total_size')::bigint),
           concat_ws('; ', format('%s times its size at the baseline', round(s.size_ratio, 1)),
                     CASE WHEN s.bloated THEN format('its live rows %s -> %s: the growth is dead rows and free space (bloat), not data', round(s.b_rows), round(s.rows_now))
                          WHEN s.b_rows > 0 AND s.rows_now > 0 THEN format('its rows %s -> %s', round(s.b_rows), round(s.rows_now)) END),
           s.relid, true
    FROM stale s WHERE s.is_grew AND NOT (s.av_off AND s.bloated)  -- bloat since autovacuum was turned off: autovacuum_disabled
    UNION ALL
    SELECT 'setting_changed', k.name,
           coalesce((st.b -> 'settings' -> k.name ->> 'setting') || coalesce(st.b -> 'settings' -> k.name ->> 'unit', ''), 'default'),
           coalesce((st.a -> 'settings' -> k.name ->> 'setting') || coalesce(st.a -> 'settings' -> k.name ->> 'unit', ''), 'default'),
           concat_ws('; ', format('source: %s', coalesce(st.a -> 'settings' -> k.name ->> 'source', 'default')),
                     CASE WHEN (st.a -> 'settings' -> k.name ->> 'pending_restart')::boolean THEN 'pending restart: not in effect yet' END,
                     'server-wide: applies to every role and database'),
           NULL,
           telemetry._setting_can_slow(coalesce(st.a -> 'settings' -> k.name ->> 'category', st.b -> 'settings' -> k.name ->> 'category'))
             AND NOT coalesce((st.a -> 'settings' -> k.name ->> 'pending_restart')::boolean, false)
    FROM st, LATERAL (SELECT x AS name FROM jsonb_object_keys(st.b -> 'settings') x UNION SELECT y FROM jsonb_object_keys(st.a -> 'settings') y) k
    WHERE st.b IS NOT NULL AND st.a IS NOT NULL
      AND ((st.b -> 'settings' -> k.name ->> 'setting') IS DISTINCT FROM (st.a -> 'settings' -> k.name ->> 'setting')
           OR (st.b -> 'settings' -> k.name ->> 'pending_restart') IS DISTINCT FROM (st.a -> 'settings' -> k.name ->> 'pending_restart'))
    UNION ALL
    SELECT 'role_setting_changed', format('%s%s', coalesce('ALTER ROLE ' || rs.role, 'ALTER DATABASE ' || rs.database),
                                          CASE WHEN rs.role IS NOT NULL AND rs.database IS NOT NULL THEN ' IN DATABASE ' || rs.database ELSE '' END)
                                   || ' SET ' || rs.name,
           coalesce(rs.old, 'not set'), coalesce(rs.new, 'not set'),
           CASE WHEN rs.applies THEN 'applies to the batch''s sessions (its role and database)'
                ELSE 'not a planner, memory, WAL or replication setting of the batch''s role' END,
           NULL, rs.applies
    FROM (
        SELECT coalesce(b.role, a.role) AS role, coalesce(b.database, a.database) AS database, coalesce(b.name, a.name) AS name,
               b.value AS old, a.value AS new,
               (coalesce(b.role, a.role) IS NULL OR coalesce(b.role, a.role) IN (SELECT x.role FROM telemetry._run_roles(p_run_id) x))
             -- a setting that can slow it (its category as this server's pg_settings has it)
             AND EXISTS (SELECT FROM pg_settings g WHERE g.name = coalesce(b.name, a.name) AND telemetry._setting_can_slow(g.category)) AS applies
        FROM (SELECT e ->> 'role' AS role, e ->> 'database' AS database, split_part(c, '=', 1) AS name, substr(c, strpos(c, '=') + 1) AS value
              FROM st, jsonb_array_elements(st.b -> 'role_settings') e, jsonb_array_elements_text(e -> 'settings') c) b
        FULL JOIN (SELECT e ->> 'role' AS role, e ->> 'database' AS database, split_part(c, '=', 1) AS name, substr(c, strpos(c, '=') + 1) AS value
                   FROM st, jsonb_array_elements(st.a -> 'role_settings') e, jsonb_array_elements_text(e -> 'settings') c) a
          ON a.role IS NOT DISTINCT FROM b.role AND a.database IS NOT DISTINCT FROM b.database AND a.name = b.name
        WHERE b.value IS DISTINCT FROM a.value AND (SELECT st.b IS NOT NULL FROM st)) rs
    UNION ALL
    SELECT 'server_restarted', 'server', st.b ->> 'start_time', st.a ->> 'start_time',
           'shared buffers start cold, so the first reads come from disk (or the OS cache)', NULL, true
    FROM st WHERE st.b ->> 'start_time' IS DISTINCT FROM st.a ->> 'start_time' AND st.b IS NOT NULL
    UNION ALL
    SELECT 'server_upgraded', 'server', st.b ->> 'version', st.a ->> 'version',
           'plans and statistics may differ', NULL, true
    FROM st WHERE st.b ->> 'version' IS DISTINCT FROM st.a ->> 'version' AND st.b IS NOT NULL
    UNION ALL
    SELECT 'extension_changed', k.name, coalesce(st.b -> 'extensions' ->> k.name, 'not installed'), coalesce(st.a -> 'extensions' ->> k.name, 'not installed'),
           'an extension installed, dropped or updated', NULL, false
    FROM st, LATERAL (SELECT x AS name FROM jsonb_object_keys(st.b -> 'extensions') x UNION SELECT y FROM jsonb_object_keys(st.a -> 'extensions') y) k
    WHERE st.b IS NOT NULL AND st.b -> 'extensions' ->> k.name IS DISTINCT FROM st.a -> 'extensions' ->> k.name
    UNION ALL
    -- (compared where both ends fingerprinted the functions: settings kept before they did have none)
    SELECT 'function_changed', fa.name, 'md5 ' || left(fb.md5, 8), 'md5 ' || left(fa.md5, 8),
           format('its definition was replaced: the statements that call it%s run the new one',
                  ', and the writes to ' || tf.table_name || ' its trigger fires for,'),
           tf.relid, true
    FROM fa JOIN fb ON fb.name = fa.name
    LEFT JOIN LATERAL (SELECT pair.relid, pair.name AS table_name FROM pair, jsonb_array_elements(pair.a -> 'triggers') t
                       WHERE jsonb_typeof(pair.a -> 'triggers') = 'array'
                         AND strpos(t ->> 'definition', 'EXECUTE FUNCTION ' || split_part(fa.name, '(', 1) || '(') > 0
                       ORDER BY pair.name LIMIT 1) tf ON true
    WHERE fa.md5 <> fb.md5;
END
$$;

-- _function_call_pattern is the regular expression (for ~*) of a call of the function a
-- signature (regprocedure's text, 'public.apply_payment(integer)') names, by its name with its
-- own schema or none: 'SELECT public.apply_payment($1)', 'CALL apply_payment(1)'; not
-- another schema's function of that name ('billing.apply_payment('), nor a table's name
-- followed by its columns ('INSERT INTO apply_payment (id)', 'WITH apply_payment (a) AS').
CREATE OR REPLACE FUNCTION telemetry._function_call_pattern(p_signature text)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT format('(^|[^[:alnum:]_."])(?<!\m(into|with)\s{1,20})(?<!\m(into|with)\s{1,20}"?%s"?\.)("?%s"?\.)?"?%s"?\s*\(',
                  x.schema, x.schema, x.name)
    FROM (SELECT regexp_replace(replace(coalesce(substring(f FROM '^(.*)\.[^.]*$'), ''), '"', ''), '([^[:alnum:]_])', '\\\1', 'g') AS schema,
                 regexp_replace(replace(substring(f FROM '([^.]*)$'), '"', ''), '([^[:alnum:]_])', '\\\1', 'g') AS name
          FROM (SELECT split_part(p_signature, '(', 1) AS f) s) x
$$;

-- _run_changed_settings says which server settings of a category (pg_settings', a pattern)
-- changed since a run's baseline: " Changed since the baseline: max_wal_size 4096MB -> 32MB."
-- ('' for none), for the causes whose mechanism they set (the WAL's, commits').
CREATE OR REPLACE FUNCTION telemetry._run_changed_settings(p_run_id bigint, p_category text)
RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce((SELECT format(' Changed since the baseline: %s.',
                                   string_agg(format('%s %s -> %s', c.object, coalesce(c.old, 'default'), coalesce(c.new, 'default')), ', ' ORDER BY c.object))
                     FROM telemetry._run_changes(p_run_id) c
                     WHERE c.kind = 'setting_changed' AND c.affects
                       AND EXISTS (SELECT FROM pg_settings g WHERE g.name = c.object AND g.category ~ p_category)
                     HAVING count(*) > 0), '')
$$;

-- _run_change_links are the statements of a run that each change able to slow the batch
-- (affects) may have slowed: for a relation's change, those its own sessions ran while holding
-- a lock on the relation (batch_relations), and those whose relations the sampler never saw;
-- for a function, those that call it by name and those that wrote the table whose trigger
-- runs it; for a setting, a restart or an upgrade, every one. The run's statements are those its own
-- sessions were sampled running (batch_wait_samples, stored up to a minute after its end).
CREATE OR REPLACE FUNCTION telemetry._run_change_links(p_run_id bigint)
RETURNS TABLE (kind text, object text, queryid bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH w AS (SELECT w.*, telemetry._resolve_server(w.server) AS srv FROM telemetry._run_window(p_run_id) w),
    c AS (SELECT * FROM telemetry._run_changes(p_run_id) WHERE affects),
    st AS (SELECT DISTINCT b.queryid FROM w, telemetry.batch_wait_samples b
           WHERE EXISTS (SELECT FROM c) AND b.server = w.srv AND b.batch = w.batch AND b.own AND b.queryid <> 0
             AND b.captured_at BETWEEN w.start_time AND w.end_time + interval '1 minute'),
    touched AS (SELECT DISTINCT b.relid, b.queryid FROM w, telemetry.batch_relations b
                WHERE EXISTS (SELECT FROM c) AND b.server = w.srv AND b.batch = w.batch AND b.queryid <> 0
                  AND b.captured_at BETWEEN w.start_time AND w.end_time + interval '1 minute')
    SELECT c.kind, c.object, st.queryid FROM c CROSS JOIN st
    WHERE CASE WHEN c.kind = 'function_changed'
               THEN EXISTS (SELECT FROM w, telemetry.statement_texts tx WHERE tx.server = w.srv AND tx.queryid = st.queryid
                                                                            AND tx.query ~* telemetry._function_call_pattern(c.object))
                    OR EXISTS (SELECT FROM touched t WHERE t.queryid = st.queryid AND t.relid = c.relid)
               ELSE c.relid IS NULL OR NOT EXISTS (SELECT FROM touched t WHERE t.queryid = st.queryid)
                    OR EXISTS (SELECT FROM touched t WHERE t.queryid = st.queryid AND t.relid = c.relid) END;
END
$$;
