-- replication_lag's measures for diagnose_run: the most a standby's replay fell behind what was
-- sent (where the window has compare()'s row), and the waits for synchronous replication.

CREATE OR REPLACE FUNCTION telemetry._measures_replication_lag(p_start_time timestamptz, p_end_time timestamptz,
    p_snapshot_start timestamptz, p_server text, p_shared jsonb)
RETURNS TABLE (measure text, unit text, value numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT 'replication_lag_bytes', 'bytes',
           coalesce((SELECT max(r.lag_bytes) FROM telemetry._window_replication(p_snapshot_start, p_end_time, p_server) r), 0)
    FROM telemetry._shared_compare(p_shared) c
$$;

CREATE OR REPLACE FUNCTION telemetry._waits_replication_lag()
RETURNS TABLE (wait_event_type text, wait_event text, measure text)
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    VALUES ('%', 'SyncRep', NULL::text)
$$;
