-- Statements: pg_stat_statements per snapshot, stored as deltas (only the entries whose calls
-- changed since the recorder's previous snapshot, every entry at a requested snapshot: a
-- batch's boundaries), their texts once per server and queryid, and the wait sampler's
-- session-seconds by statement.

-- An entry's counters as of the snapshot; an entry absent from a snapshot is unchanged since
-- the last row before it.
CREATE TABLE IF NOT EXISTS telemetry.statement_snapshots (
    snapshot_id integer,
    userid oid NOT NULL,
    dbid oid NOT NULL,
    toplevel boolean NOT NULL,
    queryid bigint NOT NULL,
    datname text,
    username text,
    calls bigint NOT NULL,
    plans bigint NOT NULL,
    total_plan_time double precision NOT NULL,
    total_exec_time double precision NOT NULL,
    rows bigint NOT NULL,
    shared_blks_hit bigint NOT NULL,
    shared_blks_read bigint NOT NULL,
    shared_blks_dirtied bigint NOT NULL,
    shared_blks_written bigint NOT NULL,
    local_blks_read bigint NOT NULL,
    local_blks_written bigint NOT NULL,
    temp_blks_read bigint NOT NULL,
    temp_blks_written bigint NOT NULL,
    -- Data file blocks, shared and local: blk_read_time before 17, shared_ + local_ from 17.
    blk_read_time double precision NOT NULL,
    blk_write_time double precision NOT NULL,
    wal_records bigint NOT NULL,
    wal_fpi bigint NOT NULL,
    wal_bytes bigint NOT NULL,
    wal_buffers_full bigint,          -- 18
    stats_since timestamptz,          -- 17: when the entry started counting
    server text NOT NULL,
    captured_at timestamptz NOT NULL,
    PRIMARY KEY (snapshot_id, userid, dbid, toplevel, queryid, captured_at)
) PARTITION BY RANGE (captured_at);

-- pg_stat_statements as a whole at each snapshot where it could be read.
CREATE TABLE IF NOT EXISTS telemetry.statement_info_snapshots (
    snapshot_id integer,
    dealloc bigint NOT NULL,          -- entries evicted since stats_reset
    stats_reset timestamptz NOT NULL,
    entries integer NOT NULL,
    full_read boolean NOT NULL,       -- every entry stored, not only the changed ones
    server text NOT NULL,
    captured_at timestamptz NOT NULL,
    PRIMARY KEY (snapshot_id, captured_at)
) PARTITION BY RANGE (captured_at);

-- Query texts, truncated by the exporter, once per server and queryid.
CREATE TABLE IF NOT EXISTS telemetry.statement_texts (
    server text NOT NULL,
    queryid bigint NOT NULL,
    query text NOT NULL,
    first_seen timestamptz NOT NULL,
    PRIMARY KEY (server, queryid)
);

-- The wait sampler's session-seconds by statement since the previous sample (queryid 0: no
-- statement could be found for them).
CREATE TABLE IF NOT EXISTS telemetry.statement_wait_samples (
    sample_id integer,
    queryid bigint NOT NULL,
    wait_event_type text NOT NULL,
    wait_event text NOT NULL,
    seconds double precision NOT NULL,
    server text NOT NULL,
    captured_at timestamptz NOT NULL,
    PRIMARY KEY (sample_id, queryid, wait_event_type, wait_event, captured_at)
) PARTITION BY RANGE (captured_at);

-- _statements_at: each entry's counters as of the snapshot at p_at (the last row at or before
-- it), with the snapshot's pg_stat_statements reset time.
CREATE OR REPLACE FUNCTION telemetry._statements_at(p_at timestamptz, p_server text)
RETURNS SETOF telemetry.statement_snapshots
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT DISTINCT ON (userid, dbid, toplevel, queryid) *
    FROM telemetry.statement_snapshots
    WHERE server = p_server AND captured_at <= p_at
    ORDER BY userid, dbid, toplevel, queryid, captured_at DESC
$$;

