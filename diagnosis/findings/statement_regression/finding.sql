-- statement_regression: the batch's statements took longer at the same work (calls and rows
-- as usual): slower per call. A plan probably changed where blocks per row rose
-- statement_plan_change_ratio times; the statement's own CPU and waits that no other cause
-- claims (those of a statement whose calls or rows grew are more_work; CPU while other
-- sessions were busier, cpu_contention; I/O at the same plan, io_wait).
CREATE OR REPLACE FUNCTION telemetry._finding_statement_regression(p_run_id bigint, p_account jsonb)
RETURNS TABLE (finding text, severity text, summary text, evidence jsonb, recommendation text, explained_seconds numeric, children jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH top AS (SELECT r.query, r.queryid, r.statistics AS s, r.bucket FROM telemetry._account_rows(p_account, 'statement_regression') r
                 ORDER BY r.extra_seconds DESC LIMIT 1)
    SELECT f.* FROM telemetry._cause_finding(p_account, 'statement_regression', 'The batch''s statements were slower at the same work',
        (SELECT format('"%s" took most of it, mostly %s%s.', telemetry._statement_label(top.query, top.queryid), top.bucket,
                       CASE WHEN top.s IS NOT NULL THEN format(': %s per call instead of %s at %s calls (baseline %s)%s',
                            (telemetry._call_times(top.s))[1], (telemetry._call_times(top.s))[2],
                            top.s->>'calls', round((top.s->>'baseline_calls')::numeric), telemetry._statistics_note(top.s))
                            ELSE '' END)
         FROM top),
        NULL,
        'Compare its plan with the baseline''s (EXPLAIN (ANALYZE, BUFFERS)): a dropped or unused index, stale statistics (ANALYZE the tables it reads), or a changed parameter; its top wait says where the time went.'
        || CASE WHEN NOT EXISTS (SELECT FROM telemetry._run_plan_executions(p_run_id))
                THEN ' To have the exporter capture the batch''s plans and compare them with the baseline runs'', load auto_explain for the batch''s role and run it with --plans.source (docs/plans.md).'
                ELSE '' END) f
$$;
