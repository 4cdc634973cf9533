-- lock_wait: the batch's own sessions waited on heavyweight locks (Lock:*, extend aside) longer
-- than in its baseline runs; named with who held them (telemetry._run_own_blockers).
CREATE OR REPLACE FUNCTION telemetry._finding_lock_wait(p_run_id bigint, p_account jsonb)
RETURNS TABLE (finding text, severity text, summary text, evidence jsonb, recommendation text, explained_seconds numeric, children jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH b AS (SELECT * FROM telemetry._run_own_blockers(p_run_id)),
    top AS (SELECT * FROM b LIMIT 1),
    -- The top holder's application, another's (named): all of its sessions and statements that
    -- held the batch up, as one holder (an OLTP application's pool takes turns on the rows).
    app AS (SELECT count(DISTINCT x.blocking_pid) AS sessions, string_agg(DISTINCT x.blocking_pid::text, ', ') AS pids,
                   sum(x.blocked_seconds) AS seconds, sum(x.waits) AS waits
            FROM top JOIN b x ON x.blocking_app = top.blocking_app AND x.blocking_user IS NOT DISTINCT FROM top.blocking_user
                             AND x.own_session IS NOT DISTINCT FROM top.own_session
            WHERE top.blocking_app <> '' AND NOT coalesce(top.own_session, false))
    SELECT f.* FROM telemetry._cause_finding(p_account, 'lock_wait', 'The batch''s own sessions waited on locks longer than usual',
        (SELECT format('"%s" waited mostly behind %s (application %s, role %s), %s: %s, %s s in %s wait(s).',
                       telemetry._statement_label(top.blocked_query_preview, NULL),
                       CASE WHEN app.sessions > 1 THEN format('%s sessions of one application, pids %s', app.sessions, app.pids)
                            ELSE CASE WHEN top.own_session THEN 'the batch''s own session, ' ELSE '' END || 'pid ' || top.blocking_pid END,
                       coalesce(nullif(top.blocking_app, ''), '?'), coalesce(top.blocking_user, '?'),
                       telemetry._lock_holder_doing(top.blocking_state, top.blocking_query_preview),
                       telemetry._lock_target(top.lock_type, top.locked_relation, top.locked_object),
                       coalesce(app.seconds, top.blocked_seconds), coalesce(app.waits, top.waits))
                || CASE WHEN top.own_session THEN ' Its sessions wait for each other.' ELSE '' END
         FROM top LEFT JOIN app ON true),
        jsonb_build_object('blockers', (SELECT jsonb_agg(to_jsonb(x)) FROM (SELECT * FROM b LIMIT 3) x)),
        CASE WHEN (SELECT own_session FROM top)
             THEN 'The batch''s own sessions block each other: they update the same rows or lock the same tables at once. Give each session its own share of the rows (by key range or partition), take the locks in one order, or run those steps one after another.'
             WHEN (SELECT blocking_state LIKE 'idle in transaction%' FROM top)
             THEN 'The holder sat idle in a transaction, keeping its locks between statements: have its application end its transactions as soon as their work is done, or set idle_in_transaction_session_timeout for its role; telemetry.lock_episodes(start, end) lists every wait with its holder.'
             WHEN (SELECT lock_type = 'advisory' FROM top)
             THEN 'Another job held the advisory lock the batch takes: a lock taken with pg_advisory_lock is kept until pg_advisory_unlock or the session''s end, not the transaction''s (pg_advisory_xact_lock''s, until its transaction''s). Schedule the two apart, or have the batch use pg_try_advisory_lock and say so when the lock is taken; telemetry.lock_episodes(start, end) lists every wait with its holder.'
             ELSE 'Move the blocking work (DDL, VACUUM FULL, REINDEX, a long transaction, a report holding the table) out of the batch''s window, or have it set a lock_timeout so that it gives way to the batch; telemetry.lock_episodes(start, end) lists every wait with its holder.' END) f
$$;
