-- Statements' analysis: statement_compare, run_statements and the statement findings of
-- diagnose_run_findings (the tables: schema/migrations/0005_statements.sql).

-- _statements_at: each entry's counters as of the snapshot at p_at (the last row at or before
-- it). Rows before the last full read at or before p_at are superseded: that read stored every
-- entry pg_stat_statements had, and an entry it did not have was evicted or reset by then. So
-- the read starts there (runtime partition pruning keeps it to those days), not at the first
-- snapshot ever stored. The snapshots of that stretch come from the snapshots' (server,
-- captured_at) index, and each one's entries by statement_snapshots' primary key (it has no
-- index by time: a day partition was read whole, in parallel, for an hour's entries).
CREATE OR REPLACE FUNCTION telemetry._statements_at(p_at timestamptz, p_server text)
RETURNS SETOF telemetry.statement_snapshots
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT DISTINCT ON (x.userid, x.dbid, x.toplevel, x.queryid) x.*
    FROM telemetry.snapshots s
    CROSS JOIN LATERAL (SELECT x.* FROM telemetry.statement_snapshots x
                        WHERE x.snapshot_id = s.id AND x.captured_at = s.captured_at AND x.server = p_server OFFSET 0) x
    WHERE s.server = p_server AND s.captured_at <= p_at
      AND s.captured_at >= coalesce((SELECT max(i.captured_at) FROM telemetry.statement_info_snapshots i
                                     WHERE i.server = p_server AND i.full_read AND i.captured_at <= p_at), '-infinity')
    ORDER BY x.userid, x.dbid, x.toplevel, x.queryid, x.captured_at DESC;
END
$$;

-- _statement_text_pattern: a regular expression that a statement's text as the session sent it
-- (pg_stat_activity.query) matches, given pg_stat_statements' normalized text ($n for each
-- constant, "$n /*, ... */" for a list of them from 1.12 on); a trailing semicolon and white
-- space allowed.
CREATE OR REPLACE FUNCTION telemetry._statement_text_pattern(p_normalized text)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT '^' || regexp_replace(regexp_replace(regexp_replace(btrim(p_normalized), '\$[0-9]+ /\*, \.\.\. \*/', '$1', 'g'),
                                                '([].^$*+?(){}|\\[])', '\\\1', 'g'),
                                 '\\\$[0-9]+', '.+', 'g') || '\s*;?\s*$'
$$;

