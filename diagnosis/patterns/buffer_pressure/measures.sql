-- buffer_pressure's measures for diagnose_run: buffers backends wrote themselves (compare()'s
-- row: the background writer's count up to 16, pg_stat_io's relation writes from 17), and the waits on WAL,
-- buffer mapping, data file writes and relation extension.

CREATE OR REPLACE FUNCTION telemetry._measures_buffer_pressure(p_start_time timestamptz, p_end_time timestamptz,
    p_snapshot_start timestamptz, p_server text, p_shared jsonb)
RETURNS TABLE (measure text, unit text, value numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT 'backend_buffer_writes', 'buffers', coalesce(c.bgw_buffers_backend_delta, c.io_client_buffer_writes_delta)::numeric
    FROM telemetry._shared_compare(p_shared) c
$$;

CREATE OR REPLACE FUNCTION telemetry._waits_buffer_pressure()
RETURNS TABLE (wait_event_type text, wait_event text, measure text)
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    VALUES ('Lock', 'extend', NULL::text), ('%', 'WALWrite', NULL), ('%', 'WALSync', NULL), ('%', 'WALInsert', NULL),
           ('%', 'WALBufMapping', NULL), ('%', 'BufferMapping', NULL), ('%', 'DataFileWrite', NULL),
           ('%', 'DataFileExtend', NULL), ('%', 'DataFileFlush', NULL)
$$;
