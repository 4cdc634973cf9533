-- diagnose: the findings of the registered patterns (diagnosis/patterns, one folder each)
-- for a window, and the helpers they share; diagnose_run: one recorded batch run against the
-- median of the batch's previous normal runs. Thresholds live in telemetry.diagnose_thresholds
-- (each pattern inserts its own): update a row's value to override it; applying a file again
-- keeps the value.

-- _ts shows a time in summaries: to the second, with its offset.
CREATE OR REPLACE FUNCTION telemetry._ts(p_at timestamptz)
RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT to_char(p_at, 'YYYY-MM-DD HH24:MI:SSOF')
$$;

-- _severity grades a measure against its warning and critical thresholds: info when it was
-- seen at all, NULL when not.
CREATE OR REPLACE FUNCTION telemetry._severity(p_value numeric, p_warning numeric, p_critical numeric)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN p_value IS NULL OR p_value <= 0 THEN NULL
                WHEN p_value >= p_critical THEN 'critical'
                WHEN p_value >= p_warning THEN 'warning'
                ELSE 'info' END
$$;

-- Every join to a window's samples also bounds the sample table's own captured_at by the
-- window: it changes no result, and lets PostgreSQL read only the window's day partitions.

-- _wait_rows is, for each sample of the window, the session-seconds client sessions (not idle)
-- spent in each wait: the wait sampler's, where the Go recorder wrote them, else estimated from
-- the sample grid (pg_cron mode): the sessions seen times the samples' mean spacing. sessions
-- is the average number in the wait since the previous sample (NULL for the first): what the
-- report draws.
CREATE OR REPLACE FUNCTION telemetry._wait_rows(p_start_time timestamptz, p_end_time timestamptz, p_server text)
RETURNS TABLE (captured_at timestamptz, wait_event_type text, wait_event text, seconds numeric, sessions double precision)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH smp AS (SELECT s.id, s.captured_at,
                        extract(epoch FROM s.captured_at - lag(s.captured_at) OVER (ORDER BY s.captured_at)) AS since_previous
                 FROM telemetry.samples s
                 WHERE s.server = p_server AND s.captured_at BETWEEN p_start_time AND p_end_time),
    spacing AS (SELECT extract(epoch FROM p_end_time - p_start_time) / nullif(count(*), 0) AS seconds FROM smp),
    sampled AS (
        SELECT smp.captured_at, t.wait_event_type, t.wait_event, t.seconds::numeric AS seconds,
               t.seconds / nullif(smp.since_previous, 0)::float8 AS sessions
        FROM telemetry.wait_time_samples t JOIN smp ON smp.id = t.sample_id AND smp.captured_at = t.captured_at AND t.captured_at BETWEEN p_start_time AND p_end_time),
    grid AS (
        SELECT smp.captured_at, w.wait_event_type, w.wait_event, (sum(w.count) * min(spacing.seconds))::numeric AS seconds,
               sum(w.count)::float8 AS sessions
        FROM telemetry.wait_samples w JOIN smp ON smp.id = w.sample_id AND smp.captured_at = w.captured_at AND w.captured_at BETWEEN p_start_time AND p_end_time, spacing
        WHERE w.backend_type = 'client backend' AND w.state NOT LIKE 'idle%'
        GROUP BY 1, 2, 3)
    SELECT * FROM sampled UNION ALL SELECT * FROM grid WHERE NOT EXISTS (SELECT FROM sampled)
$$;

-- _window_waits is the session-seconds client sessions (not idle) spent in each wait in the
-- window: the wait sampler's, where the Go recorder wrote them, else estimated from the sample
-- grid (pg_cron mode): the sessions seen times the samples' mean spacing. From the rollups.
CREATE OR REPLACE FUNCTION telemetry._window_waits(p_start_time timestamptz, p_end_time timestamptz, p_server text)
RETURNS TABLE (wait_event_type text, wait_event text, seconds numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH sampled AS (SELECT * FROM telemetry._window_wait_times(p_start_time, p_end_time, p_server)),
    spacing AS (SELECT extract(epoch FROM p_end_time - p_start_time) / nullif(c.samples, 0) AS seconds
                FROM telemetry._window_sample_counts(p_start_time, p_end_time, p_server) c)
    SELECT * FROM sampled
    UNION ALL
    SELECT g.wait_event_type, g.wait_event, g.waiters * spacing.seconds
    FROM telemetry._window_wait_groups(p_start_time, p_end_time, p_server) g, spacing
    WHERE g.backend_type = 'client backend' AND NOT EXISTS (SELECT FROM sampled)
$$;

-- _snapshot_end is where compare() looks for a window's end snapshot: at or after its end,
-- except for a run in progress (_run_window ends its window at now()), whose end snapshot is
-- not taken yet: there the latest one after the start, so that the run is judged on what it
-- did so far. A window given an end in the future still finds no end snapshot, and says so.
CREATE OR REPLACE FUNCTION telemetry._snapshot_end(p_snapshot_start timestamptz, p_end_time timestamptz, p_server text)
RETURNS timestamptz LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN (
        SELECT CASE WHEN p_end_time <> now() THEN p_end_time
                    ELSE coalesce((SELECT max(s.captured_at) FROM telemetry.snapshots s
                                   WHERE s.server = p_server AND s.captured_at > p_snapshot_start AND s.captured_at <= p_end_time),
                                  p_end_time) END);
END
$$;

-- _diagnose_shared is what more than one pattern reads of a window, computed once by
-- _diagnose and given to each: "compare", compare()'s row for the window (to _snapshot_end;
-- null without a snapshot at both ends; a pattern reads its deltas with _shared_compare), and "waits", the client sessions'
-- session-seconds by wait (_window_waits; read them with _shared_waits).
CREATE OR REPLACE FUNCTION telemetry._diagnose_shared(p_start_time timestamptz, p_end_time timestamptz,
                                                      p_snapshot_start timestamptz, p_server text)