-- statement_compare: the statements of a window (between the snapshots compare() uses),
-- ranked by their planning and execution time in it. status says how far a row's deltas hold:
--   ok       both ends known, counters only grew;
--   new      no entry at the start: it appeared in the window (created, or back after an
--            eviction): the counts are those since it appeared, a lower bound;
--   reset    the counters went back (pg_stat_statements_reset, or evicted and re-created):
--            the deltas are NULL, never negative.
-- evicted is true when pg_stat_statements evicted entries during the window (dealloc rose):
-- statements missing here may have run.
CREATE OR REPLACE FUNCTION telemetry.statement_compare(p_start_time timestamptz, p_end_time timestamptz, p_server text DEFAULT NULL)
RETURNS TABLE (
    queryid bigint, datname text, username text, toplevel boolean, query text, status text,
    calls bigint, rows bigint, total_seconds numeric, seconds_per_call numeric,
    shared_blks_hit bigint, shared_blks_read bigint, blocks_per_call numeric,
    temp_blks_written bigint, wal_bytes bigint, sampled_waits jsonb, evicted boolean)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH srv AS (SELECT telemetry._resolve_server(p_server) AS server),
    -- The window's ends are snapshots that read pg_stat_statements: one that did not (the
    -- collector failed, or a pg_cron snapshot) would make the deltas silently short.
    w AS (SELECT s.snapshot_id AS start_id, s.captured_at AS start_at, e.snapshot_id AS end_id, e.captured_at AS end_at
          FROM srv,
          LATERAL (SELECT snapshot_id, captured_at FROM telemetry.statement_info_snapshots
                   WHERE server = srv.server AND captured_at <= p_start_time ORDER BY captured_at DESC LIMIT 1) s,
          LATERAL (SELECT snapshot_id, captured_at FROM telemetry.statement_info_snapshots
                   WHERE server = srv.server AND captured_at >= p_end_time ORDER BY captured_at LIMIT 1) e),
    info AS (
        SELECT (SELECT i.dealloc FROM telemetry.statement_info_snapshots i, w WHERE i.snapshot_id = w.start_id AND i.captured_at = w.start_at) AS dealloc_start,
               (SELECT i.stats_reset FROM telemetry.statement_info_snapshots i, w WHERE i.snapshot_id = w.start_id AND i.captured_at = w.start_at) AS reset_start,
               (SELECT i.dealloc FROM telemetry.statement_info_snapshots i, w WHERE i.snapshot_id = w.end_id AND i.captured_at = w.end_at) AS dealloc_end,
               (SELECT i.stats_reset FROM telemetry.statement_info_snapshots i, w WHERE i.snapshot_id = w.end_id AND i.captured_at = w.end_at) AS reset_end),
    e AS (SELECT x.* FROM srv, w, telemetry._statements_at(w.end_at, srv.server) x WHERE x.captured_at > w.start_at),
    s AS (SELECT x.* FROM srv, w, telemetry._statements_at(w.start_at, srv.server) x),
    pairs AS (
        SELECT e.*, s.calls AS s_calls,
               CASE WHEN s.queryid IS NULL THEN 'new'
                    WHEN e.calls < s.calls OR e.stats_since IS DISTINCT FROM s.stats_since
                         OR info.reset_end IS DISTINCT FROM info.reset_start THEN 'reset'
                    ELSE 'ok' END AS status,
               s.total_plan_time AS s_plan, s.total_exec_time AS s_exec, s.rows AS s_rows,
               s.shared_blks_hit AS s_hit, s.shared_blks_read AS s_read, s.temp_blks_written AS s_temp, s.wal_bytes AS s_wal
        FROM e LEFT JOIN s USING (userid, dbid, toplevel, queryid), info),
    d AS (
        SELECT p.queryid, p.datname, p.username, p.toplevel, p.status,
               CASE p.status WHEN 'ok' THEN p.calls - p.s_calls WHEN 'new' THEN p.calls END AS calls,
               CASE p.status WHEN 'ok' THEN p.rows - p.s_rows WHEN 'new' THEN p.rows END AS rows,
               CASE p.status WHEN 'ok' THEN (p.total_plan_time + p.total_exec_time - p.s_plan - p.s_exec) / 1000
                             WHEN 'new' THEN (p.total_plan_time + p.total_exec_time) / 1000 END AS seconds,
               CASE p.status WHEN 'ok' THEN p.shared_blks_hit - p.s_hit WHEN 'new' THEN p.shared_blks_hit END AS hit,
               CASE p.status WHEN 'ok' THEN p.shared_blks_read - p.s_read WHEN 'new' THEN p.shared_blks_read END AS read,
               CASE p.status WHEN 'ok' THEN p.temp_blks_written - p.s_temp WHEN 'new' THEN p.temp_blks_written END AS temp,
               CASE p.status WHEN 'ok' THEN p.wal_bytes - p.s_wal WHEN 'new' THEN p.wal_bytes END AS wal
        FROM pairs p),
    waits AS (
        SELECT t.queryid, jsonb_object_agg(t.wait, t.seconds) AS waits
        FROM (SELECT ws.queryid, ws.wait_event_type || ':' || ws.wait_event AS wait, round(sum(ws.seconds)::numeric, 1) AS seconds
              FROM telemetry.statement_wait_samples ws, srv, w
              WHERE ws.server = srv.server AND ws.captured_at > w.start_at AND ws.captured_at <= w.end_at
              GROUP BY 1, 2) t
        GROUP BY 1)
    SELECT d.queryid, d.datname, d.username, d.toplevel, tx.query, d.status,
           d.calls, d.rows, round(d.seconds::numeric, 3), round((d.seconds / nullif(d.calls, 0))::numeric, 6),
           d.hit, d.read, round(((d.hit + d.read)::numeric / nullif(d.calls, 0)), 1),
           d.temp, d.wal, waits.waits,
           coalesce((SELECT dealloc_end > dealloc_start FROM info), false)
    FROM d
    CROSS JOIN srv
    LEFT JOIN telemetry.statement_texts tx ON tx.server = srv.server AND tx.queryid = d.queryid
    LEFT JOIN waits ON waits.queryid = d.queryid AND d.toplevel
    WHERE d.calls IS DISTINCT FROM 0
    ORDER BY d.seconds DESC NULLS LAST, d.queryid
