-- parallel_workers_not_launched: the batch's statements planned parallel workers and got fewer
-- than their baseline runs' did (auto_explain's Workers Planned and Launched): the server had
-- none free.
CREATE OR REPLACE FUNCTION telemetry._finding_parallel_workers_not_launched(p_run_id bigint, p_account jsonb)
RETURNS TABLE (finding text, severity text, summary text, evidence jsonb, recommendation text, explained_seconds numeric, children jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH top AS (SELECT r.queryid FROM telemetry._account_rows(p_account, 'parallel_workers_not_launched') r ORDER BY r.extra_seconds DESC LIMIT 1),
    p AS (SELECT p.* FROM telemetry.run_plans(p_run_id) p JOIN top USING (queryid) WHERE p.workers_launched < p.workers_planned
          ORDER BY p.duration_ms DESC LIMIT 1)
    SELECT f.* FROM p, LATERAL telemetry._cause_finding(p_account, 'parallel_workers_not_launched',
        'The batch''s statements got fewer parallel workers than they planned',
        format('"%s" planned %s worker(s) in %s execution(s) and got %s; its baseline runs got %s per execution.',
               telemetry._statement_label(p.query_text, p.queryid), p.workers_planned, p.executions, p.workers_launched, round(p.baseline_workers_launched, 1)),
        jsonb_build_object('queryid', p.queryid, 'workers_planned', p.workers_planned, 'workers_launched', p.workers_launched,
                           'baseline_workers_launched_per_execution', p.baseline_workers_launched),
        'Other parallel queries (or the batch''s own sessions at once) used the workers up: raise max_parallel_workers (and max_worker_processes, a restart), or run fewer parallel statements together.') f
$$;