RETURNS jsonb LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object(
        'compare', (SELECT to_jsonb(c) FROM telemetry.compare(p_snapshot_start, telemetry._snapshot_end(p_snapshot_start, p_end_time, p_server), p_server) c),
        'waits', coalesce((SELECT jsonb_agg(to_jsonb(w)) FROM telemetry._window_waits(p_start_time, p_end_time, p_server) w), '[]'),
        'samples', (SELECT to_jsonb(c) FROM telemetry._window_sample_counts(p_start_time, p_end_time, p_server) c))
$$;

-- _shared_compare is the compare() row of a _diagnose_shared value: none where the window has no
-- snapshot at both ends.
CREATE OR REPLACE FUNCTION telemetry._shared_compare(p_shared jsonb)
RETURNS SETOF telemetry._snapshot_diff
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT c.* FROM jsonb_populate_record(NULL::telemetry._snapshot_diff, p_shared->'compare') c
    WHERE jsonb_typeof(p_shared->'compare') = 'object'
$$;

-- _shared_sample_counts is the window's _window_sample_counts as a _diagnose_shared value has
-- it (read once for diagnose's patterns and its own last row: four reads over the window
-- before), or read where the value has none.
CREATE OR REPLACE FUNCTION telemetry._shared_sample_counts(p_shared jsonb, p_start_time timestamptz, p_end_time timestamptz, p_server text)
RETURNS TABLE (samples bigint, lock_samples bigint, lock_max_waiters integer)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT (p_shared->'samples'->>'samples')::bigint, (p_shared->'samples'->>'lock_samples')::bigint,
           (p_shared->'samples'->>'lock_max_waiters')::integer
    WHERE jsonb_typeof(p_shared->'samples') = 'object'
    UNION ALL
    SELECT c.* FROM telemetry._window_sample_counts(p_start_time, p_end_time, p_server) c
    WHERE jsonb_typeof(p_shared->'samples') IS DISTINCT FROM 'object'
$$;

-- _shared_waits are the waits of a _diagnose_shared value.
CREATE OR REPLACE FUNCTION telemetry._shared_waits(p_shared jsonb)
RETURNS TABLE (wait_event_type text, wait_event text, seconds numeric)
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT w.wait_event_type, w.wait_event, w.seconds
    FROM jsonb_to_recordset(p_shared->'waits') AS w (wait_event_type text, wait_event text, seconds numeric)
$$;

-- _diagnose returns one row per finding, the most severe first, then the furthest past its
-- threshold. Each pattern is a function of diagnosis/patterns, telemetry._pattern_<name>,
-- over the same window: snapshot-based patterns use compare()'s window rule, the start
-- snapshot picked at p_snapshot_start; sample-based patterns use the samples between the two
-- times (_window_sample_counts and the rollups); what several read is computed once (_diagnose_shared).
-- _diagnose_findings (generated from the folders) is every registered pattern's findings.
-- The last row, "window", says what the window held.
CREATE OR REPLACE FUNCTION telemetry._diagnose(p_start_time timestamptz, p_end_time timestamptz,
                                               p_snapshot_start timestamptz, p_server text)
