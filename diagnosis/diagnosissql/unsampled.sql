-- A run's statements that escaped the wait sampler (issue 19, defect 5): a statement of the
-- batch that took under a second in all may never be sampled, and then its time is no
-- session's in the run's account. These are its candidates from pg_stat_statements: top-level
-- statements that ran in the run's window (its start read to the first after its end), that
-- no sample saw an own session run (active), and that ran there only under roles and in
-- databases the run's own sessions were sampled in: another application's statement in the
-- same window is never a candidate. Candidates, not proof: another session of the same role
-- and database may have run one. Empty where the run's own sessions were not sampled with
-- their role and database (runs recorded before migration 0018).
CREATE OR REPLACE FUNCTION telemetry._run_unsampled_statements(p_run_id bigint)
RETURNS TABLE (queryid bigint, query text, datname text, username text, status text, calls bigint, rows bigint,
               seconds numeric, seconds_per_call numeric, temp_blks_written bigint, wal_bytes bigint,
               baseline_seconds_per_call numeric, baseline_runs_with integer)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH w AS (SELECT w.*, telemetry._resolve_server(w.server) AS srv FROM telemetry._run_window(p_run_id) w),
    own AS (  -- the run's own sessions as sampled: their roles and databases, their statements
        SELECT b.usename, b.datname, b.queryid, b.state
        FROM w JOIN telemetry.batch_wait_samples b
          ON b.server = w.srv AND b.batch = w.batch AND b.own AND b.captured_at BETWEEN w.start_time AND w.end_time),
    stmts AS (
        SELECT c.* FROM w, LATERAL telemetry._statement_compare(w.snapshot_start, w.end_time, w.server, NULL::text) c
        WHERE c.toplevel AND c.calls > 0),
    candidates AS (
        SELECT s.* FROM stmts s
        WHERE NOT EXISTS (SELECT FROM own o WHERE o.state = 'active' AND o.queryid = s.queryid)
          AND NOT EXISTS (SELECT FROM stmts x WHERE x.queryid = s.queryid
                            AND NOT EXISTS (SELECT FROM own o WHERE o.usename = x.username AND o.datname = x.datname))),
    -- Per call in the batch's baseline runs, any session's: a brief statement is seldom sampled there either.
    base AS (
        SELECT x.queryid, percentile_cont(0.5) WITHIN GROUP (ORDER BY x.seconds / x.calls)::numeric AS per_call,
               count(DISTINCT b.run_id)::int AS runs_with
        FROM telemetry._baseline_runs(p_run_id) b,
             LATERAL telemetry._window_statements(b.snapshot_start, b.end_time, b.server, NULL::text) x
        WHERE x.status <> 'reset' AND x.calls > 0 AND x.queryid IN (SELECT c.queryid FROM candidates c)
        GROUP BY x.queryid)
    SELECT c.queryid, c.query, c.datname, c.username, c.status, c.calls, c.rows, c.total_seconds, c.seconds_per_call,
           c.temp_blks_written, c.wal_bytes, round(base.per_call, 6), coalesce(base.runs_with, 0)
    FROM candidates c LEFT JOIN base USING (queryid)
    ORDER BY c.total_seconds DESC NULLS LAST, c.queryid
$$;