-- statement_compare: the statements of a window (between the snapshots compare() uses),
-- ranked by their time in it: planning and execution as pg_stat_statements counts them, with
-- the lock waits it leaves out, from the wait sampler (top-level statements). A statement takes
-- its tables' locks before it is planned: while parsing, before the server gives it a query_id
-- (those session-seconds are added), or, for a prepared statement, at Bind (the sampled Lock
-- session-seconds stand for the time where they exceed pg_stat_statements' own).
-- status says how far a row's deltas hold:
--   ok       both ends known, counters only grew;
--   new      no entry at the start: it appeared in the window (created, or back after an
--            eviction): the counts are those since it appeared, a lower bound;
--   reset    the counters went back (pg_stat_statements_reset, or evicted and re-created):
--            the deltas are NULL, never negative.
-- evicted is true when pg_stat_statements evicted entries during the window (dealloc rose):
-- statements missing here may have run.
-- _statement_compare computes it; where p_batch is given, the sampled session-seconds
-- (sampled_waits, and the lock waits added to a statement's time) are those of that batch's
-- own sessions only: what they waited on in each statement, and which statements they ran
-- (those with sampled_waits).
-- plan_exec_seconds is pg_stat_statements' own time, without the lock waits added. Without
-- p_waits, the sampled session-seconds are not read (NULL sampled_waits, no lock waits added):
-- for a caller that wants the counters only, a month's samples are most of the time. (The
-- four-argument form, with them, stays a function of its own: an earlier version's install
-- over this one replaces it, where a default argument would make its calls ambiguous.)
DROP FUNCTION IF EXISTS telemetry._statement_compare(timestamptz, timestamptz, text, text, boolean);
DO $$ BEGIN PERFORM telemetry._drop_if_result_lacks('telemetry._statement_compare(timestamptz, timestamptz, text, text)', 'plan_exec_seconds'); END $$;
CREATE OR REPLACE FUNCTION telemetry._statement_compare(p_start_time timestamptz, p_end_time timestamptz, p_server text, p_batch text,
                                                        p_waits boolean)
RETURNS TABLE (
    queryid bigint, datname text, username text, toplevel boolean, query text, status text,
    calls bigint, rows bigint, total_seconds numeric, seconds_per_call numeric,
    shared_blks_hit bigint, shared_blks_read bigint, blocks_per_call numeric,
    temp_blks_written bigint, wal_bytes bigint, sampled_waits jsonb, evicted boolean, plan_exec_seconds numeric)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH srv AS (SELECT telemetry._window_server(p_start_time, p_end_time, p_server) AS server),
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
    -- The window's sampled session-seconds by statement (from the rollups). A query that waited on a lock and was
    -- done before the sampler saw its query_id has only its text: it is the top-level statement
    -- of the window whose text it is, constants aside.
    -- Summed by statement and wait first, by _window_statement_waits (a month's rollups are a
    -- row per statement, wait and hour): the text matters only where there is no query_id, and
    -- is matched once per text.
    wx AS (
        SELECT x.queryid, x.wait_event_type, x.wait_event, x.before_query_id, x.query_text, x.seconds
        FROM srv CROSS JOIN w
        CROSS JOIN LATERAL telemetry._window_statement_waits(w.start_at, w.end_at, srv.server, p_batch) x
        WHERE p_waits),
    tm AS (
        SELECT coalesce(m.queryid, x.queryid) AS queryid, x.wait_event_type, x.wait_event,
               x.before_query_id OR m.queryid IS NOT NULL AS before_query_id, x.seconds
        FROM srv CROSS JOIN wx x
        LEFT JOIN LATERAL (
            SELECT d.queryid FROM d JOIN telemetry.statement_texts tx ON tx.server = srv.server AND tx.queryid = d.queryid
            WHERE x.query_text <> '' AND d.toplevel AND d.calls > 0
              AND starts_with(btrim(x.query_text, E' \t\r\n'), split_part(tx.query, '$', 1))
              AND btrim(x.query_text, E' \t\r\n') ~ telemetry._statement_text_pattern(tx.query)
            -- The most specific text first: constants match .+, so a shorter statement's pattern
            -- may match a longer one's text too.
            ORDER BY length(tx.query) DESC, d.calls DESC, d.queryid LIMIT 1) m ON true
        WHERE x.queryid = 0),
    -- A statement's rows are one per wait but where it waited before its query_id was known or
    -- a text went to it: only those are summed by wait first (numeric sums are most of the time
    -- here), and the objects are built as json (jsonb_object_agg took twice as long), in order
    -- (no hash table, which spilled to disk: its size is not known).
    mixed AS (SELECT tm.queryid FROM tm UNION SELECT x.queryid FROM wx x WHERE x.before_query_id),
    waits AS (
        SELECT x.queryid, json_object_agg(x.wait_event_type || ':' || x.wait_event, round(x.seconds::numeric, 1) ORDER BY x.wait_event_type, x.wait_event)::jsonb AS waits,
               NULL::numeric AS before_seconds, sum(x.seconds) FILTER (WHERE x.wait_event_type = 'Lock') AS lock_seconds
        FROM wx x WHERE x.queryid <> 0 AND x.queryid NOT IN (SELECT mixed.queryid FROM mixed)
        GROUP BY 1
        UNION ALL
        SELECT t.queryid, json_object_agg(t.wait, round(t.seconds::numeric, 1) ORDER BY t.wait)::jsonb,
               sum(t.before_seconds), sum(t.lock_seconds)
        FROM (SELECT ws.queryid, ws.wait_event_type || ':' || ws.wait_event AS wait, sum(ws.seconds) AS seconds,
                     sum(ws.seconds) FILTER (WHERE ws.before_query_id) AS before_seconds,
                     sum(ws.seconds) FILTER (WHERE NOT ws.before_query_id AND ws.wait_event_type = 'Lock') AS lock_seconds
              FROM (SELECT x.queryid, x.wait_event_type, x.wait_event, x.before_query_id, x.seconds
                    FROM wx x WHERE x.queryid <> 0 AND x.queryid IN (SELECT mixed.queryid FROM mixed)
                    UNION ALL
                    SELECT * FROM tm) ws
              GROUP BY 1, 2) t
        GROUP BY 1),
    -- The sampled seconds are by queryid: they go to one entry of it (the most called), not to
    -- each role's or database's entry of the same statement.
    ranked AS (
        SELECT d.*, row_number() OVER (PARTITION BY d.queryid, d.toplevel ORDER BY d.calls DESC NULLS LAST, d.datname, d.username) AS nth
        FROM d),
    timed AS (
        SELECT d.*, d.seconds + greatest(coalesce(waits.lock_seconds, 0) - d.seconds, 0) + coalesce(waits.before_seconds, 0) AS time,
               waits.waits
        FROM ranked d LEFT JOIN waits ON waits.queryid = d.queryid AND d.toplevel AND d.nth = 1)
    SELECT d.queryid, d.datname, d.username, d.toplevel, tx.query, d.status,
           d.calls, d.rows, round(d.time::numeric, 3), round((d.time / nullif(d.calls, 0))::numeric, 6),
           d.hit, d.read, round(((d.hit + d.read)::numeric / nullif(d.calls, 0)), 1),
           d.temp, d.wal, d.waits,
           coalesce((SELECT dealloc_end > dealloc_start FROM info), false), d.seconds::numeric
    FROM timed d
    CROSS JOIN srv
    LEFT JOIN telemetry.statement_texts tx ON tx.server = srv.server AND tx.queryid = d.queryid
    WHERE d.calls IS DISTINCT FROM 0
    ORDER BY d.time DESC NULLS LAST, d.queryid;
END
$$;

CREATE OR REPLACE FUNCTION telemetry._statement_compare(p_start_time timestamptz, p_end_time timestamptz, p_server text, p_batch text)
RETURNS TABLE (
    queryid bigint, datname text, username text, toplevel boolean, query text, status text,
    calls bigint, rows bigint, total_seconds numeric, seconds_per_call numeric,
    shared_blks_hit bigint, shared_blks_read bigint, blocks_per_call numeric,
    temp_blks_written bigint, wal_bytes bigint, sampled_waits jsonb, evicted boolean, plan_exec_seconds numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM telemetry._statement_compare(p_start_time, p_end_time, p_server, p_batch, true)
$$;

-- statement_compare: every session's statements of a window (see _statement_compare), as
-- the contract (../shared/spec/telemetry-schema.md) has it begin, ranked by total_time_ms:
-- pg_stat_statements' deltas by their names there, its planning and execution time in
-- milliseconds; then what the recorder adds (total_seconds: that time with the lock waits
-- pg_stat_statements leaves out, _statement_compare's rank).
-- (Its result began otherwise before: that function is dropped.)
DO $$ BEGIN PERFORM telemetry._drop_if_result_lacks('telemetry.statement_compare(timestamptz, timestamptz, text)', 'calls_delta'); END $$;
CREATE OR REPLACE FUNCTION telemetry.statement_compare(p_start_time timestamptz, p_end_time timestamptz, p_server text DEFAULT NULL)
RETURNS TABLE (
    queryid bigint, query text, calls_delta bigint, total_time_ms double precision, mean_time_ms double precision,
    rows_delta bigint, shared_blks_read_delta bigint, shared_blks_hit_delta bigint, temp_blks_written_delta bigint,
    wal_bytes_delta numeric,
    datname text, username text, toplevel boolean, status text, total_seconds numeric, seconds_per_call numeric,
    blocks_per_call numeric, sampled_waits jsonb, evicted boolean)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT c.queryid, c.query, c.calls, (1000 * c.plan_exec_seconds)::float8, (1000 * c.plan_exec_seconds / nullif(c.calls, 0))::float8,
           c.rows, c.shared_blks_read, c.shared_blks_hit, c.temp_blks_written, c.wal_bytes::numeric,
           c.datname, c.username, c.toplevel, c.status, c.total_seconds, c.seconds_per_call,
           c.blocks_per_call, c.sampled_waits, c.evicted
    FROM telemetry._statement_compare(p_start_time, p_end_time, p_server, NULL::text, true) c
    ORDER BY c.plan_exec_seconds DESC NULLS LAST, c.queryid
$$;

INSERT INTO telemetry.diagnose_thresholds (name, value, unit, description) VALUES
    ('statement_min_extra_seconds', 0.5, 'seconds',
     'statements_of_other_sessions names the statements of a run''s window not seen in its own sessions where they took at least this much in all.'),
    ('statement_more_work_ratio', 1.5, 'ratio',
     'more_work: calls or rows at least this many times their baseline median.'),
    ('statement_growth_ratio', 1.1, 'ratio',
     'more_work below statement_more_work_ratio: calls, rows or blocks read at least this many times their baseline median, the statement''s time more than its median and under statement_slower_ratio times it scaled by that growth.'),
    ('statement_slower_ratio', 1.5, 'ratio',
     'run_statements'' verdict is slower_per_call where the time per call is at least this many times its baseline median.'),
    ('statement_plan_change_ratio', 3, 'ratio',
     'statement_regression says "plan probably changed" when blocks per row rose this many times at about the same rows.'),
    ('run_own_lock_seconds', 1, 'seconds',
     'A run''s lock_contention is info when its own sessions waited less than this on locks: other sessions'' lock waits are named, not blamed.'),
    ('own_statements_known_pct', 50, 'percent',
     'A run''s statements are those its own sessions were seen running only where the sampler knew the statement of at least this share of their sampled seconds; else every statement of the window.'),
    ('other_busy_sessions', 1, 'sessions',
     'cpu_contention: a run''s statements'' extra CPU time is other sessions'' doing when, on average over the run, this many more of them were busy on CPU or I/O than in the baseline runs, and at least twice as many.')
ON CONFLICT (name) DO UPDATE SET unit = excluded.unit, description = excluded.description;

-- _window_statements: _statement_compare summed per top-level queryid (nested statements' time
-- is inside their caller's). status: reset where any entry was reset, new where any appeared.
DROP FUNCTION IF EXISTS telemetry._window_statements(timestamptz, timestamptz, text);
CREATE OR REPLACE FUNCTION telemetry._window_statements(p_start_time timestamptz, p_end_time timestamptz, p_server text, p_batch text)
RETURNS TABLE (queryid bigint, query text, status text, calls bigint, rows bigint, seconds numeric,
               blocks bigint, temp_blks bigint, wal_bytes bigint, sampled_waits jsonb, evicted boolean)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT c.queryid, min(c.query),
           CASE WHEN bool_or(c.status = 'reset') THEN 'reset' WHEN bool_or(c.status = 'new') THEN 'new' ELSE 'ok' END,
           sum(c.calls)::bigint, sum(c.rows)::bigint, sum(c.total_seconds),
           sum(c.shared_blks_hit + c.shared_blks_read)::bigint, sum(c.temp_blks_written)::bigint, sum(c.wal_bytes)::bigint,
           (array_agg(c.sampled_waits) FILTER (WHERE c.sampled_waits IS NOT NULL))[1], bool_or(c.evicted)
    FROM telemetry._statement_compare(p_start_time, p_end_time, p_server, p_batch, true) c
    WHERE c.toplevel
    GROUP BY c.queryid
$$;

-- _run_statement_batch is the batch whose own sessions' statements a run's are: the run's batch
-- where the wait sampler booked statement seconds to its own sessions during the run (the Go
-- recorder with its batch tracker) and could tell the statement of at least
-- own_statements_known_pct of them (a query_id, or the text of one waiting on a lock); else NULL:
-- every statement of the window (pg_cron mode; a run recorded before the split; sessions that
-- show no query_id, as a portal fetched in parts does on 14-17).
CREATE OR REPLACE FUNCTION telemetry._run_statement_batch(p_run_id bigint)
RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH settled AS (SELECT telemetry._run_settled(p_run_id) AS yes)
    SELECT x.statement_batch FROM telemetry.run_results x WHERE (SELECT yes FROM settled) AND x.run_id = p_run_id
    UNION ALL
    SELECT w.batch FROM telemetry._run_window(p_run_id) w,
        LATERAL (SELECT sum(x.seconds) AS seconds, sum(x.seconds) FILTER (WHERE x.queryid <> 0 OR x.query_text <> '') AS known
                 FROM telemetry._window_statement_waits(w.start_time - interval '1 microsecond', w.end_time,
                                                        telemetry._resolve_server(w.server), w.batch) x) o
    WHERE NOT (SELECT yes FROM settled) AND o.known >= telemetry._threshold('own_statements_known_pct') / 100 * o.seconds
$$;

-- _runs_statements are runs' statements (_window_statements of each one's window), read for
-- a run and its baseline runs at once: with p_own, the sampled waits those of each run's
-- batch's own sessions where they were recorded apart (batch: _run_statement_batch), else
-- every session's (batch NULL). A settled run's are stored (settle_run), in their order; without
-- p_detail, their query and sampled_waits are left NULL (a baseline run's figures are all its
-- readers take, and those two are most of a stored row).
DROP FUNCTION IF EXISTS telemetry._runs_statements(bigint[], boolean);
CREATE OR REPLACE FUNCTION telemetry._runs_statements(p_run_ids bigint[], p_own boolean, p_detail boolean)
RETURNS TABLE (run_id bigint, batch text, queryid bigint, query text, status text, calls bigint, rows bigint, seconds numeric,
               blocks bigint, temp_blks bigint, wal_bytes bigint, sampled_waits jsonb, evicted boolean)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH runs AS (SELECT s.run_id AS id, s.settled FROM telemetry._runs_settled(p_run_ids) s)
    SELECT runs.id, CASE WHEN p_own THEN h.statement_batch END, x.*
    FROM runs JOIN telemetry.run_results h ON h.run_id = runs.id
    -- each run's in their order, as its primary key reads them (a sort of 30 runs' took 40 ms)
    CROSS JOIN LATERAL (SELECT x.queryid, CASE WHEN p_detail THEN x.query END, x.status, x.calls, x.rows, x.seconds, x.blocks,
                               x.temp_blks, x.wal_bytes, CASE WHEN p_detail THEN x.sampled_waits END, x.evicted
                        FROM telemetry.run_result_statements x
                        WHERE x.run_id = runs.id AND x.own = (p_own AND h.statement_batch IS NOT NULL)
                        ORDER BY x.ord) x
    WHERE runs.settled
    UNION ALL
    SELECT runs.id, o.batch, s.*
    FROM runs, telemetry._run_window(runs.id) w,
         -- OFFSET 0: once a run; pulled up, it was called again for every statement (batch)
         LATERAL (SELECT CASE WHEN p_own THEN telemetry._run_statement_batch(runs.id) END AS batch OFFSET 0) o,
         LATERAL telemetry._window_statements(w.snapshot_start, w.end_time, w.server, o.batch) s
    WHERE NOT runs.settled
$$;

-- _statements_known tells whether a run's statements are known: a statement snapshot at or
-- before its window's start and one at or after its end. A baseline run without them says
-- nothing about a statement.
CREATE OR REPLACE FUNCTION telemetry._statements_known(p_server text, p_snapshot_start timestamptz, p_end_time timestamptz)
RETURNS boolean LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT FROM telemetry.statement_info_snapshots i WHERE i.server = s.server AND i.captured_at <= p_snapshot_start)
       AND EXISTS (SELECT FROM telemetry.statement_info_snapshots i WHERE i.server = s.server AND i.captured_at >= p_end_time)
    FROM (SELECT telemetry._resolve_server(p_server) AS server) s
$$;

-- _baseline_statement_medians: each statement's medians over baseline runs whose statements
-- are known (_runs_statements, their own sessions' where recorded apart; reset counters left
-- out, a statement new in a run counts), a run without it counting 0 for its seconds, calls
-- and rows: those of p_queryids (one for each, where no run ran it too), or, NULL, of every
-- statement the runs ran. In float8, as the medians are (percentile_cont): numeric division
-- and its cast to float8 cost more than the medians themselves.
CREATE OR REPLACE FUNCTION telemetry._baseline_statement_medians(p_run_ids bigint[], p_queryids bigint[])
RETURNS TABLE (queryid bigint, seconds numeric, calls numeric, rows numeric, per_call numeric, blocks_per_call numeric,
               blocks_per_row numeric, temp_per_call numeric, wal_per_call numeric, runs_with integer)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH bs AS (
        SELECT s.* FROM telemetry._runs_statements(p_run_ids, true, false) s
        WHERE s.status <> 'reset' AND (p_queryids IS NULL OR s.queryid IN (SELECT unnest(p_queryids)))),
    q AS (SELECT DISTINCT q.queryid FROM unnest(p_queryids) q (queryid)
          UNION ALL
          SELECT DISTINCT x.queryid FROM bs x WHERE p_queryids IS NULL),
    -- Every run for every statement: its figures where it ran, else a row of zeros (statements
    -- times runs joined took longer than the medians, two sorts of the product for a merge join).
    per AS (
        SELECT x.queryid, coalesce(x.seconds, 0)::float8 AS seconds, coalesce(x.calls, 0)::float8 AS calls,
               coalesce(x.rows, 0)::float8 AS rows,
               x.seconds::float8 / nullif(x.calls, 0) AS per_call, x.blocks::float8 / nullif(x.calls, 0) AS blocks_per_call,
               x.blocks::float8 / nullif(x.rows, 0) AS blocks_per_row, x.temp_blks::float8 / nullif(x.calls, 0) AS temp_per_call,
               x.wal_bytes::float8 / nullif(x.calls, 0) AS wal_per_call, true AS present
        FROM bs x
        UNION ALL
        SELECT q.queryid, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, false
        FROM q LEFT JOIN (SELECT x.queryid, count(*) AS runs FROM bs x GROUP BY x.queryid) k ON k.queryid = q.queryid,
             generate_series(1, cardinality(p_run_ids) - coalesce(k.runs, 0)))
    SELECT per.queryid,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY per.seconds)::numeric,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY per.calls)::numeric,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY per.rows)::numeric,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY per.per_call)::numeric,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY per.blocks_per_call)::numeric,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY per.blocks_per_row)::numeric,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY per.temp_per_call)::numeric,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY per.wal_per_call)::numeric,
           count(*) FILTER (WHERE per.present)::int
    FROM per WHERE per.queryid IS NOT NULL GROUP BY per.queryid
