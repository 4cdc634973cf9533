-- lock_wait: the batch's own sessions waited on heavyweight locks (Lock:*, extend aside) longer
-- than in its baseline runs; named with who held them (telemetry._run_own_blockers), and, where
-- that holder was itself waiting on a lock meanwhile (a lock queue), the session at the queue's head;
-- where two sessions, one the batch's, waited each for the other (a deadlock), how often.
CREATE OR REPLACE FUNCTION telemetry._finding_lock_wait(p_run_id bigint, p_account jsonb)
RETURNS TABLE (finding text, severity text, summary text, evidence jsonb, recommendation text, explained_seconds numeric, children jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH RECURSIVE b AS (SELECT * FROM telemetry._run_own_blockers(p_run_id)),
    top AS (SELECT * FROM b LIMIT 1),
    -- The top holder's application, another's (named): all of its sessions and statements that
    -- held the batch up, as one holder (an OLTP application's pool takes turns on the rows).
    app AS (SELECT count(DISTINCT x.blocking_pid) AS sessions, string_agg(DISTINCT x.blocking_pid::text, ', ') AS pids,
                   sum(x.blocked_seconds) AS seconds, sum(x.waits) AS waits
            FROM top JOIN b x ON x.blocking_app = top.blocking_app AND x.blocking_user IS NOT DISTINCT FROM top.blocking_user
                             AND x.own_session IS NOT DISTINCT FROM top.own_session
            WHERE top.blocking_app <> '' AND NOT coalesce(top.own_session, false)),
    -- A lock queue: locks are granted in the order asked, so a statement queued for a strong
    -- lock (an ALTER TABLE behind a long report) holds up every later one on the table, though
    -- they do not conflict with the report; pg_blocking_pids names only the queued statement.
    -- The window's lock waits as spans: each followed to its end (an episode), else, for a pair
    -- of sessions with no episode (a wait still going on, or one the sampler did not follow:
    -- the batch's wait behind a queued ALTER once had none while the ALTER's had), its latest
    -- lock sample...
    w AS (SELECT x.*, telemetry._resolve_server(x.server) AS srv FROM telemetry._run_window(p_run_id) x),
    ep AS (SELECT e.blocked_pid, e.blocked_backend_start, e.blocking_pid, e.blocking_app, e.blocking_user, e.blocking_state,
                  e.blocking_query_preview, e.lock_type, e.locked_relation, e.locked_object, e.started_at, e.ended_at, e.last_seen_at
           FROM w, LATERAL telemetry.lock_episodes(w.start_time, w.end_time, w.server) e
           WHERE e.lock_type IS DISTINCT FROM 'extend'),
    waits AS (SELECT * FROM ep
              UNION ALL
              (SELECT DISTINCT ON (l.blocked_pid, l.blocking_pid)
                      l.blocked_pid, NULL::timestamptz, l.blocking_pid, l.blocking_app, l.blocking_user, l.blocking_state, l.blocking_query_preview,
                      l.lock_type, l.locked_relation, l.locked_object, l.captured_at - l.blocked_duration, l.captured_at, l.captured_at
               FROM w, telemetry.lock_samples l
               WHERE l.server = w.srv AND l.captured_at BETWEEN w.start_time AND w.end_time
                 AND l.lock_type IS DISTINCT FROM 'extend' AND l.blocked_duration IS NOT NULL
                 AND NOT EXISTS (SELECT FROM ep WHERE ep.blocked_pid = l.blocked_pid AND ep.blocking_pid = l.blocking_pid)
               ORDER BY l.blocked_pid, l.blocking_pid, l.captured_at DESC)),
    own AS (SELECT DISTINCT s.pid, s.backend_start FROM w, telemetry.batch_wait_samples s
            WHERE s.server = w.srv AND s.batch = w.batch AND s.own AND s.captured_at BETWEEN w.start_time AND w.end_time),
    -- Deadlocks: two sessions, one of them the batch's, each waiting for the other at one
    -- instant (each wait went on from its start, pg_locks.waitstart, to its last sighting: the
    -- two spans overlap), a cycle PostgreSQL breaks after deadlock_timeout by cancelling one of
    -- the two transactions (SQLSTATE 40P01). pg_stat_database.deadlocks is not recorded per
    -- snapshot; a cycle broken before a lock sample saw both waits is missed.
    dl AS (SELECT x.blocked_pid AS pid_a, y.blocked_pid AS pid_b, least(x.started_at, y.started_at) AS started_at,
                  x.lock_type, x.locked_relation, x.locked_object,
                  EXISTS (SELECT FROM own WHERE own.pid = x.blocked_pid AND (x.blocked_backend_start IS NULL OR own.backend_start IS NOT DISTINCT FROM x.blocked_backend_start))
                  AND EXISTS (SELECT FROM own WHERE own.pid = y.blocked_pid AND (y.blocked_backend_start IS NULL OR own.backend_start IS NOT DISTINCT FROM y.blocked_backend_start)) AS both_own
           FROM waits x JOIN waits y ON y.blocked_pid = x.blocking_pid AND y.blocking_pid = x.blocked_pid
           WHERE EXISTS (SELECT FROM top)  -- (the window's waits read only where the batch waited behind someone)
             AND x.blocked_pid < y.blocked_pid AND x.started_at <= y.last_seen_at AND y.started_at <= x.last_seen_at
             AND EXISTS (SELECT FROM own WHERE (own.pid = x.blocked_pid AND (x.blocked_backend_start IS NULL OR own.backend_start IS NOT DISTINCT FROM x.blocked_backend_start))
                                            OR (own.pid = y.blocked_pid AND (y.blocked_backend_start IS NULL OR own.backend_start IS NOT DISTINCT FROM y.blocked_backend_start)))),
    deadlocks AS (SELECT count(*) AS n, bool_and(both_own) AS own, string_agg(DISTINCT format('%s and %s', pid_a, pid_b), '; ') AS pairs,
                         (array_agg(telemetry._lock_target(lock_type, locked_relation, NULL) ORDER BY started_at))[1] AS target
                  FROM dl HAVING count(*) > 0),
    -- ...the batch's waits behind the top holder...
    bw AS (SELECT x.started_at, x.ended_at FROM waits x, top
           WHERE x.blocking_pid = top.blocking_pid
             AND EXISTS (SELECT FROM own WHERE own.pid = x.blocked_pid
                         AND (x.blocked_backend_start IS NULL OR own.backend_start IS NOT DISTINCT FROM x.blocked_backend_start))),
    -- ...and, hop by hop, whom the holder waited behind during them: its wait that overlapped
    -- them most, where it covered at least half of them (a holder that waited a moment
    -- meanwhile, behind the batch itself say, did not make the batch wait). The last hop's
    -- holder is the queue's head.
    chain AS (
        SELECT 0 AS hop, ARRAY[top.blocking_pid] AS pids, top.blocking_pid, NULL::text AS blocking_app, NULL::text AS blocking_user,
               NULL::text AS blocking_state, NULL::text AS blocking_query_preview, NULL::text AS lock_type, NULL::text AS locked_relation,
               NULL::text AS locked_object, NULL::numeric AS waited_seconds
        FROM top
        UNION ALL
        SELECT c.hop + 1, c.pids || x.blocking_pid, x.blocking_pid, x.blocking_app, x.blocking_user, x.blocking_state, x.blocking_query_preview,
               x.lock_type, x.locked_relation, x.locked_object, round(extract(epoch FROM x.covered)::numeric, 1)
        FROM chain c, LATERAL (
            SELECT y.*, (SELECT sum(greatest(least(y.ended_at, v.ended_at) - greatest(y.started_at, v.started_at), interval '0')) FROM bw v) AS covered
            FROM waits y WHERE y.blocked_pid = c.blocking_pid AND y.blocking_pid <> ALL (c.pids)
            ORDER BY covered DESC NULLS LAST, y.started_at LIMIT 1) x
        WHERE c.hop < 8 AND x.covered >= (SELECT sum(v.ended_at - v.started_at) / 2 FROM bw v) AND x.covered > interval '0'),
    head AS (SELECT * FROM chain WHERE hop > 0 ORDER BY hop DESC LIMIT 1),
    queued AS (  -- the top holder's own wait, and the queue's head
        SELECT top.blocking_pid AS pid, h1.waited_seconds, h1.lock_type, h1.locked_relation, h1.locked_object,
               -- a table's lock queue: both waits for locks on the one table (else a chain of
               -- waits: the holder waited on a row another session held, say)
               coalesce(top.lock_type = 'relation' AND h1.lock_type = 'relation' AND h1.locked_relation = top.locked_relation, false) AS table_queue,
               head.blocking_pid AS head_pid, head.blocking_app AS head_app, head.blocking_user AS head_user,
               head.blocking_state AS head_state, head.blocking_query_preview AS head_query,
               (SELECT string_agg(c.blocking_pid::text, ', ' ORDER BY c.hop) FROM chain c WHERE c.hop BETWEEN 1 AND head.hop - 1) AS between_pids
        FROM top, chain h1, head WHERE h1.hop = 1)
    SELECT f.* FROM telemetry._cause_finding(p_account, 'lock_wait', 'The batch''s own sessions waited on locks longer than usual',
        (SELECT format('"%s" waited mostly behind %s (%s), %s: %s, %s s in %s wait(s).',
                       telemetry._statement_label(top.blocked_query_preview, NULL),
                       CASE WHEN app.sessions > 1 THEN format('%s sessions of one application, pids %s', app.sessions, app.pids)
                            ELSE CASE WHEN top.own_session THEN 'the batch''s own session, ' ELSE '' END || telemetry._lock_holder(top.blocking_pid) END,
                       CASE WHEN coalesce(top.blocking_app, '') = '' AND top.blocking_query_preview LIKE 'autovacuum:%' THEN 'an autovacuum worker'
                            WHEN top.blocking_state = 'prepared transaction' THEN format('owner %s, no session', coalesce(top.blocking_user, '?'))
                            ELSE format('application %s, role %s', coalesce(nullif(top.blocking_app, ''), '?'), coalesce(top.blocking_user, '?')) END,
                       telemetry._lock_holder_doing(top.blocking_state, top.blocking_query_preview),
                       telemetry._lock_target(top.lock_type, top.locked_relation, top.locked_object),
                       coalesce(app.seconds, top.blocked_seconds), coalesce(app.waits, top.waits))
                || CASE WHEN top.own_session THEN ' Its sessions wait for each other.' ELSE '' END
                || coalesce((SELECT format(' %s deadlocked %s time(s): pids %s each waited for the other (the first time for %s) until PostgreSQL cancelled one of the two transactions after deadlock_timeout (1 s by default) with SQLSTATE 40P01 ("deadlock detected" in the server log); its work was lost, or done again where the application retried it.',
                                           CASE WHEN d.own THEN 'Its sessions' ELSE 'The batch''s sessions and another''s' END, d.n, d.pairs, d.target)
                             FROM deadlocks d), '')
                || coalesce((SELECT format(' Pid %s was itself waiting meanwhile (%s s) for %s, %s %spid %s (application %s, role %s), %s: %s.',
                                           q.pid, q.waited_seconds, telemetry._lock_target(q.lock_type, q.locked_relation, q.locked_object),
                                           CASE WHEN q.table_queue THEN 'queued behind' ELSE 'waiting behind' END,
                                           CASE WHEN q.between_pids IS NOT NULL THEN format('pid(s) %s, themselves waiting behind ', q.between_pids) ELSE '' END,
                                           q.head_pid, coalesce(nullif(q.head_app, ''), '?'), coalesce(q.head_user, '?'),
                                           telemetry._lock_holder_doing(q.head_state, q.head_query),
                                           CASE WHEN q.table_queue THEN 'the head of the lock queue the batch waited in' ELSE 'the end of the chain of waits the batch waited in' END)
                             FROM queued q), '')
         FROM top LEFT JOIN app ON true),
        jsonb_build_object('blockers', (SELECT jsonb_agg(to_jsonb(x)) FROM (SELECT * FROM b LIMIT 3) x),
                           'queue', (SELECT jsonb_agg(to_jsonb(c) - 'pids' ORDER BY c.hop) FROM chain c WHERE c.hop > 0),
                           'deadlocks', (SELECT jsonb_agg(to_jsonb(x) ORDER BY x.started_at) FROM dl x)),
        CASE WHEN EXISTS (SELECT FROM deadlocks)
             THEN 'The sessions deadlocked: two transactions took the same rows (or locks) in opposite orders, each then waiting for one the other held, until PostgreSQL cancelled one of them. Have every transaction take its rows in one order, by key: lock them first with SELECT ... ORDER BY id FOR UPDATE (UPDATE and DELETE take no ORDER BY), or update them in key order; or give each worker its own key range (or partition) so that no two touch the same rows. Meanwhile keep retrying a transaction cancelled with SQLSTATE 40P01; pg_stat_database.deadlocks counts the deadlocks, the server log details each one.'
             WHEN (SELECT own_session FROM top)
             THEN 'The batch''s own sessions block each other: they update the same rows or lock the same tables at once. Give each session its own share of the rows (by key range or partition), take the locks in one order, or run those steps one after another.'
             -- (PostgreSQL cancels an ordinary autovacuum that a lock request waits behind, after
             -- deadlock_timeout; not one to prevent wraparound)
             WHEN (SELECT blocking_query_preview LIKE 'autovacuum: %(to prevent wraparound)' FROM top)
             THEN (SELECT format('The holder was autovacuum preventing transaction ID wraparound ("%s"): unlike an ordinary autovacuum, which PostgreSQL cancels when a lock request waits behind it, it does not give way, so the batch waited until it ended. Freeze the table before the batch''s window, scheduled where its age(relfrozenxid) nears autovacuum_freeze_max_age (VACUUM (FREEZE) %s), so that no vacuum to prevent wraparound starts during the batch; a batch that empties the table with DELETE instead of TRUNCATE takes a lock VACUUM does not conflict with, but leaves dead rows to vacuum; telemetry.lock_episodes(start, end) lists every wait with its holder.',
                                 top.blocking_query_preview, coalesce(CASE WHEN top.lock_type = 'relation' THEN top.locked_relation END,
                                                                    substring(top.blocking_query_preview FROM '^autovacuum: VACUUM (?:ANALYZE )?(\S+)'), 'the table'))
                   FROM top)
             WHEN (SELECT blocking_app ~ '^pg_dump(all)?$' FROM top)
             THEN 'The holder was a backup (pg_dump): it takes an ACCESS SHARE lock on every table it dumps when it starts and keeps them all until it ends, so a statement needing a stronger lock on any of them (TRUNCATE, ALTER TABLE and other DDL, VACUUM FULL, REINDEX, LOCK TABLE) waits for the whole dump, whichever table it is copying. Schedule the backup to end before the batch''s window (or dump from a standby); a batch that empties a table with DELETE instead of TRUNCATE takes a lock the dump does not conflict with; telemetry.lock_episodes(start, end) lists every wait with its holder.'
             WHEN (SELECT lock_type = 'virtualxid' FROM top)
             THEN 'The batch''s statement waited for a transaction older than it to end: CREATE INDEX CONCURRENTLY, REINDEX CONCURRENTLY and ALTER TABLE ... DETACH PARTITION CONCURRENTLY wait, at each of their phases, for every transaction that began before the phase, whatever tables it uses, so a long report or a session idle in its transaction on any table of the database holds them up. Keep long transactions out of the batch''s window (statement_timeout or idle_in_transaction_session_timeout for their roles); where the table is the batch''s own and no one else writes it meanwhile, a plain CREATE INDEX (its SHARE lock blocks only the table''s writers) does not wait for other tables'' transactions; telemetry.lock_episodes(start, end) lists every wait with its holder.'
             WHEN (SELECT blocking_state = 'prepared transaction' FROM top)
             THEN (SELECT format('The holder was a prepared transaction (two-phase commit, gid %L) that its transaction manager had not finished: it keeps its locks, across restarts too, and holds back vacuum, until COMMIT PREPARED or ROLLBACK PREPARED. Finish it as the manager would (connected to its database as its owner or a superuser: COMMIT PREPARED %L, or ROLLBACK PREPARED %L), then find why the manager left it; pg_prepared_xacts lists them with when they were prepared.',
                                 top.blocking_query_preview, top.blocking_query_preview, top.blocking_query_preview) FROM top)
             WHEN EXISTS (SELECT FROM queued WHERE table_queue)
             THEN (SELECT format('The holder was itself queued for a lock: PostgreSQL grants a table''s locks in the order they are asked for, so a statement waiting for a strong lock (ALTER TABLE and most DDL, VACUUM FULL, REINDEX, LOCK TABLE) makes every later statement on that table queue behind it, even those that do not conflict with the lock''s holder (here pid %s, application %s). Have DDL and maintenance set a short lock_timeout (SET lock_timeout = ''2s'', retried later) so that it gives way instead of holding up the queue, and keep long reports and transactions on the batch''s tables out of its window; telemetry.lock_episodes(start, end) lists every wait with its holder.',
                                 q.head_pid, coalesce(nullif(q.head_app, ''), '?')) FROM queued q)
             WHEN (SELECT head_state LIKE 'idle in transaction%' FROM queued)
             THEN (SELECT format('The holder was itself waiting behind pid %s (application %s), which sat idle in a transaction keeping its locks between statements: have that application end its transactions as soon as their work is done, or set idle_in_transaction_session_timeout for its role; telemetry.lock_episodes(start, end) lists every wait with its holder.',
                                 q.head_pid, coalesce(nullif(q.head_app, ''), '?')) FROM queued q)
             WHEN (SELECT blocking_state LIKE 'idle in transaction%' FROM top)
             THEN 'The holder sat idle in a transaction, keeping its locks between statements: have its application end its transactions as soon as their work is done, or set idle_in_transaction_session_timeout for its role; telemetry.lock_episodes(start, end) lists every wait with its holder.'
             WHEN (SELECT lock_type = 'advisory' FROM top)
             THEN 'Another job held the advisory lock the batch takes: a lock taken with pg_advisory_lock is kept until pg_advisory_unlock or the session''s end, not the transaction''s (pg_advisory_xact_lock''s, until its transaction''s). Schedule the two apart, or have the batch use pg_try_advisory_lock and say so when the lock is taken; telemetry.lock_episodes(start, end) lists every wait with its holder.'
             ELSE 'Move the blocking work (DDL, VACUUM FULL, REINDEX, a long transaction, a report holding the table) out of the batch''s window, or have it set a lock_timeout so that it gives way to the batch; telemetry.lock_episodes(start, end) lists every wait with its holder.' END) f
$$;
