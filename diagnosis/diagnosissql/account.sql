-- The account of a run (issue 19): its wall time split by what the batch's own sessions were
-- doing, from the wait sampler's own-session samples (batch_wait_samples), for the run and its
-- baseline runs at once; the causes (diagnosis/findings, one folder each) explain the run's
-- extra time from it, and run_diagnosis puts them together.

INSERT INTO telemetry.diagnose_thresholds (name, value, unit, description) VALUES
    ('run_slow_min_extra_seconds', 1, 'seconds',
     'A run is slower than usual, and its causes findings above info, when it took at least this much longer than its baseline median (and run_slow_min_extra_pct of it).'),
    ('run_slow_min_extra_pct', 20, 'percent',
     'A run is slower than usual when its extra time is at least this share of its baseline median duration (and run_slow_min_extra_seconds).'),
    ('cause_min_share_pct', 10, 'percent',
     'A cause is a finding above info when it explains at least this share of a slow run''s extra time: critical from 50%.'),
    ('cause_min_seconds', 0.3, 'seconds',
     'A cause explaining less than this of a run''s extra time is not a finding.'),
    ('transaction_overhead_microseconds', 100, 'microseconds',
     'Where the batch committed far more often than usual (client_wait''s commits), the server''s own work of its transactions (BEGIN, COMMIT, and a statement at its usual calls alone in its transaction, taking its locks and a transaction ID each time) is the commits'', where a statement took at most this much more a call by pg_stat_statements, and its sampled time rose at most this much for each of its calls that was an extra commit.'),
    ('sampling_noise_seconds', 2, 'seconds',
     'A statement of a run no slower per call by pg_stat_statements is left unexplained, not a regression, where the wait sampler booked it at most this much beyond what pg_stat_statements counted (a sample''s span goes whole to the statement seen at its instant).')
ON CONFLICT (name) DO UPDATE SET unit = excluded.unit, description = excluded.description;

-- _account_bucket is where one sampled session-second of a batch's own session goes: what the
-- session was doing (its state and wait) and, for the commit's waits, its statement.
CREATE OR REPLACE FUNCTION telemetry._account_bucket(p_state text, p_wait_event_type text, p_wait_event text, p_query text)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE
        WHEN p_state = 'idle' THEN 'between statements'
        WHEN p_state LIKE 'idle in transaction%' THEN 'idle in transaction'
        WHEN p_wait_event_type = 'Client' THEN 'waiting for the client: Client:' || p_wait_event
        -- A commit waits for its WAL to be flushed (and, with synchronous replication, for a
        -- standby): in an explicit COMMIT, or at the end of a statement of its own transaction.
        WHEN p_wait_event = 'SyncRep'
          OR p_wait_event IN ('WALWrite', 'WALSync', 'WALFlush') AND p_query ~* '^\s*(commit|end)\M' THEN 'at commit: ' || p_wait_event
        WHEN p_wait_event_type = 'Running' THEN 'CPU'
        ELSE p_wait_event_type || ':' || p_wait_event
    END
$$;

-- _account_cause is the cause a bucket's time belongs to, where the bucket alone says it
-- (NULL: the statement's own work, CPU and its other waits, whose cause run_diagnosis judges
-- from the statement: more work, slower per call, other sessions' contention, I/O).
CREATE OR REPLACE FUNCTION telemetry._account_cause(p_bucket text)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE
        WHEN p_bucket LIKE 'Lock:%' AND p_bucket <> 'Lock:extend' THEN 'lock_wait'
        WHEN p_bucket LIKE 'at commit:%' THEN 'commit_wait'
        WHEN p_bucket LIKE 'IO:BufFile%' THEN 'temp_spill'
        -- the WAL's waits outside a commit (a commit's are 'at commit:'; 17 renamed IO:WALWrite
        -- IO:WalWrite), and checkpoints'
        WHEN p_bucket ~* '^(IO|LWLock):WAL' OR p_bucket LIKE 'IPC:Checkpoint%' THEN 'wal_pressure'
        WHEN p_bucket IN ('between statements', 'idle in transaction', 'no own session active')
          OR p_bucket LIKE 'waiting for the client:%' THEN 'client_wait'
    END
$$;

-- _runs_with_baseline: a run (this_run) and its baseline runs (_normal_runs_before its
-- start), each with its window and its server as recorded.
CREATE OR REPLACE FUNCTION telemetry._runs_with_baseline(p_run_id bigint)
RETURNS TABLE (run_id bigint, this_run boolean, batch text, start_time timestamptz, end_time timestamptz, server text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT w.run_id, true, w.batch, w.start_time, w.end_time, telemetry._resolve_server(w.server)
    FROM telemetry._run_window(p_run_id) w
    UNION ALL
    SELECT b.run_id, false, b.batch, b.start_time, b.end_time, telemetry._resolve_server(b.server)
    FROM telemetry._baseline_runs(p_run_id) b
$$;

-- _run_account_rows: the account of a run and of each of its baseline runs (_normal_runs_before
-- its start), in one read of the samples. Each sample's own-session seconds are spread over the
-- wall time they stand for: the longest active session of the sample is the time some own
-- session was active, shared among the active rows in proportion to their seconds (four
-- sessions waiting on a lock for a second each are one second of the run, not four); the time
-- sessions were otherwise in the sample, idle (in transaction), likewise among the idle rows.
-- What no sample covers, [started_at, ended_at] minus the samples' time (the last sample's
-- standing for up to its span after it too), is 'no own session active': the application's own
-- time. recorded: the run has own-session samples at all (a run recorded without the batch
-- tracker has none, and no account).
CREATE OR REPLACE FUNCTION telemetry._run_account_rows(p_run_id bigint)
RETURNS TABLE (run_id bigint, this_run boolean, duration numeric, recorded boolean, bucket text, queryid bigint, seconds numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH runs AS (SELECT * FROM telemetry._runs_with_baseline(p_run_id)),
    -- A sample's rows of a session may be several (the exporter sums its 250 ms readings by
    -- state, wait and statement into a sample a second): pid_seconds, their sum, is its span.
    read AS (
        SELECT r.run_id, r.server, r.start_time, r.end_time, s.*,
               sum(s.seconds) OVER (PARTITION BY r.run_id, s.captured_at, s.pid) AS pid_seconds,
               max(s.captured_at) OVER (PARTITION BY r.run_id) AS last_captured_at
        FROM runs r
        CROSS JOIN LATERAL (
            SELECT b.sample_id, b.captured_at, b.pid, b.state, b.wait_event_type, b.wait_event, b.queryid, b.seconds::numeric AS seconds
            FROM telemetry.batch_wait_samples b
            WHERE b.server = r.server AND b.batch = r.batch AND b.own AND b.captured_at BETWEEN r.start_time AND r.end_time) s),
    -- A sample stands for its session's span since the reading before it, cut at the run's start
    -- (its rows alike). The time from a run's last sample to its end (up to the samples' spacing,
    -- a second) is no sample's: the sessions went on as that sample saw them (the statement it
    -- caught ran on to the run's end), so its rows stand for that time too, up to their span.
    -- Left to 'no own session active', it was the application's: a second's noise, from run to
    -- run, in client_wait.
    sampled AS (
        SELECT x.run_id, x.server, x.sample_id, x.captured_at, x.pid, x.state, x.wait_event_type, x.wait_event, x.queryid,
               x.seconds * least(1, extract(epoch FROM x.captured_at - x.start_time) / nullif(x.pid_seconds, 0)) AS seconds
        FROM read x
        UNION ALL
        SELECT x.run_id, x.server, x.sample_id, x.end_time, x.pid, x.state, x.wait_event_type, x.wait_event, x.queryid,
               x.seconds * least(1, extract(epoch FROM x.end_time - x.captured_at) / nullif(x.pid_seconds, 0))
        FROM read x WHERE x.captured_at = x.last_captured_at AND x.end_time > x.captured_at),
    own AS (
        SELECT s.run_id, s.sample_id, s.captured_at, s.pid, s.state = 'active' AS active,
               telemetry._account_bucket(s.state, s.wait_event_type, s.wait_event, tx.query) AS bucket, s.queryid, s.seconds
        FROM sampled s
        LEFT JOIN telemetry.statement_texts tx ON tx.server = s.server AND tx.queryid = s.queryid AND s.queryid <> 0),
    per_pid AS (
        SELECT o.run_id, o.sample_id, o.captured_at, o.pid,
               sum(o.seconds) FILTER (WHERE o.active) AS active, sum(o.seconds) AS total
        FROM own o GROUP BY 1, 2, 3, 4),
    per_sample AS (
        SELECT p.run_id, p.sample_id, p.captured_at,
               coalesce(max(p.active), 0) AS active_wall, greatest(max(p.total) - coalesce(max(p.active), 0), 0) AS idle_wall,
               coalesce(sum(p.active), 0) AS active_seconds, sum(p.total) - coalesce(sum(p.active), 0) AS idle_seconds
        FROM per_pid p GROUP BY 1, 2, 3),
    spread AS (
        SELECT o.run_id, o.bucket, o.queryid,
               sum(CASE WHEN o.active THEN o.seconds * ps.active_wall / nullif(ps.active_seconds, 0)
                        ELSE o.seconds * ps.idle_wall / nullif(ps.idle_seconds, 0) END) AS seconds
        FROM own o JOIN per_sample ps USING (run_id, sample_id, captured_at)
        GROUP BY 1, 2, 3)
    SELECT r.run_id, r.this_run, d.duration, EXISTS (SELECT FROM spread s WHERE s.run_id = r.run_id), x.bucket, x.queryid, x.seconds
    FROM runs r
    CROSS JOIN LATERAL (SELECT extract(epoch FROM r.end_time - r.start_time)::numeric AS duration,
                               coalesce((SELECT sum(s.seconds) FROM spread s WHERE s.run_id = r.run_id), 0) AS sampled) d
    CROSS JOIN LATERAL (
        -- The wall time is the envelope: readings late on a loaded machine can book a little
        -- more than it (a reading's span reaches back before the run's first collection), and
        -- that excess is spread over the buckets rather than added to the run.
        SELECT s.bucket, s.queryid, coalesce(s.seconds * least(1, d.duration / nullif(d.sampled, 0)), 0) AS seconds
        FROM spread s WHERE s.run_id = r.run_id
        UNION ALL
        SELECT 'no own session active', 0, greatest(d.duration - d.sampled, 0)) x