$$;

-- _next_statement_baseline is the baseline, sorted, whose statements a run of p_run_id's batch
-- begun right after it would be compared with: its normal runs up to it (_normal_runs_before)
-- whose statements are known.
CREATE OR REPLACE FUNCTION telemetry._next_statement_baseline(p_run_id bigint)
RETURNS bigint[] LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT ARRAY(SELECT bw.run_id
                 FROM telemetry.batch_runs r,
                      LATERAL telemetry._runs_window(ARRAY(SELECT b.run_id FROM telemetry._normal_runs_before(r.batch, r.started_at + interval '1 microsecond') b)) bw
                 WHERE r.run_id = p_run_id AND telemetry._statements_known(bw.server, bw.snapshot_start, bw.end_time)
                 ORDER BY bw.run_id)
$$;

-- _stored_statement_baseline is the settled run whose stored statement medians
-- (run_result_baseline_statements) are those over the baseline runs p_run_ids, where they
-- hold: every one of those runs settled (_runs_settled, so never with telemetry.rollups off),
-- its stored results the ones the medians were computed from. NULL: none; they are computed
-- (_baseline_statement_medians).
CREATE OR REPLACE FUNCTION telemetry._stored_statement_baseline(p_run_ids bigint[])
RETURNS bigint LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH b AS (SELECT ARRAY(SELECT i FROM unnest(p_run_ids) i ORDER BY i) AS ids)
    SELECT x.run_id FROM b JOIN telemetry.run_results x ON x.run_id = ANY (b.ids) AND x.next_baseline_runs = b.ids
    WHERE x.next_baseline_results = ARRAY(SELECT m.computed_at FROM telemetry.run_results m WHERE m.run_id = ANY (b.ids) ORDER BY m.run_id)
      AND (SELECT bool_and(s.settled) FROM telemetry._runs_settled(b.ids) s)
    LIMIT 1
