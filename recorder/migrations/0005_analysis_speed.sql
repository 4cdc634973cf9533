-- Measured over 7 days at default settings (docs/recorder.md), three things made the analysis
-- functions slow, each fixed here without changing a result:
--   * _window returns one row, but the planner took the default 1000 for a set-returning
--     function and hashed every snapshot to join it;
--   * (d).* over a function's composite result calls the function once per column: compare()
--     and the deltas view ran _snapshot_diff 31 times per row. Called in FROM, it runs once
--     (and the view hands its rows over newest first, so that a LIMIT stops it early);
--   * wait_summary's count(DISTINCT sample_id) sorted every wait row of the window (on disk
--     over days): the rows are summed per sample first, then counted, both by hashing.
-- And a fix: the deltas view tested "the previous snapshot IS NOT NULL", which for a row is
-- false as soon as any of its columns is NULL (io_* on 15, bgw_buffers_backend on 17+): it
-- showed no rows. It now tests for the previous snapshot's existence.

ALTER FUNCTION telemetry._window(timestamptz, timestamptz, text) ROWS 1;

CREATE OR REPLACE FUNCTION telemetry.compare(p_start_time timestamptz, p_end_time timestamptz, p_server text DEFAULT NULL)
RETURNS TABLE (
    start_snapshot_at timestamptz, end_snapshot_at timestamptz, elapsed_seconds numeric,
    checkpoint_occurred boolean, ckpt_timed_delta bigint, ckpt_requested_delta bigint,
    ckpt_write_time_ms numeric, ckpt_sync_time_ms numeric, ckpt_buffers_delta bigint,
    wal_bytes_delta bigint, wal_bytes_pretty text, wal_write_time_ms numeric,
    wal_sync_time_ms numeric, bgw_buffers_clean_delta bigint, bgw_buffers_alloc_delta bigint,
    bgw_buffers_backend_delta bigint, bgw_buffers_backend_fsync_delta bigint,
    slots_count integer, slots_max_retained_wal bigint, slots_max_retained_pretty text,
    io_ckpt_writes_delta bigint, io_ckpt_write_time_ms numeric, io_ckpt_fsyncs_delta bigint,
    io_ckpt_fsync_time_ms numeric, io_autovacuum_writes_delta bigint,
    io_autovacuum_write_time_ms numeric, io_client_writes_delta bigint,
    io_client_write_time_ms numeric, io_bgwriter_writes_delta bigint,
    io_bgwriter_write_time_ms numeric, temp_files_delta bigint, temp_bytes_delta bigint,
    temp_bytes_pretty text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT w.start_at, w.end_at, d.*
    FROM telemetry._window(p_start_time, p_end_time, p_server) w
    JOIN telemetry.snapshots s ON s.id = w.start_id AND s.captured_at = w.start_at
    JOIN telemetry.snapshots e ON e.id = w.end_id AND e.captured_at = w.end_at
    CROSS JOIN LATERAL telemetry._snapshot_diff(s, e) d
$$;

CREATE OR REPLACE FUNCTION telemetry._wait_summary(p_start_time timestamptz, p_end_time timestamptz,
    p_server text, p_clients_only boolean)
RETURNS TABLE (
    backend_type text, wait_event_type text, wait_event text, sample_count bigint,
    total_waiters bigint, avg_waiters numeric, max_waiters integer, pct_of_samples numeric,
    session_seconds numeric, avg_active_sessions numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH srv AS (SELECT telemetry._resolve_server(p_server) AS server),
    smp AS (
        SELECT s.id FROM telemetry.samples s, srv
        WHERE s.server = srv.server AND s.captured_at BETWEEN p_start_time AND p_end_time
    ),
    -- One row per sample and wait (its states together): counting them counts samples.
    per_sample AS (
        SELECT w.sample_id, w.backend_type, w.wait_event_type, w.wait_event,
            sum(w.count) AS waiters, max(w.count) AS max_waiters
        FROM telemetry.wait_samples w JOIN smp ON smp.id = w.sample_id
        WHERE w.captured_at BETWEEN p_start_time AND p_end_time
          AND w.state NOT IN ('idle', 'idle in transaction')
          AND (NOT p_clients_only OR w.backend_type = 'client backend')
        GROUP BY 1, 2, 3, 4
    ),
    grid AS (
        SELECT p.backend_type, p.wait_event_type, p.wait_event, count(*) AS sample_count,
            sum(p.waiters)::bigint AS total_waiters, max(p.max_waiters) AS max_waiters
        FROM per_sample p
        GROUP BY 1, 2, 3
    ),
    sampled AS (
        SELECT 'client backend'::text AS backend_type, t.wait_event_type, t.wait_event, sum(t.seconds) AS seconds
        FROM telemetry.wait_time_samples t JOIN smp ON smp.id = t.sample_id
        WHERE t.captured_at BETWEEN p_start_time AND p_end_time
        GROUP BY 1, 2, 3
    )
    SELECT coalesce(g.backend_type, h.backend_type), coalesce(g.wait_event_type, h.wait_event_type),
        coalesce(g.wait_event, h.wait_event), coalesce(g.sample_count, 0), coalesce(g.total_waiters, 0),
        round(g.total_waiters::numeric / g.sample_count, 2), g.max_waiters,
        round(100.0 * coalesce(g.sample_count, 0) / nullif((SELECT count(*) FROM smp), 0), 1),
        round(h.seconds::numeric, 1),
        round(h.seconds::numeric / nullif(extract(epoch FROM p_end_time - p_start_time), 0), 2)
    FROM grid g FULL JOIN sampled h
        ON h.backend_type = g.backend_type AND h.wait_event_type = g.wait_event_type AND h.wait_event = g.wait_event
    ORDER BY 5 DESC, 4 DESC, h.seconds DESC NULLS LAST, 1, 2, 3
$$;

CREATE OR REPLACE VIEW telemetry.deltas AS
SELECT e.id, e.captured_at, e.pg_version, d.elapsed_seconds AS interval_seconds, d.checkpoint_occurred,
    d.ckpt_timed_delta, d.ckpt_requested_delta, d.ckpt_write_time_ms, d.ckpt_sync_time_ms,
    d.ckpt_buffers_delta, d.wal_bytes_delta, d.wal_bytes_pretty, d.wal_write_time_ms,
    d.wal_sync_time_ms, d.bgw_buffers_clean_delta, d.bgw_buffers_alloc_delta,
    d.bgw_buffers_backend_delta, d.bgw_buffers_backend_fsync_delta,
    e.autovacuum_workers AS autovacuum_workers_active, d.slots_count, d.slots_max_retained_wal,
    d.slots_max_retained_pretty, d.io_ckpt_writes_delta, d.io_ckpt_write_time_ms,
    d.io_ckpt_fsyncs_delta, d.io_ckpt_fsync_time_ms, d.io_autovacuum_writes_delta,
    d.io_autovacuum_write_time_ms, d.io_client_writes_delta, d.io_client_write_time_ms,
    d.io_bgwriter_writes_delta, d.io_bgwriter_write_time_ms, d.temp_files_delta,
    d.temp_bytes_delta, d.temp_bytes_pretty, e.server
FROM (
    -- Already newest first: "SELECT * FROM telemetry.deltas LIMIT 20" computes 20 differences.
    SELECT s.captured_at, s AS e, lag(s) OVER (PARTITION BY s.server ORDER BY s.captured_at) AS p
    FROM telemetry.snapshots s
    ORDER BY s.captured_at DESC
) pairs
    CROSS JOIN LATERAL (SELECT (pairs.e).*) e
    CROSS JOIN LATERAL telemetry._snapshot_diff(pairs.p, pairs.e) d
WHERE (pairs.p).captured_at IS NOT NULL
ORDER BY pairs.captured_at DESC;

-- table_deltas finds each table row's previous snapshot of the same table: without an index
-- on (server, relid, captured_at) that was a scan per row, hours over 7 days.
CREATE INDEX IF NOT EXISTS table_snapshots_relid_captured_at_idx ON telemetry.table_snapshots (server, relid, captured_at);
CREATE INDEX IF NOT EXISTS table_snapshots_captured_at_idx ON telemetry.table_snapshots (captured_at);
