-- client_wait: time of the run the database did not spend on the batch's statements: its own
-- sessions waiting for the client (Client:ClientRead, ClientWrite), idle between statements
-- or in a transaction, or no own session active at all (the application working, or not
-- connected), beyond the baseline runs'.
CREATE OR REPLACE FUNCTION telemetry._finding_client_wait(p_run_id bigint, p_account jsonb)
RETURNS TABLE (finding text, severity text, summary text, evidence jsonb, recommendation text, explained_seconds numeric, children jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH parts AS (SELECT r.bucket AS part, sum(r.seconds) AS seconds, sum(r.extra_seconds) AS extra
                   FROM telemetry._account_rows(p_account, 'client_wait') r GROUP BY 1)
    SELECT f.* FROM telemetry._cause_finding(p_account, 'client_wait', 'The time went to the application or the network, not to the database',
        (SELECT 'Mostly ' || string_agg(format('%s (+%s s)', p.part, round(p.extra, 1)), ', ' ORDER BY p.extra DESC) || '.'
         FROM (SELECT * FROM parts WHERE extra > 0 ORDER BY extra DESC LIMIT 3) p),
        jsonb_build_object('parts', (SELECT jsonb_object_agg(p.part, round(p.seconds, 3)) FROM parts p)),
        'Look at what feeds the batch: the application or ETL tool (its CPU, its own work between statements, a COPY FROM STDIN or row-by-row inserts it sends slowly), the network between; an idle transaction holds its locks and snapshot meanwhile. ClientRead is the server waiting for the next message, ClientWrite for the client to take the results.') f
$$;