$$;

-- run_account: a run's account against its baseline. Per bucket (CPU, each wait event, 'at
-- commit: <wait>', 'waiting for the client: <wait>', 'between statements', 'idle in transaction', 'no own
-- session active') and statement (queryid; 0 none known; time outside a statement is the
-- statement before's), the run's seconds of wall time, the median over its baseline runs
-- recorded with own sessions (0 where a run had none of it) and the extra: the run minus that
-- median. The rows with queryid NULL are the buckets' totals (their own medians).
CREATE OR REPLACE FUNCTION telemetry.run_account(p_run_id bigint)
RETURNS TABLE (bucket text, queryid bigint, query text, seconds numeric, baseline_median_seconds numeric,
               extra_seconds numeric, baseline_runs integer)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH a AS (SELECT * FROM telemetry._run_account_rows(p_run_id) WHERE recorded),
    runs AS (SELECT DISTINCT a.run_id, a.this_run FROM a),
    sums AS (SELECT a.run_id, a.bucket, a.queryid, sum(a.seconds) AS seconds
             FROM a GROUP BY GROUPING SETS ((a.run_id, a.bucket, a.queryid), (a.run_id, a.bucket))),
    keys AS (SELECT DISTINCT s.bucket, s.queryid FROM sums s JOIN runs r ON r.run_id = s.run_id AND r.this_run),
    vals AS (SELECT k.bucket, k.queryid, r.this_run, coalesce(s.seconds, 0) AS seconds
             FROM keys k CROSS JOIN runs r
             LEFT JOIN sums s ON s.run_id = r.run_id AND s.bucket = k.bucket AND s.queryid IS NOT DISTINCT FROM k.queryid),
    med AS (SELECT v.bucket, v.queryid, max(v.seconds) FILTER (WHERE v.this_run) AS seconds,
                   (percentile_cont(0.5) WITHIN GROUP (ORDER BY v.seconds) FILTER (WHERE NOT v.this_run))::numeric AS median,
                   count(*) FILTER (WHERE NOT v.this_run)::int AS runs
            FROM vals v GROUP BY 1, 2)
    SELECT m.bucket, m.queryid, tx.query, round(m.seconds, 3), round(m.median, 3), round(m.seconds - m.median, 3), m.runs
    FROM med m
    LEFT JOIN telemetry._run_window(p_run_id) w ON true
    LEFT JOIN telemetry.statement_texts tx ON tx.server = telemetry._resolve_server(w.server) AND tx.queryid = m.queryid
    ORDER BY m.queryid IS NOT NULL, m.seconds - coalesce(m.median, 0) DESC, m.bucket, m.queryid
$$;

