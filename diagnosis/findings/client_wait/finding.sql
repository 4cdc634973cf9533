-- client_wait: time of the run the database did not spend on the batch's statements: its own
-- sessions waiting for the client (Client:ClientRead, ClientWrite), idle between statements
-- or in a transaction, or no own session active at all (the application working, or not
-- connected), beyond the baseline runs'.
-- Where most of it followed the batch's BEGINs and COMMITs, or was their own work, and its
-- COMMIT ran many more times than usual (_run_commits_rose), the batch committed in many more,
-- smaller transactions (row by row): the time went to their round trips and their own work
-- (_run_causes gives it to client_wait), and it says so.
CREATE OR REPLACE FUNCTION telemetry._finding_client_wait(p_run_id bigint, p_account jsonb)
RETURNS TABLE (finding text, severity text, summary text, evidence jsonb, recommendation text, explained_seconds numeric, children jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH cw AS (SELECT * FROM telemetry._account_rows(p_account, 'client_wait')),
    -- the server's own work of the transactions (_run_causes: CPU and other waits where the
    -- batch committed far more often) is named as such
    parts AS (SELECT CASE WHEN telemetry._account_cause(r.bucket) IS NULL THEN 'the transactions'' own work: ' || r.bucket ELSE r.bucket END AS part,
                     sum(r.seconds) AS seconds, sum(r.extra_seconds) AS extra
              FROM cw r GROUP BY 1),
    rose AS (SELECT * FROM jsonb_to_recordset(p_account->'commits_rose') AS c (kind text, queryid bigint, query text, calls numeric, baseline_calls numeric)),
    per_txn AS (
        SELECT format('"%s" ran %s times (baseline %s)%s%s: the batch committed in many more, smaller transactions than usual, each one''s BEGIN and COMMIT a round trip between the application and the server (and a WAL flush at each commit), the server waiting for the client between them. ',
                      telemetry._statement_label(cm.query, cm.queryid), cm.calls, cm.baseline_calls,
                      (SELECT format(', "%s" %s (baseline %s)', telemetry._statement_label(b.query, b.queryid), b.calls, b.baseline_calls)
                       FROM rose b WHERE b.kind = 'begin'),
                      (SELECT format(', "%s" %s (baseline %s)', telemetry._statement_label(w.query, w.queryid), w.calls, w.baseline_calls)
                       FROM rose w WHERE w.kind = 'statement')) AS story
        FROM rose cm
        -- most of its time followed a BEGIN or COMMIT, or was the transactions' own work
        WHERE cm.kind = 'commit'
          AND (SELECT sum(r.extra_seconds) FROM cw r
               WHERE r.query ~* '^\s*(commit|end|begin|start\s+transaction)\M' OR telemetry._account_cause(r.bucket) IS NULL)
              >= 0.5 * (SELECT sum(r.extra_seconds) FROM cw r))
    SELECT f.* FROM telemetry._cause_finding(p_account, 'client_wait',
        CASE WHEN EXISTS (SELECT FROM per_txn) THEN 'The batch committed far more often than usual, and the time went to its transactions'' round trips and their own work, not to its statements'''
             ELSE 'The time went to the application or the network, not to the database' END,
        (SELECT coalesce((SELECT story FROM per_txn), '') || 'Mostly ' || string_agg(format('%s (+%s s)', p.part, round(p.extra, 1)), ', ' ORDER BY p.extra DESC) || '.'
         FROM (SELECT * FROM parts WHERE extra > 0 ORDER BY extra DESC LIMIT 3) p),
        jsonb_build_object('parts', (SELECT jsonb_object_agg(p.part, round(p.seconds, 3)) FROM parts p))
        || coalesce((SELECT jsonb_build_object('commits', jsonb_build_object('queryid', c.queryid, 'calls', c.calls, 'baseline_calls', c.baseline_calls))
                     FROM rose c WHERE c.kind = 'commit' AND EXISTS (SELECT FROM per_txn)), '{}'),
        CASE WHEN EXISTS (SELECT FROM per_txn)
             THEN 'Commit in batches: one transaction per thousands of rows, not one per row (the application''s autocommit, or a transaction opened for each row in its loop); better still, load the rows with COPY or multi-row INSERTs. Each commit is a round trip and a WAL flush: with WAL on slow storage or a synchronous standby, many more.'
             ELSE 'Look at what feeds the batch: the application or ETL tool (its CPU, its own work between statements, a COPY FROM STDIN or row-by-row inserts it sends slowly), the network between; an idle transaction holds its locks and snapshot meanwhile. ClientRead is the server waiting for the next message, ClientWrite for the client to take the results.' END) f
$$;