$$;

INSERT INTO telemetry.diagnose_thresholds (name, value, unit, description) VALUES
    ('statement_min_extra_seconds', 0.5, 'seconds',
     'A statement is a finding when it took at least this much longer than its baseline median (and at least a tenth of the run''s extra duration).'),
    ('statement_slower_ratio', 1.5, 'ratio',
     'statement_regression: time per call at least this many times its baseline median.'),
    ('statement_more_work_ratio', 1.5, 'ratio',
     'more_work: calls or rows at least this many times their baseline median.'),
    ('statement_plan_change_ratio', 3, 'ratio',
     'statement_regression says "plan probably changed" when blocks per row rose this many times at about the same rows.')
ON CONFLICT (name) DO NOTHING;

-- _window_statements: statement_compare summed per top-level queryid (nested statements' time
-- is inside their caller's). status: reset where any entry was reset, new where any appeared.
CREATE OR REPLACE FUNCTION telemetry._window_statements(p_start_time timestamptz, p_end_time timestamptz, p_server text)
RETURNS TABLE (queryid bigint, query text, status text, calls bigint, rows bigint, seconds numeric,
               blocks bigint, temp_blks bigint, wal_bytes bigint, sampled_waits jsonb, evicted boolean)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT c.queryid, min(c.query),
           CASE WHEN bool_or(c.status = 'reset') THEN 'reset' WHEN bool_or(c.status = 'new') THEN 'new' ELSE 'ok' END,
           sum(c.calls)::bigint, sum(c.rows)::bigint, sum(c.total_seconds),
           sum(c.shared_blks_hit + c.shared_blks_read)::bigint, sum(c.temp_blks_written)::bigint, sum(c.wal_bytes)::bigint,
           (array_agg(c.sampled_waits) FILTER (WHERE c.sampled_waits IS NOT NULL))[1], bool_or(c.evicted)
    FROM telemetry.statement_compare(p_start_time, p_end_time, p_server) c
    WHERE c.toplevel
    GROUP BY c.queryid
$$;

-- run_statements: each statement of a run against the median of the batch's previous normal
-- runs (a run without the statement counts 0 for its time, calls and rows), ranked by the
-- seconds it took beyond that median: its share of the run's extra duration.
CREATE OR REPLACE FUNCTION telemetry.run_statements(p_run_id bigint)
RETURNS TABLE (rank integer, queryid bigint, query text, status text, seconds numeric, baseline_seconds numeric,
               extra_seconds numeric, share_of_extra_pct numeric, calls bigint, baseline_calls numeric,
               rows bigint, baseline_rows numeric, seconds_per_call numeric, baseline_seconds_per_call numeric,
               blocks_per_call numeric, baseline_blocks_per_call numeric, blocks_per_row numeric, baseline_blocks_per_row numeric,
               temp_per_call numeric, baseline_temp_per_call numeric, wal_bytes bigint, top_wait text,
               baseline_runs integer, baseline_runs_with integer, evicted boolean)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH w AS (SELECT * FROM telemetry._run_window(p_run_id)),
    base AS (SELECT * FROM telemetry._baseline_runs(p_run_id)),
    -- The baseline runs whose statements are known: a statement snapshot at or before the
    -- start and one at or after the end. A run without them says nothing about a statement.
    sbase AS (
        SELECT b.* FROM base b, LATERAL (SELECT telemetry._resolve_server(b.server) AS server) srv
        WHERE EXISTS (SELECT FROM telemetry.statement_info_snapshots i WHERE i.server = srv.server AND i.captured_at <= b.snapshot_start)
          AND EXISTS (SELECT FROM telemetry.statement_info_snapshots i WHERE i.server = srv.server AND i.captured_at >= b.end_time)),
    cur AS (SELECT s.* FROM w, LATERAL telemetry._window_statements(w.snapshot_start, w.end_time, w.server) s),
    -- A statement first seen inside a baseline run (new) ran in it: the first run after a
    -- restart or a reset is a normal run. Only reset counters are left out.
    bs AS (SELECT b.run_id, s.* FROM sbase b, LATERAL telemetry._window_statements(b.snapshot_start, b.end_time, b.server) s
           WHERE s.status <> 'reset'),
    nbase AS (SELECT count(*)::int AS n,
                     percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM end_time - start_time))::numeric AS duration
              FROM base),
    extra AS (SELECT extract(epoch FROM w.end_time - w.start_time)::numeric - nbase.duration AS seconds FROM w, nbase),
    per AS (  -- every baseline run for every statement of this run, 0 where it did not run
        SELECT c.queryid, b.run_id, coalesce(x.seconds, 0) AS seconds, coalesce(x.calls, 0) AS calls, coalesce(x.rows, 0) AS rows,
               x.seconds / nullif(x.calls, 0) AS per_call, x.blocks::numeric / nullif(x.calls, 0) AS blocks_per_call,
               x.blocks::numeric / nullif(x.rows, 0) AS blocks_per_row, x.temp_blks::numeric / nullif(x.calls, 0) AS temp_per_call,
               x.queryid IS NOT NULL AS present
        FROM cur c CROSS JOIN sbase b LEFT JOIN bs x ON x.run_id = b.run_id AND x.queryid = c.queryid),
    med AS (
        SELECT queryid,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds)::numeric AS seconds,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY calls)::numeric AS calls,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY rows)::numeric AS rows,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY per_call)::numeric AS per_call,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY blocks_per_call)::numeric AS blocks_per_call,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY blocks_per_row)::numeric AS blocks_per_row,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY temp_per_call)::numeric AS temp_per_call,
               count(*) FILTER (WHERE present)::int AS runs_with
        FROM per GROUP BY queryid),
    r AS (
        SELECT c.*, m.seconds AS b_seconds, m.calls AS b_calls, m.rows AS b_rows, m.per_call AS b_per_call,
               m.blocks_per_call AS b_bpc, m.blocks_per_row AS b_bpr, m.temp_per_call AS b_tpc, coalesce(m.runs_with, 0) AS runs_with,
               c.seconds - coalesce(m.seconds, 0) AS extra
        FROM cur c LEFT JOIN med m USING (queryid))
    SELECT row_number() OVER (ORDER BY r.extra DESC NULLS LAST, r.seconds DESC NULLS LAST, r.queryid)::int,
           r.queryid, r.query, r.status, r.seconds, round(r.b_seconds, 3), round(r.extra, 3),
           round(100 * r.extra / nullif((SELECT seconds FROM extra), 0), 1),
           r.calls, round(r.b_calls, 1), r.rows, round(r.b_rows, 1),
           round(r.seconds / nullif(r.calls, 0), 6), round(r.b_per_call, 6),
           round(r.blocks::numeric / nullif(r.calls, 0), 1), round(r.b_bpc, 1),
           round(r.blocks::numeric / nullif(r.rows, 0), 2), round(r.b_bpr, 2),
           round(r.temp_blks::numeric / nullif(r.calls, 0), 1), round(r.b_tpc, 1),
           r.wal_bytes,
           (SELECT k FROM jsonb_each_text(r.sampled_waits) e(k, v) ORDER BY v::numeric DESC LIMIT 1),
           (SELECT count(*)::int FROM sbase), r.runs_with, r.evicted
    FROM r
    WHERE r.calls IS DISTINCT FROM 0
