-- lock_contention's measure for diagnose_run: the seconds sessions waited on heavyweight locks
-- (relation extension is buffer_pressure's), summed into lock_wait_seconds.

CREATE OR REPLACE FUNCTION telemetry._waits_lock_contention()
RETURNS TABLE (wait_event_type text, wait_event text, measure text)
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    VALUES ('Lock', '%', 'lock_wait_seconds')
$$;