RETURNS TABLE (pattern text, severity text, summary text, evidence jsonb, recommendation text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    v_server text := telemetry._window_server(p_start_time, p_end_time, p_server);
    v_shared jsonb;
BEGIN
    IF p_end_time <= p_start_time THEN
        RAISE EXCEPTION 'the end (%) is not after the start (%)', p_end_time, p_start_time;
    END IF;
    v_shared := telemetry._diagnose_shared(p_start_time, p_end_time, p_snapshot_start, v_server);
    RETURN QUERY
    WITH
    f AS (SELECT * FROM telemetry._diagnose_findings(p_start_time, p_end_time, p_snapshot_start, v_server, v_shared)),
    cmp AS (SELECT (v_shared->'compare'->>'start_snapshot_at')::timestamptz AS start_snapshot_at,
                   (v_shared->'compare'->>'end_snapshot_at')::timestamptz AS end_snapshot_at
            WHERE jsonb_typeof(v_shared->'compare') = 'object'),
    nsmp AS (SELECT c.samples AS n FROM telemetry._shared_sample_counts(v_shared, p_start_time, p_end_time, v_server) c),
    wait_time AS (SELECT * FROM telemetry._shared_waits(v_shared))
    SELECT f.pattern, f.severity, f.summary, f.evidence, f.recommendation
    FROM (
        SELECT f.*, 0 AS last FROM f
        UNION ALL
        -- window: what the window held, and what its client sessions waited on most.
        SELECT 'window', 'info', -1,
               format('%s to %s: %s samples, %s; %s.', telemetry._ts(p_start_time), telemetry._ts(p_end_time), nsmp.n,
                      coalesce((SELECT format('snapshots %s to %s', telemetry._ts(start_snapshot_at), telemetry._ts(end_snapshot_at)) FROM cmp),
                               'no snapshots at both ends of the window'),
                      CASE WHEN EXISTS (SELECT FROM f WHERE f.severity <> 'info') THEN 'findings above'
                           ELSE 'no pattern above its threshold' END),
               jsonb_build_object('start_time', p_start_time, 'end_time', p_end_time, 'samples', nsmp.n,
                                  'start_snapshot_at', (SELECT start_snapshot_at FROM cmp), 'end_snapshot_at', (SELECT end_snapshot_at FROM cmp),
                                  'top_waits', (SELECT jsonb_agg(jsonb_build_object('wait_event_type', w.wait_event_type, 'wait_event', w.wait_event,
                                                                                    'session_seconds', round(w.seconds::numeric, 1)) ORDER BY w.seconds DESC)
                                                FROM (SELECT * FROM wait_time ORDER BY seconds DESC LIMIT 5) w)),
               NULL, 1
        FROM nsmp
    ) f
    ORDER BY f.last, CASE f.severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, f.score DESC NULLS LAST, f.pattern;
END
$$;

-- diagnose: the findings for a window, as the Quick Start's compare() takes it.
CREATE OR REPLACE FUNCTION telemetry.diagnose(p_start_time timestamptz, p_end_time timestamptz, p_server text DEFAULT NULL)
RETURNS TABLE (pattern text, severity text, summary text, evidence jsonb, recommendation text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM telemetry._diagnose(p_start_time, p_end_time, p_start_time, p_server)
$$;

INSERT INTO telemetry.diagnose_thresholds (name, value, unit, description) VALUES
    ('baseline_runs', 10, 'runs', 'diagnose_run compares a run with at most this many previous normal runs of its batch.'),
    ('baseline_floor_seconds', 0.5, 'seconds',
     'Smallest spread assumed for a measure in seconds: a move smaller than this is never unusual.'),
    ('baseline_floor_bytes', 8388608, 'bytes', 'Smallest spread assumed for a measure in bytes.'),
    ('baseline_floor_count', 1, 'count', 'Smallest spread assumed for a count (checkpoints, autovacuums).'),
    ('baseline_floor_buffers', 1024, 'buffers', 'Smallest spread assumed for buffer writes.')
ON CONFLICT (name) DO UPDATE SET unit = excluded.unit, description = excluded.description;

-- _runs_window are runs' windows, in the order given: each one's begin and end (now while it
-- runs), and where its start snapshot is looked for. A run whose times are out of range has
-- none: an error says so. Several runs at once (a run's baseline runs): a run's window by
-- itself was a fifth of a millisecond, mostly the checks' function calls.
CREATE OR REPLACE FUNCTION telemetry._runs_window(p_run_ids bigint[])
RETURNS TABLE (run_id bigint, batch text, status text, start_time timestamptz, end_time timestamptz,
               snapshot_start timestamptz, server text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    v_missing bigint;
BEGIN
    -- the check that raises, for the runs it would raise for
    PERFORM telemetry._check_time(r.started_at, format('run %s''s start', r.run_id)),
            telemetry._check_time(coalesce(r.ended_at, now()), format('run %s''s end', r.run_id))
    FROM telemetry.batch_runs r
    WHERE r.run_id = ANY (p_run_ids) AND (telemetry._time_ok(r.started_at) AND telemetry._time_ok(coalesce(r.ended_at, now()))) IS NOT TRUE;
    SELECT i.id INTO v_missing FROM unnest(p_run_ids) i (id)
    WHERE NOT EXISTS (SELECT FROM telemetry.batch_runs r WHERE r.run_id = i.id) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'no batch run with run_id %', v_missing;
    END IF;
    RETURN QUERY
    SELECT r.run_id, r.batch, r.status, r.started_at, e.end_time,
           telemetry._run_snapshot_start(r.started_at, r.ended_at, r.start_snapshot_at),
           r.server
    -- At least a millisecond long: a run that ended where it began (an end marker's time
    -- before its begin, a new run's begin before it) is a window all the same.
    FROM unnest(p_run_ids) WITH ORDINALITY i (id, n)
    JOIN telemetry.batch_runs r ON r.run_id = i.id,
    LATERAL (SELECT greatest(coalesce(r.ended_at, now()), r.started_at + interval '1 millisecond') AS end_time) e
    ORDER BY i.n;
END
$$;

-- _run_window is one run's window (_runs_window).
CREATE OR REPLACE FUNCTION telemetry._run_window(p_run_id bigint)
RETURNS TABLE (run_id bigint, batch text, status text, start_time timestamptz, end_time timestamptz,
               snapshot_start timestamptz, server text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN QUERY SELECT * FROM telemetry._runs_window(ARRAY[p_run_id]);
END
$$;

-- _wait_measures are the measures of a set of waits (a jsonb array of wait_event_type,
-- wait_event and seconds, as _diagnose_shared's "waits"), as the patterns declare them
-- (_wait_classes, generated from their folders): each measure summing a pattern's waits (0
-- without any) where p_measured says the waits were recorded at all, and every other wait a
-- measure of its own, wait:<type>:<event>, of the pattern that owns it (NULL: none). A wait
-- belongs to the most specific declaration: an exact event before a pattern of events, then an
-- exact type. plpgsql: _wait_classes is defined after this file, with the patterns.
CREATE OR REPLACE FUNCTION telemetry._wait_measures(p_waits jsonb, p_measured boolean)
RETURNS TABLE (measure text, pattern text, unit text, value numeric)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH classes AS (SELECT * FROM telemetry._wait_classes()),
    waits AS (
        SELECT w.wait_event_type, w.wait_event, w.seconds, c.pattern, c.measure
        FROM jsonb_to_recordset(p_waits) AS w (wait_event_type text, wait_event text, seconds numeric)
        LEFT JOIN LATERAL (SELECT c.pattern, c.measure FROM classes c
                           WHERE w.wait_event_type LIKE c.wait_event_type AND w.wait_event LIKE c.wait_event
                           ORDER BY c.wait_event LIKE '%\%%', c.wait_event_type LIKE '%\%%', c.pattern LIMIT 1) c ON true)
    SELECT s.measure, s.pattern, 'seconds', round(coalesce(sum(w.seconds), 0), 2)
    FROM (SELECT DISTINCT c.pattern, c.measure FROM classes c WHERE c.measure IS NOT NULL) s
    LEFT JOIN waits w ON w.measure = s.measure
    WHERE p_measured
    GROUP BY s.measure, s.pattern
    UNION ALL
    SELECT 'wait:' || w.wait_event_type || ':' || w.wait_event, w.pattern, 'seconds', round(w.seconds, 2)
    FROM waits w WHERE w.measure IS NULL;
END
$$;

-- _summed_wait_measures are the measures that sum a pattern's waits (_wait_measures): a run
-- that has one had its waits recorded.
CREATE OR REPLACE FUNCTION telemetry._summed_wait_measures()
RETURNS SETOF text LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN QUERY SELECT DISTINCT c.measure FROM telemetry._wait_classes() c WHERE c.measure IS NOT NULL;
END
$$;

-- _window_measures is what diagnose_run compares, for one window: its duration, each
-- pattern's measures (_window_pattern_measures, generated from their folders: compare()'s row
-- and the waits are computed once, _diagnose_shared) and the waits' (_wait_measures), those of
-- p_own_waits where given (a run's own sessions', as _wait_measures takes them), else the
-- window's client sessions' where it has samples. plpgsql: _window_pattern_measures is
-- defined after this file, with the patterns.
DROP FUNCTION IF EXISTS telemetry._window_measures(timestamptz, timestamptz, timestamptz, text);
DROP FUNCTION IF EXISTS telemetry._wait_pattern(text, text);
CREATE OR REPLACE FUNCTION telemetry._window_measures(p_start_time timestamptz, p_end_time timestamptz,
                                                      p_snapshot_start timestamptz, p_server text, p_own_waits jsonb)
RETURNS TABLE (measure text, pattern text, unit text, value numeric)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_server text := telemetry._resolve_server(p_server);
    v_shared jsonb := telemetry._diagnose_shared(p_start_time, p_end_time, p_snapshot_start, v_server);
BEGIN
    RETURN QUERY
    SELECT 'duration', NULL, 'seconds', round(extract(epoch FROM p_end_time - p_start_time), 1)
    UNION ALL
    SELECT * FROM telemetry._window_pattern_measures(p_start_time, p_end_time, p_snapshot_start, v_server, v_shared)
    UNION ALL
    SELECT * FROM telemetry._wait_measures(coalesce(p_own_waits, v_shared->'waits'),
                                           p_own_waits IS NOT NULL OR (SELECT c.samples > 0 FROM telemetry._shared_sample_counts(v_shared, p_start_time, p_end_time, v_server) c));
END
$$;

-- _run_part_window is the first p_seconds of a run's window (NULL: all of it): the same
-- elapsed part of a baseline run that a running run has reached.
CREATE OR REPLACE FUNCTION telemetry._run_part_window(p_run_id bigint, p_seconds numeric)
RETURNS TABLE (run_id bigint, batch text, status text, start_time timestamptz, end_time timestamptz,
               snapshot_start timestamptz, server text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT w.run_id, w.batch, w.status, w.start_time,
           CASE WHEN p_seconds IS NULL THEN w.end_time
                ELSE least(w.end_time, w.start_time + p_seconds * interval '1 second') END,
           w.snapshot_start, w.server
    FROM telemetry._run_window(p_run_id) w
$$;

-- _run_part_session_waits is run_session_waits over the first p_seconds of the run (NULL: all).
CREATE OR REPLACE FUNCTION telemetry._run_part_session_waits(p_run_id bigint, p_seconds numeric)
RETURNS TABLE (sessions text, wait_event_type text, wait_event text, session_seconds numeric)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT CASE WHEN b.own THEN 'batch' ELSE 'other' END, b.wait_event_type, b.wait_event, round(sum(b.seconds)::numeric, 2)
    FROM telemetry._run_part_window(p_run_id, p_seconds) w, LATERAL (SELECT telemetry._resolve_server(w.server) AS server) srv,
         telemetry.batch_wait_samples b
    -- non-idle sessions: an own session's time between statements is the run account's
    WHERE b.server = srv.server AND b.batch = w.batch AND b.captured_at BETWEEN w.start_time AND w.end_time
      AND b.state = 'active'
    GROUP BY b.own, b.wait_event_type, b.wait_event
    ORDER BY b.own DESC, 4 DESC, 2, 3;
END
$$;

-- run_session_waits: a run's session-seconds by wait, of its own sessions (sessions 'batch':
-- those its rule, exec --batch or batch_begin's session make the batch's) and of every other
-- client session during it ('other'), from the batch tracker's split of the wait sampler. No
-- rows where the run was recorded without it (pg_cron mode): its findings then judge the
-- whole server.
CREATE OR REPLACE FUNCTION telemetry.run_session_waits(p_run_id bigint)
RETURNS TABLE (sessions text, wait_event_type text, wait_event text, session_seconds numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM telemetry._run_part_session_waits(p_run_id, NULL)
$$;

-- _run_part_measures are _run_measures of the first p_seconds of a run (NULL: all of it).
CREATE OR REPLACE FUNCTION telemetry._run_part_measures(p_run_id bigint, p_own_sessions boolean, p_seconds numeric)
RETURNS TABLE (measure text, pattern text, unit text, value numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH own AS (SELECT jsonb_agg(jsonb_build_object('wait_event_type', o.wait_event_type, 'wait_event', o.wait_event,
                                                     'seconds', o.session_seconds)) AS waits
                 FROM telemetry._run_part_session_waits(p_run_id, p_seconds) o WHERE p_own_sessions AND o.sessions = 'batch')
    SELECT m.* FROM telemetry._run_part_window(p_run_id, p_seconds) w, own,
           LATERAL telemetry._window_measures(w.start_time, w.end_time, w.snapshot_start, w.server, own.waits) m
$$;

-- _run_results_fingerprint is what a run's stored results (run_results) were computed under,
-- beside the run's own times: the schema's migrations and definitions, the thresholds and the
-- tracked tables. A change to any of them computes them again.
CREATE OR REPLACE FUNCTION telemetry._run_results_fingerprint()
RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT md5(concat_ws('|',
        coalesce((SELECT string_agg(m.name || ':' || m.checksum, ',' ORDER BY m.name) FROM telemetry.schema_migrations m), ''),
        coalesce((SELECT string_agg(t.name || '=' || t.value, ',' ORDER BY t.name) FROM telemetry.diagnose_thresholds t), ''),
        coalesce((SELECT string_agg(x.relid || ':' || x.schemaname || '.' || x.relname, ',' ORDER BY x.relid) FROM telemetry.tracked_tables x), '')))
$$;

-- _run_results_hold tells whether a run's stored results still hold for it: the same times,
-- server (a run without one is the only server's: none once there are several) and
-- fingerprint.
CREATE OR REPLACE FUNCTION telemetry._run_results_hold(p_stored telemetry.run_results, p_run telemetry.batch_runs, p_fingerprint text)
RETURNS boolean LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT p_stored.started_at = p_run.started_at AND p_stored.ended_at = p_run.ended_at
       AND p_stored.start_snapshot_at IS NOT DISTINCT FROM p_run.start_snapshot_at
       AND p_stored.server IS NOT DISTINCT FROM p_run.server AND p_stored.fingerprint = p_fingerprint
       AND (p_run.server IS NOT NULL OR (SELECT count(*) FROM telemetry.servers) = 1)
$$;

-- _runs_settled tells of each run given whether its stored results (settle_run) are complete
-- and still hold (_run_results_hold; retention deletes them with the data they were read from,
-- in the same transaction, never while one is settled: telemetry._retention_lock). Else its
-- readers compute from the data. A session that SET telemetry.rollups = off reads none (the raw
-- answer, which the tests compare with). The readers test it in a condition on the runs alone
-- (a one-time filter, or a filter of the runs before the lateral computation), so that the
-- computation from the data never runs where stored results answer (as a join, the planner may
-- call it first). A run and its baseline runs are asked at once: the fingerprint is computed
-- once (a tenth of a millisecond each time). A row for each element given, in their order: a
-- NULL id is not settled (its readers' computation raises, as for a run that does not exist).
-- ROWS 10, a run and its baseline runs: its readers join each to its stored results by key (at
-- the default 1000 rows, the planner hashed every run's).
CREATE OR REPLACE FUNCTION telemetry._runs_settled(p_run_ids bigint[])
RETURNS TABLE (run_id bigint, settled boolean)
LANGUAGE plpgsql STABLE ROWS 10 SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    v_fingerprint text := telemetry._run_results_fingerprint();
BEGIN
    RETURN QUERY
    SELECT i.id, coalesce(bool_and(x.complete AND telemetry._run_results_hold(x, r, v_fingerprint)), false)
                 AND coalesce(current_setting('telemetry.rollups', true), '') <> 'off'
    FROM unnest(p_run_ids) WITH ORDINALITY i (id, n)
    LEFT JOIN (telemetry.run_results x JOIN telemetry.batch_runs r ON r.run_id = x.run_id) ON x.run_id = i.id
    GROUP BY i.n, i.id
    ORDER BY i.n;
END
$$;

-- _run_settled: one run's.
CREATE OR REPLACE FUNCTION telemetry._run_settled(p_run_id bigint)
RETURNS boolean LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT s.settled FROM telemetry._runs_settled(ARRAY[p_run_id]) s
$$;

-- _runs_measures are _window_measures of runs, their waits those of their own sessions when
-- p_own_sessions (diagnose_run asks where the run and its baseline runs all had them recorded
-- apart, so that both sides are measured alike): what the batch waited on. Stored once a run
-- is settled; each run's in their order.
CREATE OR REPLACE FUNCTION telemetry._runs_measures(p_run_ids bigint[], p_own_sessions boolean)
RETURNS TABLE (run_id bigint, measure text, pattern text, unit text, value numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH runs AS (SELECT s.run_id AS id, s.settled FROM telemetry._runs_settled(p_run_ids) s)
    SELECT runs.id, x.*
    FROM runs CROSS JOIN LATERAL (SELECT x.measure, x.pattern, x.unit, x.value FROM telemetry.run_result_measures x
                                  WHERE x.run_id = runs.id AND x.own = p_own_sessions ORDER BY x.ord) x
    WHERE runs.settled
    UNION ALL
    SELECT runs.id, m.* FROM runs, LATERAL telemetry._run_part_measures(runs.id, p_own_sessions, NULL) m WHERE NOT runs.settled
$$;

-- _run_measures: one run's (_runs_measures).
CREATE OR REPLACE FUNCTION telemetry._run_measures(p_run_id bigint, p_own_sessions boolean)
RETURNS TABLE (measure text, pattern text, unit text, value numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT m.measure, m.pattern, m.unit, m.value FROM telemetry._runs_measures(ARRAY[p_run_id], p_own_sessions) m
$$;

-- _measure_text shows a measure's value in its unit.
CREATE OR REPLACE FUNCTION telemetry._measure_text(p_value numeric, p_unit text)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN p_value IS NULL THEN 'unknown'
                WHEN p_unit = 'bytes' THEN telemetry._pretty_bytes(round(p_value)::bigint)
                WHEN p_unit = 'seconds' THEN round(p_value, 1) || ' s'
                ELSE round(p_value, 1) || ' ' || p_unit END
$$;

-- _normal_runs_before is the definition of a baseline: the batch's normal runs (succeeded, or
-- ended when detected) begun before p_before, at most baseline_runs of them, the latest first.
CREATE OR REPLACE FUNCTION telemetry._normal_runs_before(p_batch text, p_before timestamptz)
RETURNS TABLE (run_id bigint, started_at timestamptz, ended_at timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT r.run_id, r.started_at, r.ended_at FROM telemetry.batch_runs_checked r
    WHERE r.batch = p_batch AND r.status IN ('succeeded', 'ended') AND r.started_at < p_before AND r.times_ok
      -- a run named for a server nothing was recorded of has no data to compare
      AND (r.server IS NULL OR EXISTS (SELECT FROM telemetry.servers s WHERE s.server = r.server))
    ORDER BY r.started_at DESC LIMIT telemetry._threshold('baseline_runs')::bigint
$$;

-- _baseline_runs are a run's baseline (_normal_runs_before its start), with their windows.
CREATE OR REPLACE FUNCTION telemetry._baseline_runs(p_run_id bigint)
RETURNS TABLE (run_id bigint, batch text, status text, start_time timestamptz, end_time timestamptz,
               snapshot_start timestamptz, server text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT bw.* FROM telemetry._run_window(p_run_id) w,
    LATERAL telemetry._runs_window(ARRAY(SELECT b.run_id FROM telemetry._normal_runs_before(w.batch, w.start_time) b)) bw
$$;

-- _runs_own_recorded tells of each run given whether it had its own sessions' waits recorded
-- apart.
CREATE OR REPLACE FUNCTION telemetry._runs_own_recorded(p_run_ids bigint[])
RETURNS TABLE (run_id bigint, own_recorded boolean)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT s.id, CASE WHEN s.settled THEN (SELECT x.own_recorded FROM telemetry.run_results x WHERE x.run_id = s.id)
                      ELSE EXISTS (SELECT FROM telemetry.run_session_waits(s.id) x WHERE x.sessions = 'batch') END
    FROM telemetry._runs_settled(p_run_ids) s (id, settled)
$$;

-- _run_own_recorded: one run's (_runs_own_recorded).
CREATE OR REPLACE FUNCTION telemetry._run_own_recorded(p_run_id bigint)
RETURNS boolean LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT o.own_recorded FROM telemetry._runs_own_recorded(ARRAY[p_run_id]) o
$$;

-- _own_sessions_recorded tells whether a run and all its baseline runs had their own
-- sessions' waits recorded apart (run_session_waits): only then are both sides measured by
-- what the batch's own sessions waited on.
CREATE OR REPLACE FUNCTION telemetry._own_sessions_recorded(p_run_id bigint)
RETURNS boolean LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT bool_and(o.own_recorded)
    FROM telemetry._runs_own_recorded(ARRAY[p_run_id] || ARRAY(SELECT b.run_id FROM telemetry._baseline_runs(p_run_id) b)) o
$$;

-- diagnose_run compares a recorded run with the median of its batch's previous normal runs
-- (succeeded, or ended when detected): rank 0 is the run's duration, the symptom; ranks 1 and
-- up are the measures by how unusual they are: the distance from the median in robust
-- standard deviations (1.4826 × the median absolute deviation, at least a tenth of the
-- median and the unit's floor). A wait the earlier runs never had counts as 0 for them.
CREATE OR REPLACE FUNCTION telemetry.diagnose_run(p_run_id bigint)
RETURNS TABLE (rank integer, measure text, pattern text, unit text, value numeric, baseline_median numeric,
               baseline_runs integer, change_pct numeric, score numeric, summary text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH w AS (SELECT * FROM telemetry._run_window(p_run_id)),
    base AS (SELECT * FROM telemetry._baseline_runs(p_run_id)),
    own AS (SELECT telemetry._own_sessions_recorded(p_run_id) AS yes),
    cur AS (SELECT m.* FROM own, LATERAL telemetry._run_measures(p_run_id, own.yes) m),
    basem AS (SELECT m.* FROM own, LATERAL telemetry._runs_measures(ARRAY(SELECT base.run_id FROM base), own.yes) m),
    vals AS (
        SELECT c.measure, b.run_id,
               CASE WHEN bm.value IS NOT NULL THEN bm.value
                    WHEN c.measure LIKE 'wait:%' AND EXISTS (SELECT FROM basem x WHERE x.run_id = b.run_id
                                                             AND x.measure IN (SELECT telemetry._summed_wait_measures())) THEN 0
               END AS value
        FROM cur c CROSS JOIN base b
        LEFT JOIN basem bm ON bm.run_id = b.run_id AND bm.measure = c.measure),
    med AS (SELECT v.measure, percentile_cont(0.5) WITHIN GROUP (ORDER BY v.value)::numeric AS median, count(v.value)::int AS runs
            FROM vals v GROUP BY v.measure),
    mad AS (SELECT v.measure, percentile_cont(0.5) WITHIN GROUP (ORDER BY abs(v.value - m.median))::numeric AS mad
            FROM vals v JOIN med m ON m.measure = v.measure GROUP BY v.measure),
    scored AS (
        SELECT c.measure, c.pattern, c.unit, c.value, m.median, coalesce(m.runs, 0) AS runs,
               round(100 * (c.value - m.median) / nullif(m.median, 0), 1) AS change_pct,
               round((c.value - m.median) / greatest(1.4826 * d.mad, 0.1 * abs(m.median),
                   telemetry._threshold('baseline_floor_' || c.unit)), 1) AS score
        FROM cur c LEFT JOIN med m ON m.measure = c.measure AND m.runs > 0 LEFT JOIN mad d ON d.measure = c.measure)
    SELECT CASE WHEN s.measure = 'duration' THEN 0
                ELSE row_number() OVER (PARTITION BY s.measure = 'duration' ORDER BY s.score DESC NULLS LAST, s.value DESC NULLS LAST, s.measure) END::int,
           s.measure, s.pattern, s.unit, s.value, s.median, s.runs, s.change_pct, s.score,
           CASE WHEN s.runs = 0 THEN format('%s: %s; no previous normal run of %s to compare with.',
                                            s.measure, telemetry._measure_text(s.value, s.unit), (SELECT batch FROM w))
                ELSE format('%s: %s against a median of %s over %s previous normal run(s)%s.',
                            s.measure, telemetry._measure_text(s.value, s.unit), telemetry._measure_text(s.median, s.unit), s.runs,
                            CASE WHEN s.score IS NOT NULL THEN format(' (%s robust SD %s)', abs(s.score), CASE WHEN s.score >= 0 THEN 'above' ELSE 'below' END) END)
           END
    FROM scored s
    ORDER BY 1
$$;

INSERT INTO telemetry.diagnose_thresholds (name, value, unit, description) VALUES
    ('usual_duration_min_runs', 3, 'runs',
     'A batch''s usual duration (run_usual_duration, pgbatch_batch_usual_duration_seconds) is given once its baseline holds this many normal runs.')
ON CONFLICT (name) DO UPDATE SET unit = excluded.unit, description = excluded.description;

-- run_usual_duration: how long a run's batch usually takes, from the run's baseline
-- (_normal_runs_before its start, as _baseline_runs): their median and 90th percentile
-- duration. No row before the baseline holds usual_duration_min_runs runs.
CREATE OR REPLACE FUNCTION telemetry.run_usual_duration(p_run_id bigint)
RETURNS TABLE (baseline_runs integer, median_seconds double precision, p90_seconds double precision)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT count(*)::int,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM b.ended_at - b.started_at)),
           percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM b.ended_at - b.started_at))
    FROM telemetry.batch_runs r, LATERAL telemetry._normal_runs_before(r.batch, r.started_at) b
    WHERE r.run_id = p_run_id
    HAVING count(*) >= telemetry._threshold('usual_duration_min_runs')
$$;

-- batch_run_durations: the runs started since p_since (and every open one), at most
-- p_per_batch of each batch (NULL: all), of at most p_batches batches, those with the latest
-- runs (NULL: all), by batch and newest first, each with its duration (so far, while it runs)
-- against its usual (run_usual_duration); slow is a run past the usual 90th percentile by
-- more than baseline_floor_seconds, the move diagnose_run never finds unusual (NULL without a
-- usual yet): runs of a second or less differ by milliseconds of scheduling alone. The
-- report's index and the overview dashboard list them, bounded: a batch role may name as many
-- batches as it likes, and each run's usual is a baseline read.
DROP FUNCTION IF EXISTS telemetry.batch_run_durations(timestamptz, integer);
CREATE OR REPLACE FUNCTION telemetry.batch_run_durations(p_since timestamptz DEFAULT now() - interval '7 days',
                                                         p_per_batch integer DEFAULT NULL, p_batches integer DEFAULT NULL)
RETURNS TABLE (run_id bigint, batch text, started_at timestamptz, ended_at timestamptz, status text, source text,
               duration_seconds double precision, usual_median_seconds double precision, usual_p90_seconds double precision,
               baseline_runs integer, slow boolean)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH runs AS (
        SELECT r.*, row_number() OVER (PARTITION BY r.batch ORDER BY r.started_at DESC, r.run_id DESC) AS nth
        FROM telemetry.batch_runs_checked r
        -- p_since checked as every time a caller passes (NULL listed only the open runs)
        WHERE (r.started_at >= telemetry._check_time(p_since, 'the runs'' earliest start') OR r.status = 'running')
          AND r.times_ok),
    batches AS (SELECT r.batch FROM runs r WHERE r.nth = 1 ORDER BY r.started_at DESC, r.batch LIMIT p_batches)
    SELECT r.run_id, r.batch, r.started_at, r.ended_at, r.status, r.source, d.seconds,
           u.median_seconds, u.p90_seconds, u.baseline_runs,
           d.seconds > u.p90_seconds + telemetry._threshold('baseline_floor_seconds')
    FROM runs r JOIN batches b ON b.batch = r.batch
    CROSS JOIN LATERAL (SELECT extract(epoch FROM coalesce(r.ended_at, now()) - r.started_at)::float8 AS seconds) d
    LEFT JOIN LATERAL telemetry.run_usual_duration(r.run_id) u ON true
    WHERE p_per_batch IS NULL OR r.nth <= p_per_batch
    ORDER BY r.batch, r.started_at DESC, r.run_id DESC
$$;

-- run_so_far: a run's measures (while it runs: up to now) against its baseline runs' median
-- over their whole runs and over the same elapsed part of them (their first elapsed_seconds;
-- snapshot-based measures of a part are those of the snapshots nearest its end). A wait a
-- baseline run never had counts as 0 for it, as in diagnose_run.
CREATE OR REPLACE FUNCTION telemetry.run_so_far(p_run_id bigint)
RETURNS TABLE (measure text, pattern text, unit text, value numeric, elapsed_seconds numeric, baseline_runs integer,
               baseline_median_whole numeric, baseline_median_same_elapsed numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH el AS (SELECT extract(epoch FROM w.end_time - w.start_time) AS seconds FROM telemetry._run_window(p_run_id) w),
    base AS (SELECT b.run_id FROM telemetry._baseline_runs(p_run_id) b),
    own AS (SELECT telemetry._own_sessions_recorded(p_run_id) AS yes),
    cur AS (SELECT m.* FROM own, LATERAL telemetry._run_measures(p_run_id, own.yes) m),
    parts AS (SELECT 'whole' AS part, m.* FROM own, LATERAL telemetry._runs_measures(ARRAY(SELECT b.run_id FROM base b), own.yes) m
              UNION ALL
              SELECT 'same_elapsed', b.run_id, m.* FROM base b, own, el, LATERAL telemetry._run_part_measures(b.run_id, own.yes, el.seconds) m),
    vals AS (SELECT c.measure, p.part, b.run_id,
                    coalesce(m.value, CASE WHEN c.measure LIKE 'wait:%' THEN 0 END) AS value
             FROM cur c CROSS JOIN base b CROSS JOIN (VALUES ('whole'), ('same_elapsed')) p (part)
             LEFT JOIN parts m ON m.part = p.part AND m.run_id = b.run_id AND m.measure = c.measure)
    SELECT c.measure, c.pattern, c.unit, c.value, round(el.seconds, 1), (SELECT count(*) FROM base)::int,
           (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v.value) FROM vals v WHERE v.measure = c.measure AND v.part = 'whole')::numeric,
           (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v.value) FROM vals v WHERE v.measure = c.measure AND v.part = 'same_elapsed')::numeric
    FROM cur c, el
    ORDER BY c.measure = 'duration' DESC, c.measure
$$;
