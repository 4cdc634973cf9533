-- checkpoint_interference: checkpoints during the window, requested ones above info.

INSERT INTO telemetry.diagnose_thresholds (name, value, unit, description) VALUES
    ('checkpoint_requested_warning', 1, 'checkpoints',
     'Requested checkpoints (max_wal_size reached, or CHECKPOINT run) in the window: warning.'),
    ('checkpoint_requested_critical', 3, 'checkpoints', 'Requested checkpoints: critical.')
ON CONFLICT (name) DO UPDATE SET unit = excluded.unit, description = excluded.description;

CREATE OR REPLACE FUNCTION telemetry._pattern_checkpoint_interference(p_start_time timestamptz, p_end_time timestamptz,
                                                                      p_snapshot_start timestamptz, p_server text, p_shared jsonb)
RETURNS TABLE (pattern text, severity text, score numeric, summary text, evidence jsonb, recommendation text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH
    cmp AS (SELECT * FROM telemetry._shared_compare(p_shared))
    SELECT 'checkpoint_interference',
           coalesce(telemetry._severity(c.ckpt_requested_delta, telemetry._threshold('checkpoint_requested_warning'), telemetry._threshold('checkpoint_requested_critical')), 'info'),
           greatest(c.ckpt_requested_delta / telemetry._threshold('checkpoint_requested_warning'), 0.1),
           format('%s checkpoint(s) during the window (%s requested, %s timed), writing %s buffers in %s s.',
                  coalesce(c.ckpt_timed_delta + c.ckpt_requested_delta, 1), c.ckpt_requested_delta, c.ckpt_timed_delta,
                  c.ckpt_buffers_delta, round(c.ckpt_write_time_ms / 1000, 1)),
           jsonb_build_object('checkpoint_occurred', c.checkpoint_occurred, 'ckpt_timed_delta', c.ckpt_timed_delta,
                              'ckpt_requested_delta', c.ckpt_requested_delta, 'ckpt_write_time_ms', c.ckpt_write_time_ms,
                              'ckpt_sync_time_ms', c.ckpt_sync_time_ms, 'ckpt_buffers_delta', c.ckpt_buffers_delta,
                              'wal_bytes_delta', c.wal_bytes_delta, 'wal_bytes_pretty', c.wal_bytes_pretty),
           'Requested checkpoints mean max_wal_size was reached (or CHECKPOINT was run): raise max_wal_size so the batch''s WAL fits between timed checkpoints, keep checkpoint_completion_target at 0.9, and do not run CHECKPOINT during the batch.'
    FROM cmp c
    WHERE c.checkpoint_occurred OR c.ckpt_timed_delta + c.ckpt_requested_delta > 0;
END
$$;
