-- throwaway's measures: for recorder.TestThrowawayPatternThroughItsFolder, which sees them in
-- diagnose_run through this folder alone (a pattern's folder declares what diagnose_run
-- compares of it).

CREATE OR REPLACE FUNCTION telemetry._measures_throwaway(p_start_time timestamptz, p_end_time timestamptz,
    p_snapshot_start timestamptz, p_server text, p_shared jsonb)
RETURNS TABLE (measure text, unit text, value numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT 'throwaway_samples', 'count', count(*)::numeric FROM telemetry._window_samples(p_start_time, p_end_time, p_server)
$$;

CREATE OR REPLACE FUNCTION telemetry._waits_throwaway()
RETURNS TABLE (wait_event_type text, wait_event text, measure text)
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    VALUES ('Throwaway', '%', 'throwaway_wait_seconds')
$$;