$$;

-- _statement_findings: the statements that explain a run's extra duration, and how much of the
-- run the statement statistics cover.
CREATE OR REPLACE FUNCTION telemetry._statement_findings(p_run_id bigint)
RETURNS TABLE (pattern text, severity text, summary text, evidence jsonb, recommendation text, explained_seconds numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH w AS (SELECT * FROM telemetry._run_window(p_run_id)),
    srv AS (SELECT telemetry._resolve_server(w.server) AS server FROM w),
    covered AS (SELECT EXISTS (SELECT FROM telemetry.statement_info_snapshots i, w, srv
                               WHERE i.server = srv.server AND i.captured_at BETWEEN w.snapshot_start - interval '1 day' AND w.end_time) AS yes),
    rs AS (SELECT * FROM telemetry.run_statements(p_run_id) WHERE (SELECT yes FROM covered)),
    extra AS (SELECT max(r.extra_seconds * 100 / nullif(r.share_of_extra_pct, 0)) AS seconds FROM rs r),
    judged AS (
        SELECT r.*, left(regexp_replace(coalesce(r.query, 'queryid ' || r.queryid), '\s+', ' ', 'g'), 80) AS label,
               CASE WHEN r.baseline_runs = 0 OR r.status = 'reset' THEN NULL
                    WHEN r.baseline_runs_with = 0 THEN 'new_statement'
                    WHEN r.calls >= telemetry._threshold('statement_more_work_ratio') * greatest(r.baseline_calls, 1)
                      OR r.rows >= telemetry._threshold('statement_more_work_ratio') * greatest(r.baseline_rows, 1) THEN 'more_work'
                    WHEN r.seconds_per_call >= telemetry._threshold('statement_slower_ratio') * r.baseline_seconds_per_call THEN 'statement_regression'
               END AS kind
        FROM rs r
        WHERE r.extra_seconds >= greatest(telemetry._threshold('statement_min_extra_seconds'),
                                          0.1 * coalesce((SELECT seconds FROM extra), 0)))
    SELECT j.kind,
           CASE WHEN j.share_of_extra_pct >= 50 THEN 'critical' ELSE 'warning' END,
           CASE j.kind
             WHEN 'statement_regression' THEN format('"%s" took %s s more than its baseline median (%s%% of the run''s extra time): slower per call, %s ms instead of %s ms at %s calls (baseline %s) and %s rows (baseline %s)%s.',
                 j.label, round(j.extra_seconds, 1), coalesce(round(j.share_of_extra_pct), 0), round(1000 * j.seconds_per_call, 2), round(1000 * j.baseline_seconds_per_call, 2),
                 j.calls, round(j.baseline_calls), j.rows, round(j.baseline_rows),
                 CASE WHEN j.blocks_per_row >= telemetry._threshold('statement_plan_change_ratio') * j.baseline_blocks_per_row
                      THEN format('; blocks per row %s instead of %s: plan probably changed', j.blocks_per_row, j.baseline_blocks_per_row) ELSE '' END)
             WHEN 'more_work' THEN format('"%s" took %s s more than its baseline median (%s%% of the run''s extra time) because it had more to do: %s calls (baseline %s), %s rows (baseline %s), %s ms per call (baseline %s).',
                 j.label, round(j.extra_seconds, 1), coalesce(round(j.share_of_extra_pct), 0), j.calls, round(j.baseline_calls), j.rows, round(j.baseline_rows),
                 round(1000 * j.seconds_per_call, 2), round(1000 * j.baseline_seconds_per_call, 2))
             ELSE format('"%s" is new: absent from the %s previous normal run(s), it took %s s (%s%% of the run''s extra time) in %s calls.',
                 j.label, j.baseline_runs, round(j.seconds, 1), coalesce(round(j.share_of_extra_pct), 0), j.calls)
           END,
           jsonb_build_object('queryid', j.queryid, 'query', j.query, 'seconds', j.seconds, 'baseline_seconds', j.baseline_seconds,
                              'extra_seconds', j.extra_seconds, 'share_of_extra_pct', j.share_of_extra_pct,
                              'calls', j.calls, 'baseline_calls', j.baseline_calls, 'rows', j.rows, 'baseline_rows', j.baseline_rows,
                              'seconds_per_call', j.seconds_per_call, 'baseline_seconds_per_call', j.baseline_seconds_per_call,
                              'blocks_per_call', j.blocks_per_call, 'baseline_blocks_per_call', j.baseline_blocks_per_call,
                              'blocks_per_row', j.blocks_per_row, 'baseline_blocks_per_row', j.baseline_blocks_per_row,
                              'temp_per_call', j.temp_per_call, 'baseline_temp_per_call', j.baseline_temp_per_call,
                              'top_wait', j.top_wait),
           CASE j.kind
             WHEN 'statement_regression' THEN 'Compare its plan with the baseline''s (EXPLAIN (ANALYZE, BUFFERS), auto_explain): a dropped or unused index, stale statistics (ANALYZE the tables it reads), or a changed parameter; its top wait says where the time went.'
             WHEN 'more_work' THEN 'The batch had more to do, not a slower server: check the input volume of this run (rows and calls against the baseline); if that is expected, the baseline will follow.'
             ELSE 'A statement the batch did not run before: a code or data change introduced it; check it is meant to run, and its plan.'
           END,
           j.extra_seconds
    FROM judged j WHERE j.kind IS NOT NULL
    UNION ALL
    SELECT 'statements_evicted', 'warning',
           'pg_stat_statements evicted entries during the run (dealloc rose): some statements of the run may be missing or only partly counted.',
           jsonb_build_object('statements', (SELECT count(*) FROM rs)),
           'Raise pg_stat_statements.max (restart needed) so that the batch''s statements stay in it for the whole run.', NULL
    WHERE EXISTS (SELECT FROM rs WHERE rs.evicted)
    UNION ALL
    SELECT 'statements_unavailable', 'info',
           'No statement statistics were recorded for this run, so the statements that made it slow cannot be named.',
           '{}'::jsonb,
           'Enable statement diagnosis: shared_preload_libraries = ''pg_stat_statements'' (restart), then CREATE EXTENSION pg_stat_statements in the database the exporter connects to.', NULL
    WHERE NOT (SELECT yes FROM covered)
$$;

-- diagnose_run_findings is diagnose() over a run's window, its start on the run's own snapshot,
-- with the statements that explain the run's extra time, ranked first within their severity
-- by the seconds they explain.
CREATE OR REPLACE FUNCTION telemetry.diagnose_run_findings(p_run_id bigint)
RETURNS TABLE (pattern text, severity text, summary text, evidence jsonb, recommendation text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH s AS (SELECT * FROM telemetry._statement_findings(p_run_id))
    SELECT f.pattern, f.severity, f.summary, f.evidence, f.recommendation
    FROM (
        SELECT s.pattern, s.severity, s.summary, s.evidence, s.recommendation, s.explained_seconds, 0::bigint AS ord
        FROM s
        UNION ALL
        SELECT d.pattern, d.severity,
               CASE WHEN d.pattern = 'window' AND EXISTS (SELECT FROM s WHERE s.severity <> 'info')
                    THEN replace(d.summary, 'no pattern above its threshold', 'findings above') ELSE d.summary END,
               d.evidence, d.recommendation, NULL, d.ord
        FROM telemetry._run_window(p_run_id) w,
            LATERAL telemetry._diagnose(w.start_time, w.end_time, w.snapshot_start, w.server) WITH ORDINALITY d(pattern, severity, summary, evidence, recommendation, ord)
    ) f
    ORDER BY f.pattern = 'window', CASE f.severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END,
             f.explained_seconds DESC NULLS LAST, f.ord
$$;
