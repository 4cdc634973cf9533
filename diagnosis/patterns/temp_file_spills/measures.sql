-- temp_file_spills' measures for diagnose_run: temporary file bytes written (compare()'s
-- row), and the waits on temporary files.

CREATE OR REPLACE FUNCTION telemetry._measures_temp_file_spills(p_start_time timestamptz, p_end_time timestamptz,
    p_snapshot_start timestamptz, p_server text, p_shared jsonb)
RETURNS TABLE (measure text, unit text, value numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT 'temp_bytes', 'bytes', c.temp_bytes_delta::numeric FROM telemetry._shared_compare(p_shared) c
$$;

CREATE OR REPLACE FUNCTION telemetry._waits_temp_file_spills()
RETURNS TABLE (wait_event_type text, wait_event text, measure text)
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    VALUES ('IO', 'BufFile%', NULL::text)
$$;
