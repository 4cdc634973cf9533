-- buffer_pressure: buffers the backends wrote themselves, and their share of all buffer writes.

INSERT INTO telemetry.diagnose_thresholds (name, value, unit, description) VALUES
    ('backend_writes_warning', 16384, 'buffers',
     'Buffers backends wrote themselves (8 kB each) instead of the checkpointer or background writer: warning, provided backend_write_pct is reached.'),
    ('backend_writes_critical', 131072, 'buffers', 'Buffers backends wrote themselves: critical, provided backend_write_pct is reached.'),
    ('backend_write_pct', 30, 'percent of buffer writes',
     'Below this share of all buffer writes done by backends, buffer_pressure stays info.')
ON CONFLICT (name) DO UPDATE SET unit = excluded.unit, description = excluded.description;

CREATE OR REPLACE FUNCTION telemetry._pattern_buffer_pressure(p_start_time timestamptz, p_end_time timestamptz,
                                                              p_snapshot_start timestamptz, p_server text, p_shared jsonb)
RETURNS TABLE (pattern text, severity text, score numeric, summary text, evidence jsonb, recommendation text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH
    cmp AS (SELECT * FROM telemetry._shared_compare(p_shared)),
    wait_time AS (SELECT * FROM telemetry._shared_waits(p_shared))
    SELECT 'buffer_pressure',
           CASE WHEN x.pct >= telemetry._threshold('backend_write_pct')
                THEN coalesce(telemetry._severity(x.backend, telemetry._threshold('backend_writes_warning'), telemetry._threshold('backend_writes_critical')), 'info')
                ELSE 'info' END,
           x.backend / telemetry._threshold('backend_writes_warning'),
           format('Backends wrote %s buffers themselves (%s), %s%% of all buffer writes; the checkpointer wrote %s and the background writer %s.',
                  x.backend, telemetry._pretty_bytes(x.backend * 8192), x.pct, coalesce(c.io_ckpt_writes_delta, c.ckpt_buffers_delta), c.bgw_buffers_clean_delta),
           jsonb_build_object('backend_writes', x.backend, 'backend_write_pct', x.pct,
                              'bgw_buffers_backend_delta', c.bgw_buffers_backend_delta, 'io_client_buffer_writes_delta', c.io_client_buffer_writes_delta,
                              'ckpt_buffers_delta', c.ckpt_buffers_delta, 'bgw_buffers_clean_delta', c.bgw_buffers_clean_delta,
                              'bgw_buffers_alloc_delta', c.bgw_buffers_alloc_delta,
                              'wal_write_seconds', (SELECT round(sum(seconds)::numeric, 1) FROM wait_time WHERE wait_event IN ('WALWrite', 'WALSync')),
                              'extend_wait_seconds', (SELECT round(sum(seconds)::numeric, 1) FROM wait_time WHERE wait_event_type = 'Lock' AND wait_event = 'extend')),
           'Backends are evicting dirty buffers themselves: raise shared_buffers, let the background writer do more (bgwriter_lru_maxpages, bgwriter_lru_multiplier), and if WALWrite waits show, look at wal_buffers and the WAL disk.'
    FROM cmp c,
         LATERAL (SELECT coalesce(c.bgw_buffers_backend_delta, c.io_client_buffer_writes_delta) AS backend) b,
         LATERAL (SELECT b.backend,
                         round(100.0 * b.backend / nullif(b.backend + coalesce(c.io_ckpt_writes_delta, c.ckpt_buffers_delta, 0)
                                                       + coalesce(c.bgw_buffers_clean_delta, 0), 0), 1) AS pct) x
    WHERE x.backend > 0;
END
$$;
