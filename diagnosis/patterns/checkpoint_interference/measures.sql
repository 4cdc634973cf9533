-- checkpoint_interference's measures for diagnose_run: WAL written and checkpoints completed
-- (compare()'s row), and the waits on the checkpointer.

CREATE OR REPLACE FUNCTION telemetry._measures_checkpoint_interference(p_start_time timestamptz, p_end_time timestamptz,
    p_snapshot_start timestamptz, p_server text, p_shared jsonb)
RETURNS TABLE (measure text, unit text, value numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT 'wal_bytes', 'bytes', c.wal_bytes_delta::numeric FROM telemetry._shared_compare(p_shared) c
    UNION ALL SELECT 'checkpoints', 'count', (c.ckpt_timed_delta + c.ckpt_requested_delta)::numeric FROM telemetry._shared_compare(p_shared) c
$$;

CREATE OR REPLACE FUNCTION telemetry._waits_checkpoint_interference()
RETURNS TABLE (wait_event_type text, wait_event text, measure text)
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    VALUES ('%', 'CheckpointerComm', NULL::text), ('%', 'CheckpointStart', NULL)
$$;