$$;

-- _store_next_statement_baseline stores the statement medians of a settled run's next baseline
-- (_next_statement_baseline) where they are not stored and its runs are all settled (it among
-- them); true where it stored them. Those runs' stored results are locked while they are read
-- (settling one again waits), and which they were is stored with the medians.
CREATE OR REPLACE FUNCTION telemetry._store_next_statement_baseline(p_run_id bigint)
RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_ids bigint[] := telemetry._next_statement_baseline(p_run_id);
BEGIN
    IF NOT p_run_id = ANY (v_ids) OR telemetry._stored_statement_baseline(v_ids) IS NOT NULL THEN
        RETURN false;
    END IF;
    PERFORM FROM telemetry.run_results x WHERE x.run_id = ANY (v_ids) ORDER BY x.run_id FOR SHARE;
    IF NOT (SELECT bool_and(s.settled) FROM telemetry._runs_settled(v_ids) s) THEN
        RETURN false;
    END IF;
    DELETE FROM telemetry.run_result_baseline_statements WHERE run_id = p_run_id;
    INSERT INTO telemetry.run_result_baseline_statements (run_id, queryid, seconds, calls, rows, per_call, blocks_per_call,
                                                          blocks_per_row, temp_per_call, wal_per_call, runs_with)
    SELECT p_run_id, m.* FROM telemetry._baseline_statement_medians(v_ids, NULL) m;
    UPDATE telemetry.run_results
    SET next_baseline_runs = v_ids,
        next_baseline_results = ARRAY(SELECT m.computed_at FROM telemetry.run_results m WHERE m.run_id = ANY (v_ids) ORDER BY m.run_id)
    WHERE run_id = p_run_id;
    RETURN true;
END
$$;
REVOKE EXECUTE ON FUNCTION telemetry._store_next_statement_baseline(bigint) FROM PUBLIC;

