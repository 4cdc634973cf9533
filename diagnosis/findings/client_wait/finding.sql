-- client_wait: time of the run the database did not spend on the batch's statements: its own
-- sessions waiting for the client (Client:ClientRead, ClientWrite), idle between statements
-- or in a transaction, or no own session active at all (the application working, or not
-- connected), beyond the baseline runs'.
-- Where most of it followed the batch's BEGINs and COMMITs and its COMMIT ran many more times
-- than usual (pg_stat_statements, the entry the batch's own), the batch committed in many
-- more, smaller transactions (row by row): the time went to their round trips, and it says so.
CREATE OR REPLACE FUNCTION telemetry._finding_client_wait(p_run_id bigint, p_account jsonb)
RETURNS TABLE (finding text, severity text, summary text, evidence jsonb, recommendation text, explained_seconds numeric, children jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH cw AS (SELECT * FROM telemetry._account_rows(p_account, 'client_wait')),
    parts AS (SELECT r.bucket AS part, sum(r.seconds) AS seconds, sum(r.extra_seconds) AS extra FROM cw r GROUP BY 1),
    -- the run's statements' counts, whichever cause their time is
    counted AS (SELECT DISTINCT ON (r.queryid) r.queryid, r.query, (r.statistics->>'calls')::numeric AS calls,
                       round((r.statistics->>'baseline_calls')::numeric) AS baseline_calls,
                       CASE WHEN r.query ~* '^\s*(commit|end)\M' THEN 'commit'
                            WHEN r.query ~* '^\s*(begin|start\s+transaction)\M' THEN 'begin' END AS txn
                FROM jsonb_to_recordset(p_account->'rows') AS r (queryid bigint, query text, statistics jsonb)
                WHERE r.statistics IS NOT NULL AND r.queryid <> 0),
    -- COMMIT ran many more times, and more often for each call of the batch's most called
    -- statement: smaller transactions, not more of its usual ones (a grown input committed row
    -- by row as always; other sessions' commits in its entry are diluted by that statement's).
    commits AS (SELECT c.* FROM counted c
                LEFT JOIN LATERAL (SELECT w.calls, w.baseline_calls FROM counted w WHERE w.txn IS NULL ORDER BY w.calls DESC LIMIT 1) w ON true
                WHERE c.txn = 'commit'
                  AND c.calls >= telemetry._threshold('statement_more_work_ratio') * greatest(c.baseline_calls, 1)
                  AND c.calls / nullif(w.calls, 0) >= telemetry._threshold('statement_more_work_ratio') * greatest(c.baseline_calls, 1) / nullif(w.baseline_calls, 0)
                ORDER BY c.calls DESC LIMIT 1),
    per_txn AS (
        SELECT format('"%s" ran %s times (baseline %s)%s%s: the batch committed in many more, smaller transactions than usual, each one''s BEGIN and COMMIT a round trip between the application and the server (and a WAL flush at each commit), the server waiting for the client between them. ',
                      telemetry._statement_label(cm.query, cm.queryid), cm.calls, cm.baseline_calls,
                      (SELECT format(', "%s" %s (baseline %s)', telemetry._statement_label(b.query, b.queryid), b.calls, b.baseline_calls)
                       FROM counted b WHERE b.txn = 'begin' ORDER BY b.calls DESC LIMIT 1),
                      (SELECT format(', "%s" %s (baseline %s)', telemetry._statement_label(w.query, w.queryid), w.calls, w.baseline_calls)
                       FROM counted w WHERE w.txn IS NULL ORDER BY w.calls DESC LIMIT 1)) AS story
        FROM commits cm
        -- most of the time waiting for the client followed a BEGIN or COMMIT
        WHERE (SELECT sum(r.extra_seconds) FROM cw r WHERE r.query ~* '^\s*(commit|end|begin|start\s+transaction)\M')
              >= 0.5 * (SELECT sum(r.extra_seconds) FROM cw r))
    SELECT f.* FROM telemetry._cause_finding(p_account, 'client_wait',
        CASE WHEN EXISTS (SELECT FROM per_txn) THEN 'The batch committed far more often than usual, and the time went to its transactions'' round trips, not to its statements'' work'
             ELSE 'The time went to the application or the network, not to the database' END,
        (SELECT coalesce((SELECT story FROM per_txn), '') || 'Mostly ' || string_agg(format('%s (+%s s)', p.part, round(p.extra, 1)), ', ' ORDER BY p.extra DESC) || '.'
         FROM (SELECT * FROM parts WHERE extra > 0 ORDER BY extra DESC LIMIT 3) p),
        jsonb_build_object('parts', (SELECT jsonb_object_agg(p.part, round(p.seconds, 3)) FROM parts p))
        || coalesce((SELECT jsonb_build_object('commits', jsonb_build_object('queryid', c.queryid, 'calls', c.calls, 'baseline_calls', c.baseline_calls))
                     FROM commits c WHERE EXISTS (SELECT FROM per_txn)), '{}'),
        CASE WHEN EXISTS (SELECT FROM per_txn)
             THEN 'Commit in batches: one transaction per thousands of rows, not one per row (the application''s autocommit, or a transaction opened for each row in its loop); better still, load the rows with COPY or multi-row INSERTs. Each commit is a round trip and a WAL flush: with WAL on slow storage or a synchronous standby, many more.'
             ELSE 'Look at what feeds the batch: the application or ETL tool (its CPU, its own work between statements, a COPY FROM STDIN or row-by-row inserts it sends slowly), the network between; an idle transaction holds its locks and snapshot meanwhile. ClientRead is the server waiting for the next message, ClientWrite for the client to take the results.' END) f
$$;
