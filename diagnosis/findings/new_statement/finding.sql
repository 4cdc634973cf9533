-- new_statement: statements the batch's own sessions ran in none of its baseline runs.
CREATE OR REPLACE FUNCTION telemetry._finding_new_statement(p_run_id bigint, p_account jsonb)
RETURNS TABLE (finding text, severity text, summary text, evidence jsonb, recommendation text, explained_seconds numeric, children jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT f.* FROM telemetry._cause_finding(p_account, 'new_statement', 'The batch ran statements it did not run before',
        format('They were absent from all %s previous normal run(s).', p_account->>'baseline_runs'),
        NULL,
        'A code or data change introduced them: check they are meant to run, and their plans.') f
$$;
