-- cpu_contention: the batch's statements took more CPU time than usual while other sessions
-- were busier (on CPU or I/O) than in the baseline runs: they competed for the server. Named
-- with who they were (activity_samples: application, role, their top statement).
CREATE OR REPLACE FUNCTION telemetry._finding_cpu_contention(p_run_id bigint, p_account jsonb)
RETURNS TABLE (finding text, severity text, summary text, evidence jsonb, recommendation text, explained_seconds numeric, children jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH w AS (SELECT w.*, telemetry._resolve_server(w.server) AS srv FROM telemetry._run_window(p_run_id) w),
    own AS (SELECT DISTINCT b.pid FROM w, telemetry.batch_wait_samples b
            WHERE b.server = w.srv AND b.batch = w.batch AND b.own AND b.captured_at BETWEEN w.start_time AND w.end_time),
    busy AS (SELECT a.application_name, a.usename, a.query_preview
             FROM w, telemetry.activity_samples a
             WHERE a.server = w.srv AND a.captured_at BETWEEN w.start_time AND w.end_time
               AND a.backend_type = 'client backend' AND a.state = 'active' AND a.pid NOT IN (SELECT pid FROM own)),
    who AS (SELECT coalesce(nullif(b.application_name, ''), '?') AS application, coalesce(b.usename, '?') AS role, count(*) AS samples,
                   mode() WITHIN GROUP (ORDER BY b.query_preview) AS top_statement
            FROM busy b GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 3)
    SELECT f.* FROM telemetry._cause_finding(p_account, 'cpu_contention', 'The batch''s statements took more CPU time than usual while other sessions competed for the server',
        format('Other sessions were busy on CPU or I/O %s at a time on average, against %s in the baseline runs%s.',
               p_account->>'other_busy_sessions', p_account->>'baseline_other_busy_sessions',
               coalesce(': mostly ' || (SELECT string_agg(format('%s (role %s, %s samples, "%s")', who.application, who.role, who.samples,
                                                                 telemetry._statement_label(who.top_statement, NULL)), '; ' ORDER BY who.samples DESC)
                                      FROM who), '')),
        jsonb_build_object('other_busy_sessions', p_account->'other_busy_sessions', 'baseline_other_busy_sessions', p_account->'baseline_other_busy_sessions',
                           'other_sessions', (SELECT jsonb_agg(to_jsonb(who)) FROM who)),
        'Move the other work (reports, ad-hoc queries, another batch) out of the batch''s window, or bound it (a pooler''s limits, statement_timeout, fewer parallel workers); telemetry.run_session_waits(run_id) shows what the other sessions did while the batch ran.') f
$$;