-- _xmin_holders: what held the cleanup (xmin) horizon of a server back between two times,
-- as its samples saw (xmin_horizon_samples): a row each sample that saw a holder (a session by
-- its pid, anything else by its name) with one xmin, standing for the time until the server's
-- next sample (until: its own time for the last), with that holder's first and last sighting
-- and since when it held that xmin as the server told (held_since). Where p_dbs is given, only
-- the holders of those databases and of none (slots, standbys); p_pids are sessions whose own
-- holding does not count (a batch's): left out, and so is any other holder at a sample where
-- one of them held an older xmin (an equal one is the holder's: a snapshot's xmin is the
-- oldest transaction running).
CREATE OR REPLACE FUNCTION telemetry._xmin_holders(p_server text, p_from timestamptz, p_to timestamptz, p_pids integer[], p_dbs text[])
RETURNS TABLE (kind text, pid integer, datname text, usename text, name text, horizon_xid bigint, held_since timestamptz,
               first_seen timestamptz, last_seen timestamptz, seen_at timestamptz, until timestamptz, xmin_age bigint,
               state text, query text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    -- The sightings first (by server and time): the samples are read from the first of them,
    -- and a month's run that nothing held reads none.
    WITH sighted AS (
        SELECT x.* FROM telemetry.xmin_horizon_samples x
        WHERE x.server = p_server AND x.captured_at BETWEEN p_from AND p_to
          AND (x.datname IS NULL OR p_dbs IS NULL OR x.datname = ANY (p_dbs))),
    smp AS (
        SELECT s.id, s.captured_at, lead(s.captured_at) OVER (ORDER BY s.captured_at) AS next_at
        FROM telemetry.samples s
        WHERE s.server = p_server AND s.captured_at BETWEEN (SELECT min(x.captured_at) FROM sighted x) AND p_to),
    seen AS (
        SELECT x.*, smp.next_at, CASE WHEN x.kind = 'session' THEN x.pid END AS session_pid
        FROM smp JOIN sighted x ON x.sample_id = smp.id AND x.captured_at = smp.captured_at),
    held AS (
        SELECT x.* FROM seen x
        WHERE NOT coalesce(x.session_pid = ANY (p_pids), false)
          AND NOT EXISTS (SELECT FROM seen y WHERE y.sample_id = x.sample_id AND y.session_pid = ANY (p_pids) AND y.xmin_age > x.xmin_age))
    SELECT x.kind, x.pid, x.datname, x.usename, x.name, x.horizon_xid, min(x.held_since) OVER w, min(x.captured_at) OVER w,
           max(x.captured_at) OVER w, x.captured_at, coalesce(x.next_at, x.captured_at), x.xmin_age, x.state, x.query_preview
    FROM held x
    WINDOW w AS (PARTITION BY x.kind, x.session_pid, x.datname, x.name, x.horizon_xid);
END
$$;

-- _xmin_holder_json is a holder (an _xmin_holders row, as JSON) as the findings show it.
CREATE OR REPLACE FUNCTION telemetry._xmin_holder_json(h jsonb)
RETURNS jsonb LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object('kind', h->'kind', 'pid', h->'pid', 'datname', h->'datname', 'usename', h->'usename', 'name', h->'name',
                              'state', h->'state', 'held_since', h->'held_since', 'xmin_age', h->'xmin_age', 'query', h->'query')
$$;

-- _xmin_holder_text names a holder (_xmin_holder_json) as the findings say it.
CREATE OR REPLACE FUNCTION telemetry._xmin_holder_text(h jsonb)
RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE h->>'kind'
        WHEN 'session' THEN format('session %s (user %s, application "%s", %s%s%s)', h->>'pid', coalesce(h->>'usename', '?'),
                                   coalesce(h->>'name', ''), coalesce(h->>'state', 'state unknown'),
                                   ', holding it since ' || telemetry._ts((h->>'held_since')::timestamptz),
                                   ': "' || (h->>'query') || '"')
        WHEN 'standby_feedback' THEN format('a standby''s hot_standby_feedback ("%s", its slot or its walsender''s application_name): a query on the standby',
                                            coalesce(h->>'name', ''))
        WHEN 'prepared_transaction' THEN format('prepared transaction "%s" (owner %s, database %s, prepared %s)', h->>'name',
                                                coalesce(h->>'usename', '?'), coalesce(h->>'datname', '?'), telemetry._ts((h->>'held_since')::timestamptz))
        WHEN 'replication_slot' THEN format('replication slot "%s" (%s)', h->>'name', coalesce(h->>'state', '?'))
        ELSE coalesce(h->>'kind', 'an unknown holder') END
$$;

-- _runs_xmin_horizon: for a run and each of its baseline runs, the share of its time the
-- cleanup (xmin) horizon of its batch's databases was held back, and by what: of the holders
-- of its databases (_xmin_holders, but for the batch's own sessions), the one that held it
-- longest during the run: the time its sightings stand for (each until the next sample; the
-- samples 5 minutes around the run read too), from the run's start where it held it from
-- before (held_since), else once it has held it xmin_horizon_min_seconds. held_pct 0: nothing
-- held it; NULL: not known: a run from before xmin_horizon_samples was recorded (migration
-- 0023), or without own sessions sampled (no account either).
CREATE OR REPLACE FUNCTION telemetry._runs_xmin_horizon(p_run_id bigint)
RETURNS TABLE (run_id bigint, this_run boolean, held_pct numeric, holder jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH runs AS (SELECT * FROM telemetry._runs_with_baseline(p_run_id)),
    own AS (
        SELECT r.run_id, array_agg(DISTINCT b.pid) AS pids, array_agg(DISTINCT b.datname) FILTER (WHERE b.datname IS NOT NULL) AS dbs
        FROM runs r JOIN telemetry.batch_wait_samples b
          ON b.server = r.server AND b.batch = r.batch AND b.own AND b.captured_at BETWEEN r.start_time AND r.end_time
        GROUP BY 1),
    sighted AS (
        SELECT r.run_id, h.*,
               greatest(r.start_time, CASE WHEN h.held_since <= r.start_time THEN r.start_time
                                           ELSE coalesce(h.held_since, h.first_seen)
                                                + make_interval(secs => telemetry._threshold('xmin_horizon_min_seconds')) END) AS holds_from
        FROM runs r JOIN own o ON o.run_id = r.run_id,
             LATERAL telemetry._xmin_holders(r.server, r.start_time - interval '5 minutes', r.end_time + interval '5 minutes', o.pids, o.dbs) h),
    spans AS (  -- each holder's time holding it in the run: its sightings' stretches, from when it held it long enough
        SELECT x.run_id, x.kind, x.datname, x.name, x.horizon_xid, min(x.held_since) AS held_since, max(x.xmin_age) AS xmin_age,
               (array_agg(x.pid ORDER BY x.seen_at DESC))[1] AS pid, (array_agg(x.usename ORDER BY x.seen_at DESC))[1] AS usename,
               (array_agg(x.state ORDER BY x.seen_at DESC))[1] AS state, (array_agg(x.query ORDER BY x.seen_at DESC))[1] AS query,
               sum(greatest(least(x.until, r.end_time) - greatest(x.seen_at, x.holds_from), interval '0')) AS held
        FROM sighted x JOIN runs r ON r.run_id = x.run_id
        GROUP BY x.run_id, x.kind, CASE WHEN x.kind = 'session' THEN x.pid END, x.datname, x.name, x.horizon_xid),
    recorded AS (SELECT min(m.applied_at) AS since FROM telemetry.schema_migrations m WHERE m.name = '0023_xmin_horizon_samples.sql')
    SELECT r.run_id, r.this_run,
           CASE WHEN r.start_time >= (SELECT since FROM recorded) AND EXISTS (SELECT FROM own o WHERE o.run_id = r.run_id)
                THEN coalesce(round(100 * extract(epoch FROM max(s.held)) / nullif(extract(epoch FROM r.end_time - r.start_time), 0), 1), 0) END,
           (SELECT telemetry._xmin_holder_json(to_jsonb(x)) || jsonb_build_object('held_seconds', round(extract(epoch FROM x.held), 1))
            FROM spans x WHERE x.run_id = r.run_id AND x.held > interval '0' ORDER BY x.held DESC, x.xmin_age DESC LIMIT 1)
    FROM runs r LEFT JOIN spans s ON s.run_id = r.run_id
    GROUP BY r.run_id, r.this_run, r.start_time, r.end_time
$$;

-- _run_commits_rose: where the batch committed far more often than usual, its COMMIT (kind
-- 'commit'; p_statements: _run_statements' rows, pg_stat_statements' entries), its BEGIN and its
-- most called other statement, each with its calls and the baseline's. COMMIT ran
-- statement_more_work_ratio times its baseline's calls, and more often for each call of that
-- statement: smaller transactions, not more of its usual ones (a grown input committed row by
-- row as always; other sessions' commits in its entry are diluted by that statement's).
CREATE OR REPLACE FUNCTION telemetry._run_commits_rose(p_statements jsonb)
RETURNS TABLE (kind text, queryid bigint, query text, calls numeric, baseline_calls numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH counted AS (
        SELECT x.queryid, x.query, x.calls::numeric AS calls, round(x.baseline_calls) AS baseline_calls,
               CASE WHEN x.query ~* '^\s*(commit|end)\M' THEN 'commit'
                    WHEN x.query ~* '^\s*(begin|start\s+transaction)\M' THEN 'begin' ELSE 'statement' END AS kind
        FROM jsonb_to_recordset(coalesce(p_statements, '[]')) AS x (queryid bigint, query text, calls bigint, baseline_calls numeric)
        WHERE x.queryid <> 0 AND x.calls IS NOT NULL),
    top AS (SELECT DISTINCT ON (c.kind) c.* FROM counted c ORDER BY c.kind, c.calls DESC, c.queryid),
    rose AS (SELECT 1 FROM top c LEFT JOIN top w ON w.kind = 'statement'
             WHERE c.kind = 'commit'
               AND c.calls >= telemetry._threshold('statement_more_work_ratio') * greatest(c.baseline_calls, 1)
               AND c.calls / nullif(w.calls, 0) >= telemetry._threshold('statement_more_work_ratio') * greatest(c.baseline_calls, 1) / nullif(w.baseline_calls, 0))
    SELECT t.kind, t.queryid, t.query, t.calls, t.baseline_calls FROM top t WHERE EXISTS (SELECT FROM rose)
$$;

-- _run_causes is the account the causes (diagnosis/findings) explain a run's extra time from,
-- as one value computed once: the run's duration against its baseline's median (the baseline
-- runs recorded with own sessions), and every sampled second of the run and its baseline runs
-- with its cause. A bucket's cause where it has one (_account_cause); else the statement's
-- work, judged per statement: new_statement where no baseline run ran it (neither sampled
-- nor counted by pg_stat_statements: a statement too quick to be sampled then is not new); more_work where
-- pg_stat_statements (p_statements, _run_statements' rows) counted more calls or rows and the
-- entry's time is the batch's own (not shared: other sessions were not seen running it, and
-- its time is not beyond the batch's sampled own seconds), its spills too: statement_more_work_ratio
-- times the baseline's (or more calls, rows or blocks read at about the baseline's time for that
-- work, where nothing more specific below, a change, a plan, a spill, explains it);
-- what_changed where a change since the baseline may have slowed it (_run_change_links);
-- temp_spill for its IO:BufFile waits, or where its temporary blocks per call grew (the entry
-- the batch's own); xmin_horizon where the cleanup horizon was held back through the run and
-- not its baseline runs (_runs_xmin_horizon) and the statement read more blocks per call;
-- cpu_contention for CPU time where other sessions were busier than in the
-- baseline runs; wal_pressure for CPU time where its WAL per call rose statement_wal_ratio
-- times at the same blocks per row, statement_wal_min_extra_bytes more in all; io_wait for I/O waits unless its
-- blocks per row rose (a plan); else statement_regression, slower per call at the same work.
-- Where auto_explain's plans were captured (run_plans), a statement whose plan changed is
-- plan_changed (planner_setting where it ran with other planner settings than the baseline's
-- plan), and one whose parallel workers were not launched (its plans, or pg_stat_statements
-- 1.12 on 18), parallel_workers_not_launched. A statement of an ended run whose time did not
-- rise by pg_stat_statements (by under cause_min_seconds, its work the same, or the samples
-- booking it well beyond what was counted) is unattributed: the samples' noise, no cause's; so
-- are the batch tracker's own calls. Where the batch committed far more often than usual, its
-- transactions' own work is client_wait's, the commits' (up to transaction_overhead_microseconds
-- a call).
-- rows: per cause, bucket and statement, seconds, baseline median and extra; causes: per
-- cause the run's total, the median of the baseline runs' totals and the extra; commits_rose:
-- _run_commits_rose's rows (none where the commits did not rise).
CREATE OR REPLACE FUNCTION telemetry._run_causes(p_run_id bigint, p_statements jsonb)
RETURNS jsonb LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH a AS (SELECT * FROM telemetry._run_account_rows(p_run_id) WHERE recorded),
    w AS (SELECT w.*, telemetry._resolve_server(w.server) AS srv FROM telemetry._run_window(p_run_id) w),
    runs AS (SELECT DISTINCT a.run_id, a.this_run, a.duration FROM a),
    nbase AS (SELECT count(*)::int AS n, (percentile_cont(0.5) WITHIN GROUP (ORDER BY r.duration))::numeric AS duration
              FROM runs r WHERE NOT r.this_run),
    cur AS (SELECT max(r.duration) AS duration FROM runs r WHERE r.this_run),
    st AS (SELECT * FROM jsonb_to_recordset(coalesce(p_statements, '[]')) AS x (
               queryid bigint, query text, status text, seconds numeric, baseline_seconds numeric, calls bigint, baseline_calls numeric, rows bigint, baseline_rows numeric,
               seconds_per_call numeric, baseline_seconds_per_call numeric, blocks_per_call numeric, baseline_blocks_per_call numeric,
               blocks_per_row numeric, baseline_blocks_per_row numeric, temp_per_call numeric, baseline_temp_per_call numeric,
               wal_per_call numeric, baseline_wal_per_call numeric, baseline_runs integer, baseline_runs_with integer)),
    -- Statements other sessions were seen running during the run (the wait sampler's seconds
    -- of every session but the batch's own).
    others AS (SELECT DISTINCT x.queryid FROM w, telemetry.statement_wait_samples x
               WHERE x.server = w.srv AND x.captured_at BETWEEN w.start_time AND w.end_time AND x.batch <> w.batch AND x.queryid <> 0),
    own_stmt AS (SELECT a.queryid, sum(a.seconds) FILTER (WHERE a.this_run) AS seconds,
                        max(a.seconds) FILTER (WHERE NOT a.this_run) AS baseline_max
                 FROM a WHERE a.queryid <> 0 GROUP BY 1),
    busy AS (SELECT telemetry._run_other_busy(p_run_id) AS run,
                    (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY telemetry._run_other_busy(r.run_id))::numeric
                     FROM runs r WHERE NOT r.this_run) AS baseline),
    -- The cleanup horizon held back during the run (most of it) and not in its baseline runs (median).
    -- (not judged where no baseline run was recorded with its holders)
    hz AS (SELECT x.run_pct, x.baseline_pct, x.holder,
                  coalesce(x.run_pct >= telemetry._threshold('xmin_horizon_held_pct') AND x.baseline_pct < telemetry._threshold('xmin_horizon_held_pct'), false) AS held
           FROM (SELECT max(h.held_pct) FILTER (WHERE h.this_run) AS run_pct,
                        (percentile_cont(0.5) WITHIN GROUP (ORDER BY h.held_pct) FILTER (WHERE NOT h.this_run))::numeric AS baseline_pct,
                        (array_agg(h.holder) FILTER (WHERE h.this_run))[1] AS holder
                 FROM telemetry._runs_xmin_horizon(p_run_id) h) x),
    keys AS (SELECT DISTINCT a.bucket, a.queryid FROM a),
    texts AS (SELECT tx.queryid, tx.query FROM w JOIN telemetry.statement_texts tx ON tx.server = w.srv
              WHERE tx.queryid IN (SELECT k.queryid FROM keys k WHERE k.queryid <> 0)),
    -- The batch tracker's own calls in the batch's sessions (telemetry.batch_begin and
    -- batch_end): the same brief work in every run, which pg_stat_statements' rows of the run
    -- leave out; a sample that caught one is no cause's.
    tracker AS (SELECT t.queryid FROM texts t WHERE t.query ~* '^\s*select\s+(\*\s+from\s+)?telemetry\.batch_(begin|end)\s*\('),
    -- shared: other sessions ran the statement too (seen running it, or its entry's time well
    -- beyond what the batch's sessions were sampled in it: pg_stat_statements keeps one entry
    -- for all). own_entry: the entry is the batch's alone and its counters hold, so its
    -- calls, rows and blocks are the batch's work.
    entries AS (
        SELECT q.queryid, x.shared, NOT x.shared AND s.status <> 'reset' AS own_entry
        FROM (SELECT DISTINCT k.queryid FROM keys k) q
        LEFT JOIN st s ON s.queryid = q.queryid AND q.queryid <> 0
        LEFT JOIN others o ON o.queryid = q.queryid
        LEFT JOIN own_stmt os ON os.queryid = q.queryid
        CROSS JOIN LATERAL (SELECT o.queryid IS NOT NULL OR s.seconds > 1.5 * coalesce(os.seconds, 0) + 1 AS shared) x),
    -- The batch committed far more often than usual (_run_commits_rose, of the entries that are
    -- the batch's own and that its sessions were seen running in the run): the server's own
    -- work of its transactions is the commits' (client_wait's), not its statements'. That is
    -- BEGIN's and COMMIT's (kind 'transaction'), and, where no other cause below claims it,
    -- time in no known statement and a statement's at its usual calls, rows and blocks, alone
    -- in its transaction now, taking its locks and a transaction ID each time (kind
    -- 'statement'): where it took at most transaction_overhead_microseconds more a call by
    -- pg_stat_statements and its sampled time rose at most that much for each of its calls
    -- that was an extra commit. More is the statement's own (a regression called once is not
    -- hidden behind 40,000 commits).
    rose AS (SELECT * FROM telemetry._run_commits_rose((
                 SELECT jsonb_agg(to_jsonb(s)) FROM st s JOIN entries e ON e.queryid = s.queryid AND e.own_entry
                 WHERE s.queryid IN (SELECT os.queryid FROM own_stmt os WHERE os.seconds > 0)))),
    commits AS (SELECT c.calls - c.baseline_calls AS extra, telemetry._threshold('transaction_overhead_microseconds') / 1e6 AS per_call
                FROM rose c WHERE c.kind = 'commit'),
    txn_keys AS (
        SELECT k.bucket, k.queryid, CASE WHEN k.queryid <> 0 AND t.query IS NOT NULL THEN 'transaction' ELSE 'statement' END AS kind,
               c.per_call * least(s.calls, c.extra) AS bound
        FROM commits c CROSS JOIN keys k
        LEFT JOIN texts t ON t.queryid = k.queryid AND t.query ~* '^\s*(begin|start\s+transaction|commit|end)\M'
        LEFT JOIN st s ON s.queryid = k.queryid AND k.queryid <> 0
        LEFT JOIN entries e ON e.queryid = k.queryid
        WHERE telemetry._account_cause(k.bucket) IS NULL
          AND (k.queryid = 0 OR t.query IS NOT NULL
               OR e.own_entry AND s.calls > 0
                  AND s.calls < telemetry._threshold('statement_growth_ratio') * s.baseline_calls
                  AND s.rows < telemetry._threshold('statement_growth_ratio') * greatest(s.baseline_rows, 1)
                  AND NOT coalesce(s.blocks_per_call > telemetry._threshold('statement_growth_ratio') * s.baseline_blocks_per_call, false)
                  AND s.seconds_per_call - coalesce(s.baseline_seconds_per_call, 0) <= c.per_call)),
    txn AS (
        SELECT t.bucket, t.queryid, t.kind FROM txn_keys t
        WHERE t.queryid IN (
            SELECT x.queryid FROM txn_keys x
            CROSS JOIN LATERAL (
                SELECT max(y.seconds) FILTER (WHERE y.this_run)
                       - coalesce((percentile_cont(0.5) WITHIN GROUP (ORDER BY y.seconds) FILTER (WHERE NOT y.this_run))::numeric, 0) AS extra
                FROM (SELECT r.this_run, coalesce(sum(a.seconds), 0) AS seconds
                      FROM runs r LEFT JOIN a ON a.run_id = r.run_id AND a.bucket = x.bucket AND a.queryid = x.queryid
                      GROUP BY r.run_id, r.this_run) y) v
            GROUP BY x.queryid, x.bound HAVING sum(greatest(v.extra, 0)) <= x.bound)),
    -- The statements a change since the baseline may have slowed (what_changed).
    changed AS (SELECT DISTINCT l.queryid FROM telemetry._run_change_links(p_run_id) l),
    -- The statements whose plan auto_explain showed changed against the baseline runs' plans
    -- (run_plans; none without --plans.source), and whether it ran with other planner
    -- settings than the baseline's plan; those whose parallel workers were planned and not
    -- launched, where the baseline's were.
    plans AS (SELECT p.queryid, bool_or(p.changed) AS changed,
                     bool_or(p.changed AND p.settings IS DISTINCT FROM p.baseline_settings) AS setting,
                     bool_or(p.workers_launched < p.workers_planned
                             AND p.workers_launched::numeric / p.executions < coalesce(p.baseline_workers_launched, 0)) AS workers_short
              FROM telemetry.run_plans(p_run_id) p GROUP BY p.queryid
              UNION ALL  -- pg_stat_statements 1.12 (18): without auto_explain
              SELECT x.queryid, false, false, true FROM telemetry._run_parallel_workers(p_run_id) x),
    judged AS (
        SELECT k.bucket, k.queryid,
               e.shared,
               -- A spill that grew with the rows is more work: more_work comes before temp_spill.
               CASE WHEN telemetry._account_cause(k.bucket) <> 'temp_spill' THEN telemetry._account_cause(k.bucket)
                    WHEN k.queryid IN (SELECT t.queryid FROM tracker t) THEN 'unattributed'
                    WHEN (k.bucket, k.queryid) IN (SELECT t.bucket, t.queryid FROM txn t WHERE t.kind = 'transaction') THEN 'client_wait'
                    WHEN k.queryid <> 0 AND (SELECT n FROM nbase) > 0 AND coalesce(os.baseline_max, 0) = 0
                         AND coalesce(s.baseline_runs_with, 0) = 0 THEN 'new_statement'
                    WHEN e.own_entry AND (s.calls >= telemetry._threshold('statement_more_work_ratio') * greatest(s.baseline_calls, 1)
                                         OR s.rows >= telemetry._threshold('statement_more_work_ratio') * greatest(s.baseline_rows, 1)) THEN 'more_work'
                    -- A change is the more specific reason: a lowered work_mem is why a statement spills.
                    WHEN k.queryid IN (SELECT c.queryid FROM changed c) THEN 'what_changed'
                    WHEN pl.setting THEN 'planner_setting'
                    WHEN pl.changed THEN 'plan_changed'
                    WHEN pl.workers_short THEN 'parallel_workers_not_launched'
                    WHEN telemetry._account_cause(k.bucket) = 'temp_spill' THEN 'temp_spill'
                    WHEN e.own_entry AND s.temp_per_call > 0
                         AND s.temp_per_call >= telemetry._threshold('temp_spill_ratio') * coalesce(s.baseline_temp_per_call, 0) THEN 'temp_spill'
                    -- Its work grew with row versions that could not be cleaned up: it read more blocks per call.
                    WHEN hz.held AND e.own_entry
                         AND s.baseline_blocks_per_call > 0
                         AND s.blocks_per_call >= telemetry._threshold('xmin_horizon_blocks_ratio') * s.baseline_blocks_per_call THEN 'xmin_horizon'
                    -- Less growth (an input a tenth larger: more calls, rows, or blocks read at
                    -- the same calls and rows, under the ratio that says a plan changed), its time
                    -- risen by pg_stat_statements, at about the baseline's time for that much work
                    -- (under statement_slower_ratio times its seconds scaled by the growth): the
                    -- input's growth, not a regression. A rise under cause_min_seconds is its
                    -- work's too where the samples booked about what was counted (under
                    -- statement_slower_ratio times it); a brief statement booked a sample's whole
                    -- span is the samples' noise (below).
                    WHEN e.own_entry AND s.baseline_seconds > 0
                         AND g.growth >= telemetry._threshold('statement_growth_ratio') AND s.seconds > s.baseline_seconds
                         AND s.seconds < telemetry._threshold('statement_slower_ratio') * s.baseline_seconds * g.growth
                         AND (s.seconds - s.baseline_seconds >= telemetry._threshold('cause_min_seconds')
                              OR os.seconds <= telemetry._threshold('statement_slower_ratio') * s.seconds) THEN 'more_work'
                    -- Not slower by pg_stat_statements (its time in the run less than
                    -- cause_min_seconds beyond its baseline median; its calls all counted: the
                    -- run ended normally, as a call cancelled, failed or still running is not
                    -- counted), and sampled no more than
                    -- sampling_noise_seconds beyond what it counted: what the samples booked to
                    -- it beyond the baseline is their noise (a sample's span goes whole to the
                    -- statement seen at its instant), not a regression nor more work. No cause's:
                    -- left unexplained. (More is time pg_stat_statements did not count: failed
                    -- calls retried, planning without track_planning.)
                    WHEN (SELECT w.status FROM w) IN ('succeeded', 'ended') AND e.own_entry
                         AND os.seconds <= s.seconds + telemetry._threshold('sampling_noise_seconds')
                         AND s.seconds - s.baseline_seconds < telemetry._threshold('cause_min_seconds') THEN 'unattributed'
                    WHEN k.bucket = 'CPU' AND b.run >= b.baseline + telemetry._threshold('other_busy_sessions') AND b.run >= 2 * b.baseline THEN 'cpu_contention'
                    -- Its CPU went into writing the WAL: many times its WAL per call (full-page
                    -- images after checkpoints) at the same blocks per row (a plan that touches
                    -- more pages writes more images too: that is statement_regression's), and
                    -- enough more WAL in all, against the baseline's calls, to cost time.
                    WHEN k.bucket = 'CPU' AND e.own_entry
                         AND s.baseline_wal_per_call > 0
                         AND s.wal_per_call >= telemetry._threshold('statement_wal_ratio') * s.baseline_wal_per_call
                         AND s.wal_per_call * s.calls - s.baseline_wal_per_call * s.baseline_calls >= telemetry._threshold('statement_wal_min_extra_bytes')
                         AND NOT coalesce(s.baseline_blocks_per_row > 0
                             AND s.blocks_per_row >= telemetry._threshold('statement_plan_change_ratio') * s.baseline_blocks_per_row, false) THEN 'wal_pressure'
                    WHEN k.bucket LIKE 'IO:%' AND NOT coalesce(s.baseline_blocks_per_row > 0
                         AND s.blocks_per_row >= telemetry._threshold('statement_plan_change_ratio') * s.baseline_blocks_per_row, false) THEN 'io_wait'
                    WHEN (k.bucket, k.queryid) IN (SELECT t.bucket, t.queryid FROM txn t) THEN 'client_wait'
                    ELSE 'statement_regression' END AS cause
        FROM keys k CROSS JOIN busy b CROSS JOIN hz
        LEFT JOIN entries e ON e.queryid = k.queryid
        LEFT JOIN st s ON s.queryid = k.queryid AND k.queryid <> 0
        -- how many times its work grew, where it did (NULL: it did not)
        LEFT JOIN LATERAL (SELECT x.growth FROM (SELECT greatest(s.calls / nullif(s.baseline_calls, 0), s.rows / nullif(s.baseline_rows, 0),
                                                                 CASE WHEN s.blocks_per_call < telemetry._threshold('statement_plan_change_ratio') * s.baseline_blocks_per_call
                                                                      THEN s.blocks_per_call * s.calls / nullif(s.baseline_blocks_per_call * s.baseline_calls, 0) END) AS growth) x
                           WHERE x.growth > 1) g ON true
        LEFT JOIN own_stmt os ON os.queryid = k.queryid
        LEFT JOIN (SELECT p.queryid, bool_or(p.changed) AS changed, bool_or(p.setting) AS setting, bool_or(p.workers_short) AS workers_short
                   FROM plans p GROUP BY p.queryid) pl ON pl.queryid = k.queryid AND k.queryid <> 0),
    caused AS (SELECT a.run_id, a.this_run, j.cause, a.bucket, a.queryid, a.seconds FROM a JOIN judged j USING (bucket, queryid)),
    -- per cause and per (cause, bucket, statement): every run's seconds, 0 where it had none
    by_cause AS (
        SELECT c.cause, r.this_run, coalesce(sum(x.seconds), 0) AS seconds
        FROM (SELECT DISTINCT cause FROM caused) c CROSS JOIN runs r
        LEFT JOIN caused x ON x.cause = c.cause AND x.run_id = r.run_id
        GROUP BY c.cause, r.run_id, r.this_run),
    by_row AS (
        SELECT k.cause, k.bucket, k.queryid, r.this_run, coalesce(x.seconds, 0) AS seconds
        FROM (SELECT DISTINCT cause, bucket, queryid FROM caused WHERE this_run) k CROSS JOIN runs r
        LEFT JOIN caused x ON x.cause = k.cause AND x.bucket = k.bucket AND x.queryid = k.queryid AND x.run_id = r.run_id),
    causes AS (
        SELECT b.cause, max(b.seconds) FILTER (WHERE b.this_run) AS seconds,
               coalesce((percentile_cont(0.5) WITHIN GROUP (ORDER BY b.seconds) FILTER (WHERE NOT b.this_run))::numeric, 0) AS baseline
        FROM by_cause b GROUP BY 1),
    rows AS (
        SELECT b.cause, b.bucket, b.queryid, max(b.seconds) FILTER (WHERE b.this_run) AS seconds,
               coalesce((percentile_cont(0.5) WITHIN GROUP (ORDER BY b.seconds) FILTER (WHERE NOT b.this_run))::numeric, 0) AS baseline
        FROM by_row b GROUP BY 1, 2, 3)
    SELECT jsonb_build_object(
        'run_id', p_run_id, 'batch', (SELECT batch FROM w),
        'recorded', EXISTS (SELECT FROM runs WHERE this_run),
        'duration', round((SELECT duration FROM cur), 3),
        'baseline_runs', (SELECT n FROM nbase), 'baseline_duration', round((SELECT duration FROM nbase), 3),
        'extra_seconds', round((SELECT duration FROM cur) - (SELECT duration FROM nbase), 3),
        'slow', coalesce((SELECT c.duration - n.duration >= greatest(telemetry._threshold('run_slow_min_extra_seconds'),
                                                                     telemetry._threshold('run_slow_min_extra_pct') / 100 * n.duration)
                          FROM cur c, nbase n), false),
        'other_busy_sessions', (SELECT run FROM busy), 'baseline_other_busy_sessions', round((SELECT baseline FROM busy), 2),
        'commits_rose', coalesce((SELECT jsonb_agg(to_jsonb(c)) FROM rose c), '[]'),
        'xmin_horizon', (SELECT jsonb_build_object('held_pct', hz.run_pct, 'baseline_held_pct', round(hz.baseline_pct, 1), 'holder', hz.holder) FROM hz),
        'causes', coalesce((SELECT jsonb_agg(jsonb_build_object('cause', c.cause, 'seconds', round(c.seconds, 3), 'baseline_seconds', round(c.baseline, 3),
                                                               'extra_seconds', round(c.seconds - c.baseline, 3)) ORDER BY c.seconds - c.baseline DESC)
                            FROM causes c), '[]'),
        'rows', coalesce((SELECT jsonb_agg(jsonb_build_object('cause', r.cause, 'bucket', r.bucket, 'queryid', r.queryid, 'query', tx.query,
                                                             'seconds', round(r.seconds, 3), 'baseline_seconds', round(r.baseline, 3),
                                                             'extra_seconds', round(r.seconds - r.baseline, 3), 'shared', j.shared,
                                                             'statistics', CASE WHEN NOT j.shared THEN to_jsonb(s) - 'queryid' END)
                                           ORDER BY r.seconds - r.baseline DESC)
                          FROM rows r JOIN judged j ON j.bucket = r.bucket AND j.queryid = r.queryid
                          LEFT JOIN st s ON s.queryid = r.queryid AND r.queryid <> 0
                          LEFT JOIN telemetry.statement_texts tx ON tx.server = (SELECT srv FROM w) AND tx.queryid = r.queryid), '[]'))
$$;

-- _account_cause_total is a cause's line of a _run_causes account: the run's seconds, the
-- baseline median and the extra (none where the run had none of it).
CREATE OR REPLACE FUNCTION telemetry._account_cause_total(p_account jsonb, p_cause text)
RETURNS TABLE (seconds numeric, baseline_seconds numeric, extra_seconds numeric)
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT c.seconds, c.baseline_seconds, c.extra_seconds
    FROM jsonb_to_recordset(p_account->'causes') AS c (cause text, seconds numeric, baseline_seconds numeric, extra_seconds numeric)
    WHERE c.cause = p_cause
$$;

-- _account_rows are a cause's rows of a _run_causes account, by bucket and statement.
CREATE OR REPLACE FUNCTION telemetry._account_rows(p_account jsonb, p_cause text)
RETURNS TABLE (bucket text, queryid bigint, query text, seconds numeric, baseline_seconds numeric, extra_seconds numeric,
               shared boolean, statistics jsonb)
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT r.bucket, r.queryid, r.query, r.seconds, r.baseline_seconds, r.extra_seconds, r.shared, r.statistics
    FROM jsonb_to_recordset(p_account->'rows') AS r (cause text, bucket text, queryid bigint, query text, seconds numeric,
                                                    baseline_seconds numeric, extra_seconds numeric, shared boolean, statistics jsonb)
    WHERE r.cause = p_cause
$$;

-- _account_children are a cause's statements, the most extra seconds first (those it took
-- more than usual), each with its seconds in this cause, whether other sessions ran it too
-- (shared: its pg_stat_statements counters are not the batch's alone, and it is judged on
-- the sampled own seconds) and, where not shared, its pg_stat_statements evidence.
CREATE OR REPLACE FUNCTION telemetry._account_children(p_account jsonb, p_cause text)
RETURNS jsonb LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(jsonb_agg(c ORDER BY c.extra_seconds DESC), '[]')
    FROM (SELECT r.queryid, min(r.query) AS query, string_agg(DISTINCT r.bucket, ', ') AS buckets,
                 sum(r.seconds) AS seconds, sum(r.baseline_seconds) AS baseline_seconds, sum(r.extra_seconds) AS extra_seconds,
                 bool_or(r.shared) AS shared, (array_agg(r.statistics))[1] AS statistics
          FROM telemetry._account_rows(p_account, p_cause) r
          GROUP BY r.queryid HAVING sum(r.extra_seconds) > 0
          ORDER BY sum(r.extra_seconds) DESC LIMIT 5) c
$$;

-- _children_text names a cause's statements in its summary: '"label" +1.2 s' each, shared
-- ones said so.
CREATE OR REPLACE FUNCTION telemetry._children_text(p_children jsonb)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT string_agg(format('"%s" +%s s%s', telemetry._statement_label(c.query, c.queryid), round(c.extra_seconds, 1),
                             CASE WHEN c.shared THEN ' (shared with other sessions: judged on its own sampled time)' ELSE '' END), '; ')
    FROM (SELECT * FROM jsonb_to_recordset(p_children) AS c (queryid bigint, query text, extra_seconds numeric, shared boolean) LIMIT 3) c
    WHERE c.queryid <> 0
$$;

-- _cause_finding is a cause's finding as every folder of diagnosis/findings gives it: the
-- seconds of the run's extra time the cause explains (its extra, where positive and at least
-- cause_min_seconds), graded by their share of the extra time (nothing above info where the
-- run was not slower than usual), a summary led by those seconds and the statements under it;
-- p_story says the rest.
CREATE OR REPLACE FUNCTION telemetry._cause_finding(p_account jsonb, p_cause text, p_title text, p_story text,
                                                    p_evidence jsonb, p_recommendation text)
RETURNS TABLE (finding text, severity text, summary text, evidence jsonb, recommendation text, explained_seconds numeric, children jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT p_cause,
           CASE WHEN NOT (p_account->>'slow')::boolean THEN 'info'
                WHEN 100 * t.extra_seconds / x.extra >= 50 THEN 'critical'
                WHEN 100 * t.extra_seconds / x.extra >= telemetry._threshold('cause_min_share_pct') THEN 'warning'
                ELSE 'info' END,
           format('%s: %s s of the run''s extra %s s (%s%%); %s s against a baseline median of %s s.%s%s',
                  p_title, round(t.extra_seconds, 1), round(x.extra, 1), round(100 * t.extra_seconds / x.extra), round(t.seconds, 1),
                  round(t.baseline_seconds, 1), coalesce(' ' || p_story, ''),
                  coalesce(' Statements: ' || telemetry._children_text(c.children) || '.', '')),
           coalesce(p_evidence, '{}') || jsonb_build_object('seconds', t.seconds, 'baseline_seconds', t.baseline_seconds,
                                                            'baseline_runs', (p_account->>'baseline_runs')::int),
           p_recommendation, t.extra_seconds, c.children
    FROM telemetry._account_cause_total(p_account, p_cause) t,
         LATERAL (SELECT (p_account->>'extra_seconds')::numeric AS extra) x,
         LATERAL (SELECT telemetry._account_children(p_account, p_cause) AS children) c
    WHERE x.extra > 0 AND t.extra_seconds >= telemetry._threshold('cause_min_seconds')
$$;

-- _run_findings_json is a run's findings with the account they explain: the causes
-- (diagnosis/findings: telemetry._run_cause_findings over _run_causes), the largest share of
-- the run's extra time first, then what they leave unexplained, then the caveats (what could
-- not be judged: of a run slower than usual, whose causes they qualify), then the window's
-- patterns (_run_window_findings: context where the run was judged against a baseline by its
-- own sessions' account, at info; the findings themselves where it was not: no baseline, or
-- no own-session samples). p_statements are _run_statements'
-- rows, the per-call evidence (computed once by the caller). Returns {extra_seconds,
-- unexplained_seconds, findings: [{pattern, severity, summary, evidence, recommendation,
-- explained_seconds, share_of_extra_pct, children}]}.
CREATE OR REPLACE FUNCTION telemetry._run_findings_json(p_run_id bigint, p_statements jsonb)
RETURNS jsonb LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_account jsonb := telemetry._run_causes(p_run_id, p_statements);
    v_judged boolean := (v_account->>'recorded')::boolean AND coalesce((v_account->>'baseline_runs')::int, 0) > 0;
    v_extra numeric := (v_account->>'extra_seconds')::numeric;
    v_slow boolean := coalesce((v_account->>'slow')::boolean, false);
    v_result jsonb;
BEGIN
    WITH w AS (SELECT * FROM telemetry._run_window(p_run_id)),
    covered AS (SELECT EXISTS (SELECT FROM telemetry.statement_info_snapshots i, w
                               WHERE i.server = telemetry._resolve_server(w.server)
                                 AND i.captured_at BETWEEN w.snapshot_start - interval '1 day' AND w.end_time) AS yes),
    rs AS (SELECT * FROM jsonb_to_recordset(coalesce(p_statements, '[]')) AS x (queryid bigint, evicted boolean)),
    causes AS (SELECT f.* FROM telemetry._run_cause_findings(p_run_id, v_account) f WHERE v_judged AND f.explained_seconds > 0),
    explained AS (SELECT coalesce(sum(c.explained_seconds), 0) AS seconds FROM causes c),
    rows AS (
        SELECT c.finding AS pattern, c.severity, c.summary, c.evidence, c.recommendation, c.explained_seconds, c.children,
               CASE WHEN c.severity <> 'info' THEN 0 ELSE 5 END AS grp, 0::bigint AS ord
        FROM causes c
        UNION ALL
        SELECT 'unexplained', 'info',
               format('%s s, %s%% of the run''s extra %s s, not explained%s.', round(v_extra - e.seconds, 1),
                      round(100 * (v_extra - e.seconds) / v_extra), round(v_extra, 1),
                      CASE WHEN v_extra - e.seconds < 0 THEN ': the causes above explain more than the run''s extra time, as other parts of it were faster than usual'
                           WHEN e.seconds > 0 THEN ' by the causes above' ELSE ' by any cause: no part of the batch''s own sessions'' time grew past its threshold' END),
               jsonb_build_object('extra_seconds', v_extra, 'explained_seconds', e.seconds, 'unexplained_seconds', v_extra - e.seconds),
               NULL, NULL, NULL, 1, 0
        FROM explained e WHERE v_judged AND v_extra > 0
        UNION ALL
        SELECT 'statements_evicted', 'warning',
               'pg_stat_statements evicted entries during the run (dealloc rose): some statements of the run may be missing or only partly counted.',
               jsonb_build_object('statements', (SELECT count(*) FROM rs)),
               'Raise pg_stat_statements.max (restart needed) so that the batch''s statements stay in it for the whole run.', NULL, NULL, 2, 0
        WHERE EXISTS (SELECT FROM rs WHERE rs.evicted)
        UNION ALL
        SELECT 'statements_unavailable', 'info',
               'No statement statistics were recorded for this run, so the statements that made it slow cannot be named.',
               '{}'::jsonb,
               'Enable statement diagnosis: shared_preload_libraries = ''pg_stat_statements'' (restart), then CREATE EXTENSION pg_stat_statements in the database the exporter connects to.',
               NULL, NULL, 5, 1
        WHERE NOT (SELECT yes FROM covered)
        UNION ALL
        -- What ran in the run's window but not in the batch's own sessions is counted, not blamed.
        SELECT 'statements_of_other_sessions', 'info',
               format('%s statement(s) that ran during the run, %s s in all (the most "%s", %s s), were not seen in the batch''s own sessions: other sessions'', or too brief to be sampled. They are not the run''s statements.',
                      x.statements, round(x.seconds, 1), x.top_label, round(x.top_seconds, 1)),
               jsonb_build_object('statements', x.statements, 'seconds', round(x.seconds, 3), 'top_queryid', x.top_queryid, 'top_query', x.top_query),
               'Nothing to do for the batch. telemetry.statement_compare(start, end) lists every statement of the window, whoever ran it.',
               NULL, NULL, 5, 2
        FROM (SELECT count(*) AS statements, sum(o.seconds) AS seconds,
                     (array_agg(telemetry._statement_label(o.query, o.queryid) ORDER BY o.seconds DESC NULLS LAST, o.queryid))[1] AS top_label,
                     (array_agg(o.query ORDER BY o.seconds DESC NULLS LAST, o.queryid))[1] AS top_query,
                     (array_agg(o.queryid ORDER BY o.seconds DESC NULLS LAST, o.queryid))[1] AS top_queryid,
                     max(o.seconds) AS top_seconds
              FROM telemetry._runs_statements(ARRAY[p_run_id], true, true) o
              WHERE (SELECT yes FROM covered) AND o.batch IS NOT NULL AND o.sampled_waits IS NULL AND o.calls > 0) x
        WHERE x.seconds >= telemetry._threshold('statement_min_extra_seconds')
        UNION ALL
        -- The window's patterns: a caveat (insufficient_data) after the causes; the others
        -- context where the run was judged by its account. A caveat only about the window's
        -- sample-tier samples (both snapshots there) is context too where the run's own sessions
        -- were sampled: their account judges the batch's locks and waits.
        SELECT d.pattern, CASE WHEN x.context THEN 'info' ELSE d.severity END,
               d.summary, d.evidence, d.recommendation, NULL, NULL,
               CASE WHEN d.pattern = 'window' THEN 9
                    WHEN d.severity = 'info' OR x.context THEN 6
                    WHEN d.pattern = 'insufficient_data' THEN 3 ELSE 0 END,
               d.ord
        FROM telemetry._run_window_findings(p_run_id) d,
             LATERAL (SELECT v_judged AND (d.pattern <> 'insufficient_data' OR NOT v_slow)
                             OR d.pattern = 'insufficient_data' AND (v_account->>'recorded')::boolean
                                AND d.evidence->>'start_snapshot_at' IS NOT NULL AND d.evidence->>'end_snapshot_at' IS NOT NULL AS context) x),
    ranked AS (
        SELECT r.*, CASE WHEN r.pattern <> 'window' THEN r.summary
                         WHEN EXISTS (SELECT FROM rows x WHERE x.pattern <> 'window' AND x.severity <> 'info')
                         THEN replace(r.summary, 'no pattern above its threshold', 'findings above')
                         ELSE replace(r.summary, 'findings above', 'no pattern above its threshold') END AS text
        FROM rows r)
    SELECT jsonb_build_object(
        'extra_seconds', CASE WHEN v_judged THEN v_extra END,
        'unexplained_seconds', CASE WHEN v_judged AND v_extra > 0 THEN v_extra - (SELECT seconds FROM explained) END,
        'findings', coalesce(jsonb_agg(jsonb_build_object(
            'pattern', r.pattern, 'severity', r.severity, 'summary', r.text, 'evidence', r.evidence, 'recommendation', r.recommendation,
            'explained_seconds', round(r.explained_seconds, 3),
            'share_of_extra_pct', round(100 * r.explained_seconds / nullif(v_extra, 0), 1),
            'children', r.children)
            ORDER BY r.grp, r.explained_seconds DESC NULLS LAST, r.ord, r.pattern), '[]'))
    INTO v_result
    FROM ranked r;
    RETURN v_result;
END
$$;

-- diagnose_run_findings: a run's findings (_run_findings_json), as rows.
DROP FUNCTION IF EXISTS telemetry.diagnose_run_findings(bigint);
CREATE OR REPLACE FUNCTION telemetry.diagnose_run_findings(p_run_id bigint)
RETURNS TABLE (pattern text, severity text, summary text, evidence jsonb, recommendation text,
               explained_seconds numeric, share_of_extra_pct numeric, children jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT f->>'pattern', f->>'severity', f->>'summary', f->'evidence', f->>'recommendation',
           (f->>'explained_seconds')::numeric, (f->>'share_of_extra_pct')::numeric, f->'children'
    FROM jsonb_array_elements(telemetry._run_findings_json(
             p_run_id, (SELECT jsonb_agg(to_jsonb(s)) FROM telemetry._run_statements(p_run_id) s))->'findings') WITH ORDINALITY AS x (f, n)
    ORDER BY x.n
$$;

-- run_diagnosis: everything diagnose --run and the report's run page show of a run, each
-- part computed once: its findings and account (_run_findings_json), its measures against
-- the baseline (diagnose_run), its top p_statements statements (_run_statements, also the
-- findings' evidence), and what changed since the baseline (_run_changes).
CREATE OR REPLACE FUNCTION telemetry.run_diagnosis(p_run_id bigint, p_statements integer DEFAULT 10)
RETURNS jsonb LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH rs AS (SELECT * FROM telemetry._run_statements(p_run_id)),
    f AS (SELECT telemetry._run_findings_json(p_run_id, (SELECT jsonb_agg(to_jsonb(rs)) FROM rs)) AS j)
    SELECT f.j || jsonb_build_object(
        'baseline', coalesce((SELECT jsonb_agg(to_jsonb(d) ORDER BY d.rank) FROM telemetry.diagnose_run(p_run_id) d), '[]'),
        'statements', coalesce((SELECT jsonb_agg(to_jsonb(rs) ORDER BY rs.rank) FROM rs WHERE rs.rank <= p_statements), '[]'),
        'changes', coalesce((SELECT jsonb_agg(to_jsonb(c) - 'relid' ORDER BY NOT c.affects, c.kind, c.object) FROM telemetry._run_changes(p_run_id) c), '[]'))
    FROM f
$$;

-- _statistics_note is what a statement's pg_stat_statements evidence (a child's statistics:
-- _run_statements' row) says of why it was slower per call: it spilled to disk (temporary
-- blocks per call rose), or its plan probably changed (blocks per row rose
-- statement_plan_change_ratio times); '' where neither.
CREATE OR REPLACE FUNCTION telemetry._statistics_note(p_statistics jsonb)
RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE
        WHEN (s->>'temp_per_call')::numeric > 0 AND (s->>'temp_per_call')::numeric > coalesce((s->>'baseline_temp_per_call')::numeric, 0)
        THEN format('; it wrote %s temporary blocks per call instead of %s: it spilled to disk', s->>'temp_per_call', coalesce(s->>'baseline_temp_per_call', '0'))
        WHEN (s->>'baseline_blocks_per_row')::numeric > 0
             AND (s->>'blocks_per_row')::numeric >= telemetry._threshold('statement_plan_change_ratio') * (s->>'baseline_blocks_per_row')::numeric
        THEN format('; blocks per row %s instead of %s: plan probably changed', s->>'blocks_per_row', s->>'baseline_blocks_per_row')
        ELSE '' END
    FROM (SELECT p_statistics AS s) x
$$;

-- _call_times says a statement's time per call and its baseline's (p_statistics: a child's
-- statistics, _run_statements' row, to the microsecond) in one unit that shows them: us (as
-- pg_settings says microseconds) where both are under 0.1 ms (a row's INSERT, 4 us, reads
-- 0.00 ms), else ms.
CREATE OR REPLACE FUNCTION telemetry._call_times(p_statistics jsonb)
RETURNS text[] LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN greatest(x.run, x.baseline) < 0.0001
                THEN ARRAY[round(1e6 * x.run) || ' us', round(1e6 * x.baseline) || ' us']
                ELSE ARRAY[round(1e3 * x.run, 2) || ' ms', round(1e3 * x.baseline, 2) || ' ms'] END
    FROM (SELECT (p_statistics->>'seconds_per_call')::numeric AS run, (p_statistics->>'baseline_seconds_per_call')::numeric AS baseline) x
$$;
