-- parallel_workers_not_launched: the batch's statements got fewer parallel workers than they
-- planned: the server had none free. From pg_stat_statements 1.12 (PostgreSQL 18) or, before,
-- auto_explain's plans (Workers Planned and Launched, against the baseline runs').
CREATE OR REPLACE FUNCTION telemetry._finding_parallel_workers_not_launched(p_run_id bigint, p_account jsonb)
RETURNS TABLE (finding text, severity text, summary text, evidence jsonb, recommendation text, explained_seconds numeric, children jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH top AS (SELECT r.queryid, r.query FROM telemetry._account_rows(p_account, 'parallel_workers_not_launched') r ORDER BY r.extra_seconds DESC LIMIT 1),
    w AS (SELECT top.queryid, top.query, coalesce(s.to_launch, p.workers_planned) AS planned, coalesce(s.launched, p.workers_launched) AS launched
          FROM top LEFT JOIN telemetry._run_parallel_workers(p_run_id) s USING (queryid)
          LEFT JOIN LATERAL (SELECT sum(x.workers_planned) AS workers_planned, sum(x.workers_launched) AS workers_launched
                             FROM telemetry.run_plans(p_run_id) x WHERE x.queryid = top.queryid) p ON s.queryid IS NULL)
    SELECT f.* FROM w, LATERAL telemetry._cause_finding(p_account, 'parallel_workers_not_launched',
        'The batch''s statements got fewer parallel workers than they planned',
        format('"%s" planned %s worker(s) and got %s.', telemetry._statement_label(w.query, w.queryid), w.planned, w.launched),
        jsonb_build_object('queryid', w.queryid, 'workers_planned', w.planned, 'workers_launched', w.launched),
        'Other parallel queries (or the batch''s own sessions at once) used the workers up: raise max_parallel_workers (and max_worker_processes, a restart), or run fewer parallel statements together.') f
$$;
