-- replication_lag: the largest replay lag of a standby in the window, in bytes and in time.

INSERT INTO telemetry.diagnose_thresholds (name, value, unit, description) VALUES
    ('replication_lag_seconds_warning', 10, 'seconds', 'Largest replay lag of a standby in the window: warning.'),
    ('replication_lag_seconds_critical', 60, 'seconds', 'Replay lag: critical.'),
    ('replication_lag_bytes_warning', 268435456, 'bytes', 'Largest replay lag in bytes (sent minus replayed): warning.'),
    ('replication_lag_bytes_critical', 1073741824, 'bytes', 'Replay lag in bytes: critical.')
ON CONFLICT (name) DO UPDATE SET unit = excluded.unit, description = excluded.description;

CREATE OR REPLACE FUNCTION telemetry._pattern_replication_lag(p_start_time timestamptz, p_end_time timestamptz,
                                                              p_snapshot_start timestamptz, p_server text, p_shared jsonb)
RETURNS TABLE (pattern text, severity text, score numeric, summary text, evidence jsonb, recommendation text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH
    cmp AS (SELECT * FROM telemetry._shared_compare(p_shared)),
    repl AS (SELECT * FROM telemetry._window_replication(p_snapshot_start, p_end_time, p_server))
    SELECT 'replication_lag',
           CASE WHEN x.lag_seconds >= telemetry._threshold('replication_lag_seconds_critical') OR x.lag_bytes >= telemetry._threshold('replication_lag_bytes_critical') THEN 'critical'
                WHEN x.lag_seconds >= telemetry._threshold('replication_lag_seconds_warning') OR x.lag_bytes >= telemetry._threshold('replication_lag_bytes_warning') THEN 'warning'
                ELSE 'info' END,
           greatest(x.lag_seconds / telemetry._threshold('replication_lag_seconds_warning'), x.lag_bytes / telemetry._threshold('replication_lag_bytes_warning')),
           format('Standbys fell behind by up to %s and %s s of replay.', telemetry._pretty_bytes(x.lag_bytes::bigint), round(x.lag_seconds, 1)),
           jsonb_build_object('max_replay_lag_bytes', x.lag_bytes, 'max_replay_lag_seconds', round(x.lag_seconds, 1),
                              'standbys', (SELECT jsonb_agg(to_jsonb(r) ORDER BY r.application_name, r.client_addr) FROM repl r),
                              'slots_max_retained_wal', (SELECT slots_max_retained_wal FROM cmp)),
           'Check the standbys'' health (disk, network, hot_standby_feedback conflicts); with synchronous replication every commit waits for the slowest standby: consider synchronous_commit = local or remote_write for the batch, or asynchronous replication.'
    FROM (SELECT coalesce(max(lag_bytes), 0) AS lag_bytes, coalesce(max(lag_seconds), 0) AS lag_seconds FROM repl) x
    -- (a standby that keeps up shows a lag of microseconds: nothing to say)
    WHERE x.lag_bytes > 0 OR round(x.lag_seconds, 1) > 0;
END
$$;