-- A run's statements that escaped the wait sampler (issue 19, defect 5): a statement of the
-- batch that took under a second in all may never be sampled, and then its time is no
-- session's in the run's account. These are its candidates from pg_stat_statements: top-level
-- statements that ran in the run's window (its start read to the first after its end), that
-- no sample saw an own session run (active), and that ran there only under roles and in
-- databases the run's own sessions were sampled in: another application's statement in the
-- same window is never a candidate. Candidates, not proof: another session of the same role
-- and database may have run one. Empty where the run's own sessions were not sampled with
-- their role and database (runs recorded before migration 0015).
-- Never the exporter's or recorder's own statements, which run in the same role and database
-- where everything runs as one user: pg_stat_statements keeps no session or application for an
-- entry, so they are told by their text (a heuristic): a statement that names the telemetry
-- schema, or reads a system catalog or statistics view (FROM/JOIN pg_*), as the collectors and
-- the wait sampler do. A batch's own read of the catalogs is thus never a candidate either.
CREATE OR REPLACE FUNCTION telemetry._run_unsampled_statements(p_run_id bigint)
RETURNS TABLE (queryid bigint, query text, datname text, username text, status text, calls bigint, rows bigint,
               seconds numeric, seconds_per_call numeric, temp_blks_written bigint, wal_bytes bigint,
               baseline_seconds_per_call numeric, baseline_runs_with integer)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH w AS (SELECT w.*, telemetry._resolve_server(w.server) AS srv FROM telemetry._run_window(p_run_id) w),
    own AS (  -- the run's own sessions as sampled: their roles and databases, their statements
        SELECT b.usename, b.datname, b.queryid, b.state
        FROM w JOIN telemetry.batch_wait_samples b
          ON b.server = w.srv AND b.batch = w.batch AND b.own AND b.captured_at BETWEEN w.start_time AND w.end_time),
    stmts AS (
        -- (their counters: a candidate is a statement no sample saw)
        SELECT c.* FROM w, LATERAL telemetry._statement_compare(w.snapshot_start, w.end_time, w.server, NULL::text, false) c
        WHERE c.toplevel AND c.calls > 0),
    candidates AS (
        SELECT s.* FROM stmts s
        WHERE NOT EXISTS (SELECT FROM own o WHERE o.state = 'active' AND o.queryid = s.queryid)
          -- a statement the sampler saw other sessions run in the window is theirs (its text where
          -- it waited on a lock before the server knew its query_id)
          AND NOT EXISTS (SELECT FROM w JOIN telemetry.statement_wait_samples o
                            ON o.server = w.srv AND o.captured_at BETWEEN w.start_time AND w.end_time
                          WHERE (o.queryid = s.queryid OR o.query_text = s.query)  -- a lock wait at parse: no query_id yet
                            AND o.batch IS DISTINCT FROM w.batch)
          AND s.query !~ '\mtelemetry\.' AND s.query !~* '\m(from|join)\s+(pg_catalog\.)?pg_[a-z_]+'
          AND NOT EXISTS (SELECT FROM stmts x WHERE x.queryid = s.queryid
                            AND NOT EXISTS (SELECT FROM own o WHERE o.usename = x.username AND o.datname = x.datname))),
    -- Per call in the batch's baseline runs, any session's: a brief statement is seldom sampled there either.
    base AS (
        SELECT x.queryid, percentile_cont(0.5) WITHIN GROUP (ORDER BY x.seconds / x.calls)::numeric AS per_call,
               count(DISTINCT x.run_id)::int AS runs_with
        FROM telemetry._runs_statements(ARRAY(SELECT b.run_id FROM telemetry._baseline_runs(p_run_id) b), false, false) x
        WHERE x.status <> 'reset' AND x.calls > 0 AND x.queryid IN (SELECT c.queryid FROM candidates c)
        GROUP BY x.queryid)
    SELECT c.queryid, c.query, c.datname, c.username, c.status, c.calls, c.rows, c.total_seconds, c.seconds_per_call,
           c.temp_blks_written, c.wal_bytes, round(base.per_call, 6), coalesce(base.runs_with, 0)
    FROM candidates c LEFT JOIN base USING (queryid)
    ORDER BY c.total_seconds DESC NULLS LAST, c.queryid
$$;

