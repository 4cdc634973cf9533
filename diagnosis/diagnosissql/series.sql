-- The series a window or a recorded run is drawn from (the report's charts), and a run's
-- window and baseline as diagnose_run reads them: the public reads of the report pages.

-- _series_by_sample: window_series' locks and waits, a point per sample.
CREATE OR REPLACE FUNCTION telemetry._series_by_sample(p_start_time timestamptz, p_end_time timestamptz, p_server text)
RETURNS TABLE (series text, wait_event_type text, wait_event text, offset_seconds double precision, value double precision)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT 'locks', NULL, NULL, extract(epoch FROM s.captured_at - p_start_time)::float8, count(DISTINCT l.blocked_pid)::float8
    FROM telemetry.samples s
    LEFT JOIN telemetry.lock_samples l ON l.sample_id = s.id AND l.captured_at = s.captured_at
    WHERE s.server = p_server AND s.captured_at BETWEEN p_start_time AND p_end_time
    GROUP BY s.id, s.captured_at
    UNION ALL
    SELECT 'waits', r.wait_event_type, r.wait_event, extract(epoch FROM r.captured_at - p_start_time)::float8, r.sessions
    FROM telemetry._wait_rows(p_start_time, p_end_time, p_server) r
    WHERE r.sessions IS NOT NULL
$$;

-- _series_by_hour: window_series' locks and waits, a point per hour of the window (the first
-- and last clipped to it): the most sessions blocked at once in one of its samples, and the
-- average sessions in each wait (the wait sampler's session-seconds over the hour's seconds;
-- else the sample grid's sessions over its samples). Whole hours come from the hour rollups,
-- as one range; the others (the window's ends, hours before the server's rollups) from the
-- window readers, each over its hour. Each hour is [its start, the next): a sample at the
-- window's very end is left out.
CREATE OR REPLACE FUNCTION telemetry._series_by_hour(p_start_time timestamptz, p_end_time timestamptz, p_server text)
RETURNS TABLE (series text, wait_event_type text, wait_event text, offset_seconds double precision, value double precision)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    -- From the hour of the window's first sample: a server recorded since yesterday has no
    -- rollups for the month before, and each of its hours would be read raw.
    WITH first AS (SELECT min(s.captured_at) AS at FROM telemetry.samples s
                   WHERE s.server = p_server AND s.captured_at BETWEEN p_start_time AND p_end_time),
    hours AS (
        SELECT h, greatest(h, p_start_time) AS f, least(h + interval '1 hour', p_end_time) AS t,
               h >= p_start_time AND h + interval '1 hour' <= p_end_time
               AND coalesce(h >= (SELECT v.since FROM telemetry.rollup_coverage v WHERE v.server = p_server
                                    AND current_setting('telemetry.rollups', true) IS DISTINCT FROM 'off'), false) AS rolled
        FROM first, generate_series(date_bin('1 hour', first.at, timestamptz '1970-01-01 00:00:00+00'), p_end_time, interval '1 hour') h
        WHERE least(h + interval '1 hour', p_end_time) > greatest(h, p_start_time)),
    span AS (SELECT min(h) AS f, max(h) AS t FROM hours WHERE rolled),
    counts AS (
        SELECT r.captured_at AS h, r.samples FROM span, telemetry.sample_rollups r
        WHERE r.server = p_server AND r.bucket = interval '1 hour' AND r.captured_at BETWEEN span.f AND span.t
        UNION ALL
        SELECT o.h, c.samples FROM hours o, telemetry._window_sample_counts(o.f, o.t - interval '1 microsecond', p_server) c
        WHERE NOT o.rolled),
    times AS (
        SELECT r.captured_at AS h, r.wait_event_type, r.wait_event, r.seconds FROM span, telemetry.wait_time_rollups r
        WHERE r.server = p_server AND r.bucket = interval '1 hour' AND r.captured_at BETWEEN span.f AND span.t
        UNION ALL
        SELECT o.h, w.* FROM hours o, telemetry._window_wait_times(o.f, o.t - interval '1 microsecond', p_server) w
        WHERE NOT o.rolled),
    grid AS (
        SELECT r.captured_at AS h, r.wait_event_type, r.wait_event, r.waiters FROM span, telemetry.wait_rollups r
        WHERE NOT EXISTS (SELECT FROM times) AND r.server = p_server AND r.bucket = interval '1 hour'
          AND r.captured_at BETWEEN span.f AND span.t AND r.backend_type = 'client backend'
        UNION ALL
        SELECT o.h, g.wait_event_type, g.wait_event, g.waiters FROM hours o, telemetry._window_wait_groups(o.f, o.t - interval '1 microsecond', p_server) g
        WHERE NOT EXISTS (SELECT FROM times) AND NOT o.rolled AND g.backend_type = 'client backend'),
    blocked AS (
        SELECT r.captured_at AS h, r.lock_max_blocked AS sessions FROM span, telemetry.sample_rollups r
        WHERE r.server = p_server AND r.bucket = interval '1 hour' AND r.captured_at BETWEEN span.f AND span.t
        UNION ALL
        SELECT o.h, max(l.blocked) FROM hours o, telemetry._raw_blocked(p_server, o.f, o.t - interval '1 microsecond', NULL) l
        WHERE NOT o.rolled
        GROUP BY o.h)
    SELECT 'locks', NULL, NULL, extract(epoch FROM o.f - p_start_time)::float8, coalesce(b.sessions, 0)::float8
    FROM hours o JOIN counts c ON c.h = o.h LEFT JOIN blocked b ON b.h = o.h
    WHERE c.samples > 0
    UNION ALL
    SELECT 'waits', x.wait_event_type, x.wait_event, extract(epoch FROM o.f - p_start_time)::float8,
           (sum(x.seconds) / extract(epoch FROM o.t - o.f))::float8
    FROM hours o JOIN times x ON x.h = o.h
    GROUP BY o.h, o.f, o.t, x.wait_event_type, x.wait_event
    UNION ALL
    SELECT 'waits', x.wait_event_type, x.wait_event, extract(epoch FROM o.f - p_start_time)::float8,
           (sum(x.waiters)::numeric / c.samples)::float8
    FROM hours o JOIN counts c ON c.h = o.h AND c.samples > 0 JOIN grid x ON x.h = o.h
    GROUP BY o.h, o.f, c.samples, x.wait_event_type, x.wait_event
$$;

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
-- A window longer than 36 hours is drawn by the hour (_series_by_hour: a point per hour, not
-- 86,400 samples for a month): the growth as of each hour's last snapshot, the most sessions
-- blocked at once in the hour, the hour's average sessions in each wait.
CREATE OR REPLACE FUNCTION telemetry.window_series(p_start_time timestamptz, p_end_time timestamptz, p_server text DEFAULT NULL)
RETURNS TABLE (series text, wait_event_type text, wait_event text, offset_seconds double precision, value double precision)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH srv AS (SELECT telemetry._window_server(p_start_time, p_end_time, p_server) AS server),
    ends AS (SELECT coalesce(w.start_at, p_start_time) AS first_at, coalesce(w.end_at, p_end_time) AS last_at
             FROM telemetry._window_ends(p_start_time, p_end_time, p_server) w),
    -- Each series by itself, its snapshots read in time order (the index's: no sort; all three
    -- in one sort of three times the snapshots spilled to disk, 400 ms for a month).
    grown AS (
        SELECT c.series, g.captured_at, g.value, g.first, g.hour_last
        FROM srv, ends, (VALUES ('wal_bytes'), ('checkpoints'), ('temp_bytes')) c (series)
        CROSS JOIN LATERAL (
            -- By the hour: the first reading and each hour's last.
            SELECT g.captured_at, sum(g.step) OVER w AS value, lag(g.captured_at) OVER w IS NULL AS first,
                   date_bin('1 hour', lead(g.captured_at) OVER w, timestamptz '1970-01-01 00:00:00+00')
                       IS DISTINCT FROM date_bin('1 hour', g.captured_at, timestamptz '1970-01-01 00:00:00+00') AS hour_last
            FROM (SELECT r.captured_at,
                         CASE WHEN lag(r.value) OVER w IS NULL THEN 0 -- the first reading: growth counts from here
                              WHEN r.value >= lag(r.value) OVER w AND r.reset IS NOT DISTINCT FROM lag(r.reset) OVER w THEN r.value - lag(r.value) OVER w
                              ELSE r.value END AS step
                  FROM (SELECT s.captured_at,
                               CASE c.series WHEN 'wal_bytes' THEN s.wal_bytes::float8
                                             WHEN 'checkpoints' THEN (s.ckpt_timed + s.ckpt_requested)::float8
                                             ELSE s.temp_bytes::float8 END AS value,
                               CASE c.series WHEN 'wal_bytes' THEN s.wal_stats_reset WHEN 'checkpoints' THEN s.ckpt_stats_reset
                                             ELSE s.db_stats_reset END AS reset
                        FROM telemetry.snapshots s
                        WHERE s.server = srv.server AND s.captured_at BETWEEN ends.first_at AND ends.last_at) r
                  WHERE r.value IS NOT NULL
                  WINDOW w AS (ORDER BY r.captured_at)) g
            WINDOW w AS (ORDER BY g.captured_at ROWS UNBOUNDED PRECEDING)) g)
    SELECT g.series, NULL, NULL, extract(epoch FROM g.captured_at - p_start_time)::float8, g.value
    FROM grown g
    WHERE p_end_time - p_start_time <= interval '36 hours' OR g.first OR g.hour_last
    UNION ALL
    SELECT x.* FROM srv, telemetry._series_by_sample(p_start_time, p_end_time, srv.server) x
    WHERE p_end_time - p_start_time <= interval '36 hours'
    UNION ALL
    SELECT x.* FROM srv, telemetry._series_by_hour(p_start_time, p_end_time, srv.server) x
    WHERE p_end_time - p_start_time > interval '36 hours'
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
