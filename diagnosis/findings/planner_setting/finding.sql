-- planner_setting: the batch's statements ran with another plan than in its baseline runs, and
-- with other planner settings than the baseline's plan had (auto_explain's settings of the
-- plan: those not at their default): the batch's session, its role or its database set them.
CREATE OR REPLACE FUNCTION telemetry._finding_planner_setting(p_run_id bigint, p_account jsonb)
RETURNS TABLE (finding text, severity text, summary text, evidence jsonb, recommendation text, explained_seconds numeric, children jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT f.* FROM telemetry._plan_change(p_run_id, (SELECT r.queryid FROM telemetry._account_rows(p_account, 'planner_setting') r
                                                      ORDER BY r.extra_seconds DESC LIMIT 1)) s,
        LATERAL telemetry._cause_finding(p_account, 'planner_setting', 'The batch''s statements were planned with other planner settings, and their plans changed', s.story, s.evidence,
        'The batch''s session (SET in its code), its role or its database (ALTER ROLE/DATABASE ... SET: pg_db_role_setting) set them: undo what was not meant for this batch, or keep it and expect its plans.') f
$$;
