-- lock_wait: the batch's own sessions waited on heavyweight locks (Lock:*, extend aside) longer
-- than in its baseline runs; named with who held them (telemetry._run_own_blockers).
CREATE OR REPLACE FUNCTION telemetry._finding_lock_wait(p_run_id bigint, p_account jsonb)
RETURNS TABLE (finding text, severity text, summary text, evidence jsonb, recommendation text, explained_seconds numeric, children jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH b AS (SELECT * FROM telemetry._run_own_blockers(p_run_id) LIMIT 3),
    top AS (SELECT * FROM b LIMIT 1)
    SELECT f.* FROM telemetry._cause_finding(p_account, 'lock_wait', 'The batch''s own sessions waited on locks longer than usual',
        (SELECT format('"%s" waited mostly behind %spid %s (application %s, role %s), running "%s": a %s lock on %s, %s s in %s wait(s).',
                       telemetry._statement_label(top.blocked_query_preview, NULL), CASE WHEN top.own_session THEN 'the batch''s own session, ' ELSE '' END, top.blocking_pid,
                       coalesce(nullif(top.blocking_app, ''), '?'), coalesce(top.blocking_user, '?'),
                       telemetry._statement_label(top.blocking_query_preview, NULL), coalesce(top.lock_type, '?'),
                       coalesce(top.locked_relation, 'an object'), top.blocked_seconds, top.waits)
                || CASE WHEN top.own_session THEN ' Its sessions wait for each other.' ELSE '' END
         FROM top),
        jsonb_build_object('blockers', (SELECT jsonb_agg(to_jsonb(b)) FROM b)),
        CASE WHEN (SELECT own_session FROM top)
             THEN 'The batch''s own sessions block each other: they update the same rows or lock the same tables at once. Give each session its own share of the rows (by key range or partition), take the locks in one order, or run those steps one after another.'
             ELSE 'Move the blocking work (DDL, VACUUM FULL, REINDEX, a long transaction, a report holding the table) out of the batch''s window, or have it set a lock_timeout so that it gives way to the batch; telemetry.lock_episodes(start, end) lists every wait with its holder.' END) f
$$;
