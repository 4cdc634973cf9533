-- plan_changed: the batch's statements ran with another plan than in its baseline runs, as
-- auto_explain logged them (--plans.source, telemetry.run_plans): their time is the plan's.
-- Named with both shapes of the statement that took most of it and the node whose estimate
-- was furthest from its actual rows.
CREATE OR REPLACE FUNCTION telemetry._finding_plan_changed(p_run_id bigint, p_account jsonb)
RETURNS TABLE (finding text, severity text, summary text, evidence jsonb, recommendation text, explained_seconds numeric, children jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT f.* FROM telemetry._plan_change(p_run_id, (SELECT r.queryid FROM telemetry._account_rows(p_account, 'plan_changed') r
                                                      ORDER BY r.extra_seconds DESC LIMIT 1)) s,
        LATERAL telemetry._cause_finding(p_account, 'plan_changed', 'The plans of the batch''s statements changed', s.story, s.evidence,
        'See what made the planner choose another plan: an index dropped or invalid, statistics stale (ANALYZE the tables of the node furthest from its estimate), a planner setting changed. telemetry.run_plans(run_id) and the report show both plans node by node.') f
$$;