-- _run_statements: each statement of a run against the median of the batch's previous normal
-- runs (a run without the statement counts 0 for its time, calls and rows), ranked by the
-- seconds it took beyond that median: its share of the run's extra duration. A run's
-- statements are those the wait sampler saw its own sessions run (_run_statement_batch), and
-- those too brief to be sampled that ran only in its own roles and databases
-- (_run_unsampled_statements), so that another application's statement in the same window is
-- never the run's; where it did not follow the batch's sessions, every statement of the window.
CREATE OR REPLACE FUNCTION telemetry._run_statements(p_run_id bigint)
RETURNS TABLE (rank integer, queryid bigint, query text, status text, seconds numeric, baseline_seconds numeric,
               extra_seconds numeric, share_of_extra_pct numeric, calls bigint, baseline_calls numeric,
               rows bigint, baseline_rows numeric, seconds_per_call numeric, baseline_seconds_per_call numeric,
               blocks_per_call numeric, baseline_blocks_per_call numeric, blocks_per_row numeric, baseline_blocks_per_row numeric,
               temp_per_call numeric, baseline_temp_per_call numeric, wal_bytes bigint, top_wait text,
               baseline_runs integer, baseline_runs_with integer, evicted boolean,
               wal_per_call numeric, baseline_wal_per_call numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH w AS (SELECT * FROM telemetry._run_window(p_run_id)),
    base AS (SELECT * FROM telemetry._baseline_runs(p_run_id)),
    -- The baseline runs whose statements are known: a run without them says nothing about a statement.
    sbase AS (SELECT b.* FROM base b WHERE telemetry._statements_known(b.server, b.snapshot_start, b.end_time)),
    -- Its own sessions' statements: those sampled, and those that escaped the samples but
    -- ran only in its own roles and databases (_run_unsampled_statements).
    cur AS (SELECT s.* FROM telemetry._runs_statements(ARRAY[p_run_id], true, true) s
            WHERE s.batch IS NULL OR s.sampled_waits IS NOT NULL
               OR s.queryid IN (SELECT u.queryid FROM telemetry._run_unsampled_statements(p_run_id) u)),
    nbase AS (SELECT count(*)::int AS n,
                     percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM end_time - start_time))::numeric AS duration
              FROM base),
    extra AS (SELECT extract(epoch FROM w.end_time - w.start_time)::numeric - nbase.duration AS seconds FROM w, nbase),
    -- Each statement's medians over the baseline runs: stored once they are all settled
    -- (_stored_statement_baseline), else computed (a run without it counts 0).
    held AS (SELECT x.ids, telemetry._stored_statement_baseline(x.ids) AS stored
             FROM (SELECT ARRAY(SELECT b.run_id FROM sbase b) AS ids) x),
    med AS (
        SELECT c.queryid, coalesce(x.seconds, 0) AS seconds, coalesce(x.calls, 0) AS calls, coalesce(x.rows, 0) AS rows,
               x.per_call, x.blocks_per_call, x.blocks_per_row, x.temp_per_call, x.wal_per_call, coalesce(x.runs_with, 0) AS runs_with
        FROM held CROSS JOIN cur c
        LEFT JOIN telemetry.run_result_baseline_statements x ON x.run_id = held.stored AND x.queryid = c.queryid
        WHERE held.stored IS NOT NULL
        UNION ALL
        SELECT m.* FROM held, LATERAL telemetry._baseline_statement_medians(held.ids, ARRAY(SELECT c.queryid FROM cur c)) m
        WHERE held.stored IS NULL),
    r AS (
        SELECT c.*, m.seconds AS b_seconds, m.calls AS b_calls, m.rows AS b_rows, m.per_call AS b_per_call,
               m.blocks_per_call AS b_bpc, m.blocks_per_row AS b_bpr, m.temp_per_call AS b_tpc, m.wal_per_call AS b_wpc, coalesce(m.runs_with, 0) AS runs_with,
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
           cardinality((SELECT held.ids FROM held)), r.runs_with, r.evicted,
           round(r.wal_bytes::numeric / nullif(r.calls, 0)), round(r.b_wpc)
    FROM r
    WHERE r.calls IS DISTINCT FROM 0
$$;

-- run_statements: a run's statements (_run_statements) as the contract
-- (../shared/spec/telemetry-schema.md) has them begin: time_ms, baseline_time_ms and
-- explains_ms are the seconds, baseline_seconds and extra_seconds that follow, in
-- milliseconds; verdict says how the statement moved against its baseline median: new (no
-- baseline run ran it), more_work (calls or rows statement_more_work_ratio times the
-- baseline's), slower_per_call (time per call statement_slower_ratio times the baseline's),
-- else unchanged; NULL where nothing compares (no baseline run, counters reset). Why the run
-- was slower is its account's (diagnose --run), not a statement's verdict. p_server, where
-- given, is the run's.
DROP FUNCTION IF EXISTS telemetry.run_statements(bigint);  -- before p_server, and the contract's columns
CREATE OR REPLACE FUNCTION telemetry.run_statements(p_run_id bigint, p_server text DEFAULT NULL)
RETURNS TABLE (rank integer, queryid bigint, query text, time_ms double precision, baseline_time_ms double precision,
               calls bigint, baseline_calls double precision, rows bigint, baseline_rows double precision,
               explains_ms double precision, verdict text,
               status text, seconds numeric, baseline_seconds numeric, extra_seconds numeric, share_of_extra_pct numeric,
               seconds_per_call numeric, baseline_seconds_per_call numeric,
               blocks_per_call numeric, baseline_blocks_per_call numeric, blocks_per_row numeric, baseline_blocks_per_row numeric,
               temp_per_call numeric, baseline_temp_per_call numeric, wal_bytes bigint, top_wait text,
               baseline_runs integer, baseline_runs_with integer, evicted boolean,
               wal_per_call numeric, baseline_wal_per_call numeric)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    v_server text;
    -- read once, not for each statement
    v_more_work numeric := telemetry._threshold('statement_more_work_ratio');
    v_slower numeric := telemetry._threshold('statement_slower_ratio');
BEGIN
    IF p_server IS NOT NULL THEN
        -- (a run recorded without its server's name is the only server's)
        SELECT w.server INTO v_server FROM telemetry._run_window(p_run_id) w;
        IF v_server IS DISTINCT FROM telemetry._resolve_server(p_server) AND v_server IS NOT NULL THEN
            RAISE EXCEPTION 'batch run % was recorded from server %, not %', p_run_id, quote_literal(v_server), quote_literal(p_server);
        END IF;
    END IF;
    RETURN QUERY
    SELECT s.rank, s.queryid, s.query, (1000 * s.seconds)::float8, (1000 * s.baseline_seconds)::float8,
           s.calls, s.baseline_calls::float8, s.rows, s.baseline_rows::float8, (1000 * s.extra_seconds)::float8,
           CASE WHEN s.baseline_runs = 0 OR s.status = 'reset' THEN NULL
                WHEN s.baseline_runs_with = 0 THEN 'new'
                WHEN s.calls >= v_more_work * greatest(s.baseline_calls, 1)
                  OR s.rows >= v_more_work * greatest(s.baseline_rows, 1) THEN 'more_work'
                WHEN s.seconds_per_call >= v_slower * s.baseline_seconds_per_call
                     AND s.seconds_per_call > s.baseline_seconds_per_call THEN 'slower_per_call'
                ELSE 'unchanged' END,
           s.status, s.seconds, s.baseline_seconds, s.extra_seconds, s.share_of_extra_pct,
           s.seconds_per_call, s.baseline_seconds_per_call, s.blocks_per_call, s.baseline_blocks_per_call,
           s.blocks_per_row, s.baseline_blocks_per_row, s.temp_per_call, s.baseline_temp_per_call, s.wal_bytes, s.top_wait,
           s.baseline_runs, s.baseline_runs_with, s.evicted, s.wal_per_call, s.baseline_wal_per_call
    FROM telemetry._run_statements(p_run_id) s
    ORDER BY s.rank;
END
$$;

-- _run_other_busy is how many other client sessions were busy on CPU or I/O during a run, on
-- average (their session-seconds in Running and IO waits over the run's seconds): what competed
-- with the batch for the server. NULL where the run's sessions were not recorded apart.
CREATE OR REPLACE FUNCTION telemetry._run_other_busy(p_run_id bigint)
RETURNS numeric LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT round(coalesce(sum(x.session_seconds) FILTER (WHERE x.sessions = 'other' AND x.wait_event_type IN ('Running', 'IO')), 0)
                 / nullif(extract(epoch FROM w.end_time - w.start_time), 0)::numeric, 2)
    FROM telemetry._run_window(p_run_id) w, LATERAL telemetry.run_session_waits(p_run_id) x
    GROUP BY w.end_time, w.start_time
$$;

-- _statement_label names a statement in a finding's summary: its text on one line, truncated.
CREATE OR REPLACE FUNCTION telemetry._statement_label(p_query text, p_queryid bigint)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT left(regexp_replace(coalesce(p_query, 'queryid ' || p_queryid), '\s+', ' ', 'g'), 80)
$$;

-- _lock_target says what a lock wait was on, from lock_samples' or lock_episodes' lock_type,
-- locked_relation and locked_object: "a lock on public.orders", "an advisory lock (key 42)",
-- "a row changed or locked by another transaction (transaction 1234)".
CREATE OR REPLACE FUNCTION telemetry._lock_target(p_lock_type text, p_locked_relation text, p_locked_object text)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE p_lock_type
        WHEN 'relation' THEN 'a lock on ' || coalesce(p_locked_relation, 'a relation')
        WHEN 'advisory' THEN 'an advisory lock' || coalesce(' (' || p_locked_object || ')', '')
        -- a row another transaction changed or locked: its transaction's end is waited for
        WHEN 'transactionid' THEN 'a row' || coalesce(' of ' || p_locked_relation, '') || ' changed or locked by another transaction'
                                  || coalesce(' (' || p_locked_object || ')', '')
        WHEN 'tuple' THEN 'a row lock on ' || coalesce(p_locked_relation, 'a relation') || coalesce(' (' || p_locked_object || ')', '')
        -- INSERT ... ON CONFLICT waiting for another transaction's insertion of the same key
        WHEN 'spectoken' THEN 'a row being inserted by another transaction' || coalesce(' (' || p_locked_object || ')', '')
        -- CREATE INDEX CONCURRENTLY and the like wait for every older transaction to end
        WHEN 'virtualxid' THEN 'the end of a transaction older than it' || coalesce(' (' || p_locked_object || ')', '')
        ELSE CASE WHEN p_lock_type ~ '^[aeio]' THEN 'an ' ELSE 'a ' END || coalesce(p_lock_type, '?') || ' lock on '
             || coalesce(p_locked_relation || coalesce(' (' || p_locked_object || ')', ''), p_locked_object, 'an object')
    END
$$;

-- _lock_holder names a lock's holder by its pid: pid 0 is pg_blocking_pids' name for a
-- prepared transaction, which holds its locks with no session.
CREATE OR REPLACE FUNCTION telemetry._lock_holder(p_pid integer)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN p_pid = 0 THEN 'a prepared transaction' ELSE 'pid ' || p_pid END
$$;

-- _lock_holder_doing says what a lock's holder was doing, from its state and query as the lock
-- samples saw them: a holder idle in a transaction holds its locks between statements, and an
-- idle one only a session-level advisory lock; its query is then the last it ran, not one
-- running. A prepared transaction holds its locks with no session.
CREATE OR REPLACE FUNCTION telemetry._lock_holder_doing(p_state text, p_query text)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE
        WHEN p_state LIKE 'idle in transaction%' THEN format('idle in a transaction, its last statement "%s"', telemetry._statement_label(p_query, NULL))
        WHEN p_state = 'idle' THEN format('idle, holding a session-level lock, its last statement "%s"', telemetry._statement_label(p_query, NULL))
        -- (the lock samples' query of a prepared transaction is its gid)
        WHEN p_state = 'prepared transaction' THEN format('gid %L, holding its locks until COMMIT PREPARED or ROLLBACK PREPARED', p_query)
        ELSE format('running "%s"', telemetry._statement_label(p_query, NULL))
    END
$$;

DROP FUNCTION IF EXISTS telemetry._statement_findings(bigint);

-- _run_own_blockers: the lock waits of a run's own sessions (the sessions batch_wait_samples
-- names), with who held them up, the longest held first: pid, application, role, statement,
-- lock type and object; own_session where the holder was the batch's own session (its
-- sessions waiting for each other: the same rows, the same table); blocked_query_preview, the
-- batch's statement that waited longest behind it.
DROP FUNCTION IF EXISTS telemetry._run_own_blockers(bigint);  -- before blocking_state and locked_object
CREATE OR REPLACE FUNCTION telemetry._run_own_blockers(p_run_id bigint)
RETURNS TABLE (blocking_pid integer, blocking_app text, blocking_user text, lock_type text, locked_relation text,
               blocking_query_preview text, waits bigint, blocked_seconds numeric, own_session boolean, blocked_query_preview text,
               blocking_state text, locked_object text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH w AS (SELECT w.*, telemetry._resolve_server(w.server) AS srv FROM telemetry._run_window(p_run_id) w),
    own AS (SELECT DISTINCT b.pid, b.backend_start FROM w, telemetry.batch_wait_samples b
            WHERE b.server = w.srv AND b.batch = w.batch AND b.own AND b.captured_at BETWEEN w.start_time AND w.end_time),
    episodes AS (
        SELECT e.* FROM w, LATERAL telemetry.lock_episodes(w.start_time, w.end_time, w.server) e
        WHERE e.lock_type IS DISTINCT FROM 'extend'
          AND EXISTS (SELECT FROM own WHERE own.pid = e.blocked_pid AND own.backend_start IS NOT DISTINCT FROM e.blocked_backend_start))
    SELECT e.blocking_pid, e.blocking_app, e.blocking_user, e.lock_type, e.locked_relation, e.blocking_query_preview,
           count(*), round(sum(e.duration_seconds), 1), e.blocking_batch = w.batch,
           (array_agg(e.blocked_query_preview ORDER BY e.duration_seconds DESC, e.started_at))[1],
           -- the longest wait's holder state; the object where all its waits were on one (a row
           -- lock's transaction differs from one wait to the next)
           (array_agg(e.blocking_state ORDER BY e.duration_seconds DESC, e.started_at))[1],
           CASE WHEN count(DISTINCT e.locked_object) = 1 THEN min(e.locked_object) END
    FROM episodes e, w
    GROUP BY 1, 2, 3, 4, 5, 6, 9
    UNION ALL
    -- A wait still going on (a run in progress) has no episode yet: the lock samples name its
    -- holder (whether it is the batch's own session is not known there).
    SELECT l.blocking_pid, l.blocking_app, l.blocking_user, l.lock_type, l.locked_relation, l.blocking_query_preview,
           count(DISTINCT l.blocked_pid), round(max(extract(epoch FROM l.blocked_duration))::numeric, 1), NULL::boolean,
           (array_agg(l.blocked_query_preview ORDER BY l.blocked_duration DESC NULLS LAST, l.captured_at))[1],
           (array_agg(l.blocking_state ORDER BY l.blocked_duration DESC NULLS LAST, l.captured_at))[1],
           CASE WHEN count(DISTINCT l.locked_object) = 1 THEN min(l.locked_object) END
    FROM w, telemetry.lock_samples l
    WHERE NOT EXISTS (SELECT FROM episodes) AND l.server = w.srv AND l.captured_at BETWEEN w.start_time AND w.end_time
      AND l.lock_type IS DISTINCT FROM 'extend' AND l.blocked_pid IN (SELECT pid FROM own)
    GROUP BY 1, 2, 3, 4, 5, 6
    ORDER BY 8 DESC, 7 DESC
$$;

-- _run_window_findings is diagnose() over a run's window, its start on the run's own
-- snapshot (ord: diagnose's order). Where the run's own sessions were recorded apart
-- (run_session_waits), lock_contention judges what they waited on: other sessions' lock
-- waits while the batch waited on none are info, named, not blamed; temp_file_spills likewise
-- the batch's own statements' spills. run_diagnosis shows them after the run's causes.
CREATE OR REPLACE FUNCTION telemetry._run_window_findings(p_run_id bigint)
RETURNS TABLE (pattern text, severity text, summary text, evidence jsonb, recommendation text, ord bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH rw AS (SELECT * FROM telemetry.run_session_waits(p_run_id)),
    locks AS (
        SELECT EXISTS (SELECT FROM rw WHERE rw.sessions = 'batch') AS covered,
               coalesce(sum(rw.session_seconds) FILTER (WHERE rw.sessions = 'batch' AND rw.wait_event_type = 'Lock' AND rw.wait_event <> 'extend'), 0) AS own,
               coalesce(sum(rw.session_seconds) FILTER (WHERE rw.sessions = 'other' AND rw.wait_event_type = 'Lock' AND rw.wait_event <> 'extend'), 0) AS other
        FROM rw),
    own_blockers AS (SELECT * FROM telemetry._run_own_blockers(p_run_id)),
    -- The temporary files the batch's own statements wrote (pg_stat_statements' temp blocks of
    -- the statements its sessions ran, in the recorder's block size), where the run's statements
    -- are known apart: a spill of another application is named, not blamed.
    temp AS (
        SELECT sum(o.temp_blks) FILTER (WHERE o.sampled_waits IS NOT NULL) * current_setting('block_size')::numeric AS own_bytes
        FROM telemetry._run_window(p_run_id) w, LATERAL (SELECT telemetry._run_statement_batch(p_run_id) AS batch) b,
             LATERAL telemetry._window_statements(w.snapshot_start, w.end_time, w.server, b.batch) o
        WHERE b.batch IS NOT NULL
        HAVING count(*) > 0),
    own_pct AS (  -- the batch's own lock seconds as a share of the run
        SELECT round(100 * l.own / nullif(extract(epoch FROM w.end_time - w.start_time), 0), 1) AS pct
        FROM locks l, telemetry._run_window(p_run_id) w),
    d AS (
        SELECT x.pattern,
               CASE WHEN x.pattern = 'temp_file_spills' AND EXISTS (SELECT FROM temp)
                    THEN coalesce(telemetry._severity(tmp.own_bytes, telemetry._threshold('temp_bytes_warning'), telemetry._threshold('temp_bytes_critical')), 'info')
                    WHEN NOT j.judged THEN x.severity
                    WHEN l.own < telemetry._threshold('run_own_lock_seconds') THEN 'info'
                    ELSE coalesce(telemetry._severity(p.pct, telemetry._threshold('lock_wait_pct_warning'), telemetry._threshold('lock_wait_pct_critical')), 'info')
               END AS severity,
               CASE WHEN x.pattern = 'temp_file_spills' AND EXISTS (SELECT FROM temp)
                    THEN CASE WHEN coalesce(tmp.own_bytes, 0) = 0
                              THEN format('Other sessions spilled to temporary files during the run; the batch''s own statements wrote 0 B, so spills did not slow it. %s', x.summary)
                              -- (a spill that did slow it is the account's: temp_spill)
                              WHEN tmp.own_bytes < telemetry._threshold('temp_bytes_warning')
                              THEN format('The batch''s own statements spilled little: %s of temporary blocks written, under temp_bytes_warning (%s). Across the server: %s',
                                          telemetry._pretty_bytes(tmp.own_bytes::bigint), telemetry._pretty_bytes(telemetry._threshold('temp_bytes_warning')::bigint), x.summary)
                              ELSE format('The batch''s own statements spilled: %s of temporary blocks written (pg_stat_statements, rewrites of a merge included). Across the server: %s',
                                          telemetry._pretty_bytes(tmp.own_bytes::bigint), x.summary) END
                    WHEN NOT j.judged THEN x.summary
                    WHEN l.own < telemetry._threshold('run_own_lock_seconds')
                    THEN format('Other sessions waited %s s on locks during the run; the batch''s own sessions waited %s s, so locks did not slow it. %s',
                                round(l.other, 1), round(l.own, 1), x.summary)
                    ELSE format('The batch''s own sessions waited %s s on locks (%s%% of the run)%s; other sessions %s s. Across the server: %s',
                                round(l.own, 1), p.pct,
                                coalesce((SELECT format(', mostly behind %s%s (%s), waiting for %s%s', CASE WHEN b.own_session THEN 'the batch''s own session, ' ELSE '' END,
                                                        telemetry._lock_holder(b.blocking_pid),
                                                        coalesce(nullif(b.blocking_app, ''), b.blocking_user, '?'),
                                                        telemetry._lock_target(b.lock_type, b.locked_relation, b.locked_object),
                                                        CASE WHEN b.own_session THEN ': its sessions wait for each other' ELSE '' END)
                                          FROM own_blockers b LIMIT 1), ''),
                                round(l.other, 1), x.summary)
               END AS summary,
               CASE WHEN j.judged THEN x.evidence || jsonb_build_object('batch_lock_wait_seconds', l.own, 'other_lock_wait_seconds', l.other,
                                                                         'batch_blockers', (SELECT jsonb_agg(to_jsonb(b)) FROM (SELECT * FROM own_blockers LIMIT 3) b))
                    WHEN x.pattern = 'temp_file_spills' AND EXISTS (SELECT FROM temp)
                    THEN x.evidence || jsonb_build_object('batch_temp_bytes', coalesce(tmp.own_bytes, 0))
                    ELSE x.evidence END AS evidence,
               CASE WHEN j.judged AND l.own >= telemetry._threshold('run_own_lock_seconds') AND (SELECT b.own_session FROM own_blockers b LIMIT 1)
                    THEN 'The batch''s own sessions block each other: they update the same rows or lock the same tables at once. Give each session its own share of the rows (by key range or partition), take the locks in one order, or run those steps one after another.'
                    ELSE x.recommendation END AS recommendation, x.ord
        FROM telemetry._run_window(p_run_id) w,
            LATERAL telemetry._diagnose(w.start_time, w.end_time, w.snapshot_start, w.server) WITH ORDINALITY x(pattern, severity, summary, evidence, recommendation, ord),
            locks l, own_pct p LEFT JOIN temp tmp ON true, LATERAL (SELECT x.pattern = 'lock_contention' AND l.covered AS judged) j)
    SELECT d.pattern, d.severity, d.summary, d.evidence, d.recommendation, d.ord FROM d
$$;
