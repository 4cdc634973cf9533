-- what_changed: something changed since the baseline runs (telemetry._run_changes: an index,
-- a trigger or a foreign key of a table the batch touches, its statistics, a rewrite or growth,
-- autovacuum turned off for it, a setting, a restart, an upgrade) and the statements it can slow (_run_change_links) were slower: each change is a
-- finding of its own (named by its kind), its statements its children. A statement more than
-- one change may have slowed splits its extra seconds between them.
CREATE OR REPLACE FUNCTION telemetry._finding_what_changed(p_run_id bigint, p_account jsonb)
RETURNS TABLE (finding text, severity text, summary text, evidence jsonb, recommendation text, explained_seconds numeric, children jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH c AS (SELECT * FROM telemetry._run_changes(p_run_id) WHERE affects),
    stmts AS (SELECT r.queryid, min(r.query) AS query, sum(r.extra_seconds) AS extra, bool_or(r.shared) AS shared,
                     (array_agg(r.statistics))[1] AS statistics
              FROM telemetry._account_rows(p_account, 'what_changed') r
              WHERE EXISTS (SELECT FROM c) GROUP BY r.queryid HAVING sum(r.extra_seconds) > 0),
    shares AS (SELECT l.kind, l.object, s.*, s.extra / count(*) OVER (PARTITION BY s.queryid) AS part
               FROM telemetry._run_change_links(p_run_id) l JOIN stmts s ON s.queryid = l.queryid),
    per AS (SELECT sh.kind, sh.object, sum(sh.part) AS seconds,
                   jsonb_agg(jsonb_build_object('queryid', sh.queryid, 'query', sh.query, 'extra_seconds', round(sh.part, 3),
                                                'shared', sh.shared, 'statistics', sh.statistics) ORDER BY sh.part DESC) AS children
            FROM shares sh GROUP BY 1, 2),
    x AS (SELECT (p_account->>'extra_seconds')::numeric AS extra),
    -- Changes of one kind to one table (three indexes created on it at once) split its
    -- statements' seconds: graded by what they explain together, and said so.
    g AS (SELECT c.*, p.seconds, p.children, count(*) OVER w AS together, sum(p.seconds) OVER w AS together_seconds
          FROM c JOIN per p ON p.kind = c.kind AND p.object = c.object
          WINDOW w AS (PARTITION BY c.kind, c.relid, CASE WHEN c.relid IS NULL THEN c.object END))
    SELECT c.kind,
           CASE WHEN NOT (p_account->>'slow')::boolean THEN 'info'
                WHEN 100 * c.together_seconds / x.extra >= 50 THEN 'critical'
                WHEN 100 * c.together_seconds / x.extra >= telemetry._threshold('cause_min_share_pct') THEN 'warning'
                ELSE 'info' END,
           format('%s since the baseline: %s%s: %s s of the run''s extra %s s (%s%%)%s. %s.%s%s',
                  initcap(replace(c.kind, '_', ' ')), c.object,
                  CASE WHEN c.old IS NULL AND c.new IS NULL THEN '' ELSE format(' (%s -> %s)', coalesce(c.old, 'none'), coalesce(c.new, 'none')) END,
                  round(c.seconds, 1), round(x.extra, 1), round(100 * c.seconds / x.extra),
                  CASE WHEN c.together > 1 THEN format('; with the %s other change(s) of its kind on the table, %s s (%s%%)',
                                                       c.together - 1, round(c.together_seconds, 1), round(100 * c.together_seconds / x.extra)) ELSE '' END,
                  initcap(left(c.detail, 1)) || substr(c.detail, 2),
                  -- A table bloated: its statement reads more blocks for the same rows (not where
                  -- its data grew: an aggregate's one row a call reads every row).
                  CASE WHEN c.kind = 'autovacuum_disabled' OR c.kind = 'table_grew' AND c.detail LIKE '%(bloat)%' THEN
                      (SELECT format(' "%s" read %s blocks per call instead of %s, for the same rows (%s a call).',
                                     telemetry._statement_label(ch ->> 'query', (ch ->> 'queryid')::bigint),
                                     round((ch -> 'statistics' ->> 'blocks_per_call')::numeric), round((ch -> 'statistics' ->> 'baseline_blocks_per_call')::numeric),
                                     trim_scale(round(r.rpc, 1)))
                       FROM jsonb_array_elements(c.children) WITH ORDINALITY x (ch, n),
                            LATERAL (SELECT (ch -> 'statistics' ->> 'rows')::numeric / nullif((ch -> 'statistics' ->> 'calls')::numeric, 0) AS rpc,
                                            (ch -> 'statistics' ->> 'baseline_rows')::numeric / nullif((ch -> 'statistics' ->> 'baseline_calls')::numeric, 0) AS b_rpc) r
                       WHERE x.n = 1 AND r.rpc BETWEEN 0.9 * r.b_rpc AND 1.1 * r.b_rpc
                         AND (ch -> 'statistics' ->> 'blocks_per_call')::numeric >= 1.5 * (ch -> 'statistics' ->> 'baseline_blocks_per_call')::numeric) END,
                  coalesce(' Statements: ' || telemetry._children_text(c.children) || '.', '')),
           jsonb_build_object('kind', c.kind, 'object', c.object, 'old', c.old, 'new', c.new, 'detail', c.detail),
           CASE c.kind
             WHEN 'index_dropped' THEN 'Recreate the index (CREATE INDEX CONCURRENTLY, its definition above) if the batch needs it.'
             WHEN 'index_invalid' THEN 'Rebuild it: REINDEX INDEX CONCURRENTLY, or drop it and create it again.'
             WHEN 'index_created' THEN 'Where the batch writes the table, each row it inserts (or whose indexed columns it updates) updates the index too: for a bulk load, create the index after it (or drop it before and create it again after); drop it if nothing reads through it (pg_stat_user_indexes.idx_scan). Where it reads the table, compare the statements'' plans with EXPLAIN: the planner may prefer the new index where the old plan was better.'
             WHEN 'statistics_stale' THEN 'ANALYZE the table after bulk changes (in the batch, after its load), or let autovacuum analyze it (autovacuum_enabled, autovacuum_analyze_scale_factor).'
             WHEN 'table_rewritten' THEN 'ANALYZE the table after a rewrite, and find who rewrote it (VACUUM FULL, CLUSTER, ALTER TABLE) in the batch''s window.'
             WHEN 'autovacuum_disabled' THEN 'Turn autovacuum back on for the table (ALTER TABLE ... RESET (autovacuum_enabled)), VACUUM (ANALYZE) it now, and VACUUM FULL or pg_repack it to give back the space its dead rows took (its scans read it all until then); where autovacuum was turned off for a bulk job, vacuum the table after it.'
             WHEN 'table_grew' THEN 'Check the batch''s input, the table''s bloat (VACUUM) and whether its plans still fit its size.'
             WHEN 'setting_changed' THEN 'Set it back to the baseline''s value (ALTER SYSTEM, postgresql.conf, then pg_reload_conf()) if the change was not meant.'
             WHEN 'role_setting_changed' THEN 'ALTER ROLE/DATABASE ... RESET it, or set it back to the baseline''s value (pg_db_role_setting).'
             WHEN 'trigger_created' THEN 'Check what the trigger does for each row the batch writes (its function), and whether the batch needs it: a statement-level trigger with transition tables (REFERENCING NEW TABLE) does it once a statement; ALTER TABLE ... DISABLE TRIGGER for a load it need not fire for.'
             WHEN 'trigger_enabled' THEN 'Check whether the trigger was meant to fire for the batch (ALTER TABLE ... DISABLE TRIGGER disabled it before), and what its function does for each row.'
             WHEN 'trigger_changed' THEN 'Compare the trigger''s definition with the baseline''s (its events, its function), and what its function does for each row.'
             WHEN 'foreign_key_added' THEN 'Index the referencing columns where the batch deletes or updates referenced rows; for a bulk load, add the key after it (ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT: one check of every row, not one a row).'
             WHEN 'foreign_key_changed' THEN 'Compare the foreign key''s definition with the baseline''s (its columns, ON DELETE and ON UPDATE actions), and index its referencing columns.'
             WHEN 'function_changed' THEN 'Compare the function''s body with the one deployed before (pg_get_functiondef; the version in your migrations or source control): the statements under it run it. pg_stat_statements.track = all shows its statements one by one.'
             WHEN 'server_restarted' THEN 'Shared buffers start cold after a restart: pg_prewarm (autoprewarm) fills them again from what they held.'
             ELSE 'After an upgrade, ANALYZE the database (vacuumdb --analyze-in-stages) and compare the statements'' plans.' END,
           c.seconds, c.children
    FROM g c, x
    WHERE x.extra > 0 AND c.seconds >= telemetry._threshold('cause_min_seconds')
$$;

-- run_changes: what changed since a run's baseline (_run_changes), each change with the seconds
-- of the run's extra time it explains, their severity and the statements it slowed
-- (what_changed's finding); info, none and [] where it slowed nothing.
CREATE OR REPLACE FUNCTION telemetry.run_changes(p_run_id bigint)
RETURNS TABLE (kind text, object text, old text, new text, detail text, affects boolean, severity text,
               explained_seconds numeric, statements jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH f AS (SELECT * FROM telemetry._finding_what_changed(p_run_id,
                   telemetry._run_causes(p_run_id, (SELECT jsonb_agg(to_jsonb(s)) FROM telemetry._run_statements(p_run_id) s))))
    SELECT c.kind, c.object, c.old, c.new, c.detail, c.affects, coalesce(f.severity, 'info'), f.explained_seconds, coalesce(f.children, '[]')
    FROM telemetry._run_changes(p_run_id) c LEFT JOIN f ON f.finding = c.kind AND f.evidence->>'object' = c.object
    ORDER BY f.explained_seconds DESC NULLS LAST, c.kind, c.object
$$;
