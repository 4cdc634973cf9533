-- more_work: the batch's statements had more to do than in the baseline runs (calls or rows
-- at least statement_more_work_ratio times their median, or more at about the baseline's time
-- for that much work: pg_stat_statements' counts of an entry whose time is the batch's own),
-- not a slower server.
CREATE OR REPLACE FUNCTION telemetry._finding_more_work(p_run_id bigint, p_account jsonb)
RETURNS TABLE (finding text, severity text, summary text, evidence jsonb, recommendation text, explained_seconds numeric, children jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH top AS (SELECT r.query, r.queryid, r.statistics AS s FROM telemetry._account_rows(p_account, 'more_work') r
                 WHERE r.statistics IS NOT NULL ORDER BY r.extra_seconds DESC LIMIT 1)
    SELECT f.* FROM telemetry._cause_finding(p_account, 'more_work', 'The batch had more to do than usual',
        (SELECT format('"%s": %s calls (baseline %s), %s rows (baseline %s), %s blocks per call (baseline %s), %s per call (baseline %s).',
                       telemetry._statement_label(top.query, top.queryid), top.s->>'calls', round((top.s->>'baseline_calls')::numeric),
                       top.s->>'rows', round((top.s->>'baseline_rows')::numeric),
                       round((top.s->>'blocks_per_call')::numeric), round((top.s->>'baseline_blocks_per_call')::numeric),
                       (telemetry._call_times(top.s))[1], (telemetry._call_times(top.s))[2])
         FROM top),
        NULL,
        'The batch had more to do, not a slower server: check the input volume of this run (rows and calls against the baseline); if that is expected, the baseline will follow.') f
$$;
