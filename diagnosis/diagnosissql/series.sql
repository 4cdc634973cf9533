-- The series a window or a recorded run is drawn from (the report's charts), and a run's
-- window and baseline as diagnose_run reads them: the public reads of the report pages.

-- window_series: the window's series, each point at offset_seconds from its start.
--   wal_bytes, checkpoints (timed and requested), temp_bytes: a counter's growth since the
--     window's first snapshot, over compare()'s snapshots (the latest at or before the start
--     to the earliest at or after the end; the window's own time where there is none), so that
--     the growth covers the whole window. Across a statistics reset (its stats_reset changed,
--     or the counter went backwards) the counter restarted from zero: its new value is what it
--     counted since, even once grown back past its old value.
--   locks: sessions blocked on a heavyweight lock, per sample.
--   waits: per sample, the average client sessions in each wait (wait_event_type, wait_event)
--     since the previous sample, as diagnose counts them (the wait sampler's, else the sample
--     grid's).
CREATE OR REPLACE FUNCTION telemetry.window_series(p_start_time timestamptz, p_end_time timestamptz, p_server text DEFAULT NULL)
RETURNS TABLE (series text, wait_event_type text, wait_event text, offset_seconds double precision, value double precision)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH srv AS (SELECT telemetry._window_server(p_start_time, p_end_time, p_server) AS server),
    ends AS (SELECT coalesce(w.start_at, p_start_time) AS first_at, coalesce(w.end_at, p_end_time) AS last_at
             FROM telemetry._window_ends(p_start_time, p_end_time, p_server) w),
    readings AS (
        SELECT c.series, s.captured_at, c.value, c.reset
        FROM srv, ends, telemetry.snapshots s,
        LATERAL (VALUES ('wal_bytes', s.wal_bytes::float8, s.wal_stats_reset),
                        ('checkpoints', (s.ckpt_timed + s.ckpt_requested)::float8, s.ckpt_stats_reset),
                        ('temp_bytes', s.temp_bytes::float8, s.db_stats_reset)) c (series, value, reset)
        WHERE s.server = srv.server AND s.captured_at BETWEEN ends.first_at AND ends.last_at AND c.value IS NOT NULL),
    growth AS (
        SELECT r.series, r.captured_at,
               CASE WHEN lag(r.value) OVER w IS NULL THEN 0 -- the first reading: growth counts from here
                    WHEN r.value >= lag(r.value) OVER w AND r.reset IS NOT DISTINCT FROM lag(r.reset) OVER w THEN r.value - lag(r.value) OVER w
                    ELSE r.value END AS step
        FROM readings r WINDOW w AS (PARTITION BY r.series ORDER BY r.captured_at))
    SELECT g.series, NULL, NULL, extract(epoch FROM g.captured_at - p_start_time)::float8,
           sum(g.step) OVER (PARTITION BY g.series ORDER BY g.captured_at ROWS UNBOUNDED PRECEDING)
    FROM growth g
    UNION ALL
    SELECT 'locks', NULL, NULL, extract(epoch FROM s.captured_at - p_start_time)::float8, count(DISTINCT l.blocked_pid)::float8
    FROM srv JOIN telemetry.samples s ON s.server = srv.server
    LEFT JOIN telemetry.lock_samples l ON l.sample_id = s.id AND l.captured_at = s.captured_at
    WHERE s.captured_at BETWEEN p_start_time AND p_end_time
    GROUP BY s.id, s.captured_at
    UNION ALL
    SELECT 'waits', r.wait_event_type, r.wait_event, extract(epoch FROM r.captured_at - p_start_time)::float8, r.sessions
    FROM srv, telemetry._wait_rows(p_start_time, p_end_time, srv.server) r
    WHERE r.sessions IS NOT NULL
    ORDER BY 1, 4, 2, 3
$$;

-- run_window: a recorded run's window, as diagnose_run reads it: its begin and end (now while
-- it runs), and where its start snapshot is looked for (the snapshot batch_begin asked for
-- lands shortly after the begin): compare(snapshot_start, end_time, server) is the run.
CREATE OR REPLACE FUNCTION telemetry.run_window(p_run_id bigint)
RETURNS TABLE (run_id bigint, batch text, status text, start_time timestamptz, end_time timestamptz,
               snapshot_start timestamptz, server text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM telemetry._run_window(p_run_id)
$$;

-- run_baseline: the runs diagnose_run compares a run with (its batch's previous normal runs,
-- at most baseline_runs of them), newest first, each with its window as run_window gives it.
CREATE OR REPLACE FUNCTION telemetry.run_baseline(p_run_id bigint)
RETURNS TABLE (run_id bigint, batch text, status text, start_time timestamptz, end_time timestamptz,
               snapshot_start timestamptz, server text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM telemetry._baseline_runs(p_run_id) b ORDER BY b.start_time DESC
$$;

-- run_series: window_series over a recorded run's window (run_window), from its begin.
CREATE OR REPLACE FUNCTION telemetry.run_series(p_run_id bigint)
RETURNS TABLE (series text, wait_event_type text, wait_event text, offset_seconds double precision, value double precision)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT s.* FROM telemetry._run_window(p_run_id) w, LATERAL telemetry.window_series(w.start_time, w.end_time, w.server) s
$$;
