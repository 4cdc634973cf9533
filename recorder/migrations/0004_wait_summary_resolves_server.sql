-- wait_summary and client_wait_summary name the server before anything else: with several
-- servers recorded and none named they raise the error listing them even over a window that
-- holds no samples (the planner may otherwise skip the lookup when no partition matches).

CREATE OR REPLACE FUNCTION telemetry.wait_summary(p_start_time timestamptz, p_end_time timestamptz, p_server text DEFAULT NULL)
RETURNS TABLE (
    backend_type text, wait_event_type text, wait_event text, sample_count bigint,
    total_waiters bigint, avg_waiters numeric, max_waiters integer, pct_of_samples numeric,
    session_seconds numeric, avg_active_sessions numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM telemetry._wait_summary(p_start_time, p_end_time, telemetry._resolve_server(p_server), false)
$$;

CREATE OR REPLACE FUNCTION telemetry.client_wait_summary(p_start_time timestamptz, p_end_time timestamptz, p_server text DEFAULT NULL)
RETURNS TABLE (
    backend_type text, wait_event_type text, wait_event text, sample_count bigint,
    total_waiters bigint, avg_waiters numeric, max_waiters integer, pct_of_samples numeric,
    session_seconds numeric, avg_active_sessions numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM telemetry._wait_summary(p_start_time, p_end_time, telemetry._resolve_server(p_server), true)
$$;
