-- diagnose: the seed's six diagnostic patterns, read off the recorded telemetry of a window,
-- and diagnose_run: one recorded batch run against the median of the batch's previous
-- normal runs. Thresholds live in telemetry.diagnose_thresholds (created by 0050): update a
-- row to override it; re-running the migrations keeps the change.

INSERT INTO telemetry.diagnose_thresholds (name, value, unit, description) VALUES
    ('min_samples', 3, 'samples',
     'Fewer samples in the window: locks, waits and vacuum progress cannot be judged.'),
    ('lock_wait_pct_warning', 5, 'percent of samples',
     'Samples with a client session waiting on a heavyweight lock: warning at this share.'),
    ('lock_wait_pct_critical', 25, 'percent of samples', 'Samples with a client session waiting on a heavyweight lock: critical at this share.'),
    ('checkpoint_requested_warning', 1, 'checkpoints',
     'Requested checkpoints (max_wal_size reached, or CHECKPOINT run) in the window: warning.'),
    ('checkpoint_requested_critical', 3, 'checkpoints', 'Requested checkpoints: critical.'),
    ('backend_writes_warning', 16384, 'buffers',
     'Buffers backends wrote themselves (8 kB each) instead of the checkpointer or background writer: warning, provided backend_write_pct is reached.'),
    ('backend_writes_critical', 131072, 'buffers', 'Buffers backends wrote themselves: critical, provided backend_write_pct is reached.'),
    ('backend_write_pct', 30, 'percent of buffer writes',
     'Below this share of all buffer writes done by backends, buffer_pressure stays info.'),
    ('vacuum_pct_warning', 1, 'percent of samples',
     'Samples with a vacuum running on a tracked table: warning (an autovacuum that finished on one also warns).'),
    ('vacuum_pct_critical', 25, 'percent of samples', 'Samples with a vacuum running on a tracked table: critical at this share.'),
    ('temp_bytes_warning', 67108864, 'bytes', 'Temporary file bytes written in the window: warning.'),
    ('temp_bytes_critical', 1073741824, 'bytes', 'Temporary file bytes: critical.'),
    ('replication_lag_seconds_warning', 10, 'seconds', 'Largest replay lag of a standby in the window: warning.'),
    ('replication_lag_seconds_critical', 60, 'seconds', 'Replay lag: critical.'),
    ('replication_lag_bytes_warning', 268435456, 'bytes', 'Largest replay lag in bytes (sent minus replayed): warning.'),
    ('replication_lag_bytes_critical', 1073741824, 'bytes', 'Replay lag in bytes: critical.')
ON CONFLICT (name) DO NOTHING;

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

-- _window_waits is the session-seconds client sessions (not idle) spent in each wait in the
-- window: the wait sampler's, where the Go recorder wrote them, else estimated from the sample
-- grid (pg_cron mode): each sample's count times the samples' mean spacing.
CREATE OR REPLACE FUNCTION telemetry._window_waits(p_start_time timestamptz, p_end_time timestamptz, p_server text)
RETURNS TABLE (wait_event_type text, wait_event text, seconds numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH smp AS (SELECT s.id, s.captured_at FROM telemetry.samples s
                 WHERE s.server = p_server AND s.captured_at BETWEEN p_start_time AND p_end_time),
    spacing AS (SELECT extract(epoch FROM p_end_time - p_start_time) / nullif(count(*), 0) AS seconds FROM smp),
    sampled AS (
        SELECT t.wait_event_type, t.wait_event, sum(t.seconds)::numeric AS seconds
        FROM telemetry.wait_time_samples t JOIN smp ON smp.id = t.sample_id AND smp.captured_at = t.captured_at AND t.captured_at BETWEEN p_start_time AND p_end_time
        GROUP BY 1, 2),
    grid AS (
        SELECT w.wait_event_type, w.wait_event, sum(w.count) * min(spacing.seconds) AS seconds
        FROM telemetry.wait_samples w JOIN smp ON smp.id = w.sample_id AND smp.captured_at = w.captured_at AND w.captured_at BETWEEN p_start_time AND p_end_time, spacing
        WHERE w.backend_type = 'client backend' AND w.state NOT LIKE 'idle%'
        GROUP BY 1, 2)
    SELECT * FROM sampled UNION ALL SELECT * FROM grid WHERE NOT EXISTS (SELECT FROM sampled)
$$;

-- _diagnose returns one row per finding, the most severe first, then the furthest past its
-- threshold. Snapshot-based patterns use compare()'s window rule, the start snapshot picked
-- at p_snapshot_start; sample-based patterns use the samples between the two times. The last
-- row, "window", says what the window held.
CREATE OR REPLACE FUNCTION telemetry._diagnose(p_start_time timestamptz, p_end_time timestamptz,
                                               p_snapshot_start timestamptz, p_server text)
RETURNS TABLE (pattern text, severity text, summary text, evidence jsonb, recommendation text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    v_server text := telemetry._resolve_server(p_server);
BEGIN
    IF p_start_time IS NULL OR p_end_time IS NULL THEN
        RAISE EXCEPTION 'diagnose needs a start and an end time';
    END IF;
    IF p_end_time <= p_start_time THEN
        RAISE EXCEPTION 'the end (%) is not after the start (%)', p_end_time, p_start_time;
    END IF;
    RETURN QUERY
    WITH
    cmp AS (SELECT * FROM telemetry.compare(p_snapshot_start, p_end_time, v_server)),
    before_start AS (SELECT max(captured_at) AS at FROM telemetry.snapshots
                     WHERE server = v_server AND captured_at <= p_snapshot_start),
    after_end AS (SELECT min(captured_at) AS at FROM telemetry.snapshots WHERE server = v_server AND captured_at >= p_end_time),
    smp AS (SELECT id, captured_at FROM telemetry.samples
            WHERE server = v_server AND captured_at BETWEEN p_start_time AND p_end_time),
    nsmp AS (SELECT count(*) AS n FROM smp),
    -- Client sessions, not idle, per sample: the sessions a batch is made of.
    client_waits AS (
        SELECT w.* FROM telemetry.wait_samples w JOIN smp ON smp.id = w.sample_id AND smp.captured_at = w.captured_at AND w.captured_at BETWEEN p_start_time AND p_end_time
        WHERE w.backend_type = 'client backend' AND w.state NOT LIKE 'idle%'),
    wait_time AS (SELECT * FROM telemetry._window_waits(p_start_time, p_end_time, v_server)),
    lockw AS (
        SELECT count(DISTINCT sample_id) AS samples, coalesce(max(count), 0) AS max_waiters
        FROM client_waits WHERE wait_event_type = 'Lock'),
    blockers AS (
        SELECT l.blocking_pid, l.blocking_app, l.blocking_user, l.lock_type, l.locked_relation,
               l.blocking_query_preview, count(DISTINCT l.sample_id) AS samples,
               round(extract(epoch FROM max(l.blocked_duration))::numeric, 1) AS max_blocked_seconds
        FROM telemetry.lock_samples l JOIN smp ON smp.id = l.sample_id AND smp.captured_at = l.captured_at AND l.captured_at BETWEEN p_start_time AND p_end_time
        GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY samples DESC, max_blocked_seconds DESC NULLS LAST LIMIT 3),
    vac AS (
        SELECT p.relid, p.relname, p.relid IN (SELECT relid FROM telemetry.tracked_tables) AS tracked,
               count(DISTINCT p.sample_id) AS samples, array_agg(DISTINCT p.phase) AS phases
        FROM telemetry.progress_samples p JOIN smp ON smp.id = p.sample_id AND smp.captured_at = p.captured_at AND p.captured_at BETWEEN p_start_time AND p_end_time
        WHERE p.progress_type = 'vacuum' GROUP BY 1, 2, 3),
    tables AS (
        SELECT tc.* FROM telemetry.tracked_tables t,
             telemetry.table_compare(t.relname, p_snapshot_start, p_end_time, t.schemaname, v_server) tc),
    spillers AS (
        SELECT a.query_preview, count(*) AS samples
        FROM telemetry.activity_samples a JOIN smp ON smp.id = a.sample_id AND smp.captured_at = a.captured_at AND a.captured_at BETWEEN p_start_time AND p_end_time
        WHERE a.wait_event IN ('BufFileWrite', 'BufFileRead') GROUP BY 1 ORDER BY 2 DESC LIMIT 3),
    repl AS (
        SELECT r.application_name, r.client_addr,
               max(pg_wal_lsn_diff(r.sent_lsn, r.replay_lsn)) AS lag_bytes,
               max(extract(epoch FROM r.replay_lag)) AS lag_seconds
        FROM telemetry.replication_snapshots r
        WHERE r.server = v_server AND r.captured_at BETWEEN p_snapshot_start AND p_end_time
        GROUP BY 1, 2),
    f AS (
        -- too little data
        SELECT 'insufficient_data' AS pattern, 'warning' AS severity, 100::numeric AS score,
               concat_ws(' ',
                   CASE WHEN NOT EXISTS (SELECT FROM cmp) THEN
                       CASE WHEN (SELECT at FROM before_start) IS NULL
                            THEN format('No snapshot at or before %s, so checkpoints, WAL, buffers, temp files and table vacuums cannot be judged.', telemetry._ts(p_snapshot_start))
                            ELSE format('No snapshot at or after %s (the last is %s), so checkpoints, WAL, buffers, temp files and table vacuums cannot be judged.', telemetry._ts(p_end_time), coalesce(telemetry._ts((SELECT max(captured_at) FROM telemetry.snapshots WHERE server = v_server)), 'none')) END
                   END,
                   CASE WHEN (SELECT n FROM nsmp) < telemetry._threshold('min_samples') THEN
                       format('Only %s samples between %s and %s (at least %s needed), so locks, waits and vacuum progress cannot be judged.',
                              (SELECT n FROM nsmp), telemetry._ts(p_start_time), telemetry._ts(p_end_time), telemetry._threshold('min_samples'))
                   END) AS summary,
               jsonb_build_object('start_snapshot_at', (SELECT at FROM before_start), 'end_snapshot_at', (SELECT at FROM after_end),
                                  'samples', (SELECT n FROM nsmp), 'min_samples', telemetry._threshold('min_samples')) AS evidence,
               CASE WHEN (SELECT n FROM nsmp) < telemetry._threshold('min_samples') AND ((SELECT n FROM nsmp) > 0 OR EXISTS (SELECT FROM cmp)) THEN
                   -- The recorder is recording: what is missing is sample-tier cadence for a window this short.
                   format('The recorder is running, but this window (%s s) spans %s sample-tier collections and at least %s are needed: for runs this short, lower --tier.sample-interval to %s s or less (in pg_cron mode, schedule telemetry.sample() that often), or diagnose a longer window.',
                          round(extract(epoch FROM p_end_time - p_start_time)::numeric, 1), (SELECT n FROM nsmp), telemetry._threshold('min_samples'),
                          greatest(floor(extract(epoch FROM p_end_time - p_start_time) / telemetry._threshold('min_samples'))::int, 1))
               ELSE 'Is the recorder running for this server? Take a snapshot at the batch''s boundaries (telemetry.batch_begin/batch_end do), and sample more often than the batch is long.' END AS recommendation
        WHERE NOT EXISTS (SELECT FROM cmp) OR (SELECT n FROM nsmp) < telemetry._threshold('min_samples')
        UNION ALL
        -- lock_contention
        SELECT 'lock_contention', telemetry._severity(x.pct, telemetry._threshold('lock_wait_pct_warning'), telemetry._threshold('lock_wait_pct_critical')),
               x.pct / telemetry._threshold('lock_wait_pct_warning'),
               format('Client sessions waited on locks in %s%% of samples (%s of %s)%s.', x.pct, lockw.samples, nsmp.n,
                      (SELECT format(', mostly behind pid %s (%s) on %s', b.blocking_pid, coalesce(nullif(b.blocking_app, ''), b.blocking_user, '?'),
                                     coalesce(b.locked_relation, b.lock_type, '?'))
                       FROM blockers b LIMIT 1)),
               jsonb_build_object('samples', nsmp.n, 'samples_with_lock_waits', lockw.samples, 'pct_of_samples', x.pct,
                                  'max_waiters', lockw.max_waiters,
                                  'lock_wait_seconds', (SELECT round(sum(seconds)::numeric, 1) FROM wait_time WHERE wait_event_type = 'Lock'),
                                  'blockers', (SELECT jsonb_agg(to_jsonb(b)) FROM blockers b)),
               'See who blocked in telemetry.recent_locks for the window; move the conflicting job out of the batch''s window, shorten its transactions, or give the batch a lock_timeout so it fails fast instead of queueing.'
        FROM lockw, nsmp, LATERAL (SELECT round(100.0 * lockw.samples / nullif(nsmp.n, 0), 1) AS pct) x
        WHERE lockw.samples > 0
        UNION ALL
        -- checkpoint_interference
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
        WHERE c.checkpoint_occurred OR c.ckpt_timed_delta + c.ckpt_requested_delta > 0
        UNION ALL
        -- buffer_pressure
        SELECT 'buffer_pressure',
               CASE WHEN x.pct >= telemetry._threshold('backend_write_pct')
                    THEN coalesce(telemetry._severity(x.backend, telemetry._threshold('backend_writes_warning'), telemetry._threshold('backend_writes_critical')), 'info')
                    ELSE 'info' END,
               x.backend / telemetry._threshold('backend_writes_warning'),
               format('Backends wrote %s buffers themselves (%s), %s%% of all buffer writes; the checkpointer wrote %s and the background writer %s.',
                      x.backend, telemetry._pretty_bytes(x.backend * 8192), x.pct, coalesce(c.io_ckpt_writes_delta, c.ckpt_buffers_delta), c.bgw_buffers_clean_delta),
               jsonb_build_object('backend_writes', x.backend, 'backend_write_pct', x.pct,
                                  'bgw_buffers_backend_delta', c.bgw_buffers_backend_delta, 'io_client_writes_delta', c.io_client_writes_delta,
                                  'ckpt_buffers_delta', c.ckpt_buffers_delta, 'bgw_buffers_clean_delta', c.bgw_buffers_clean_delta,
                                  'bgw_buffers_alloc_delta', c.bgw_buffers_alloc_delta,
                                  'wal_write_seconds', (SELECT round(sum(seconds)::numeric, 1) FROM wait_time WHERE wait_event IN ('WALWrite', 'WALSync')),
                                  'extend_wait_seconds', (SELECT round(sum(seconds)::numeric, 1) FROM wait_time WHERE wait_event_type = 'Lock' AND wait_event = 'extend')),
               'Backends are evicting dirty buffers themselves: raise shared_buffers, let the background writer do more (bgwriter_lru_maxpages, bgwriter_lru_multiplier), and if WALWrite waits show, look at wal_buffers and the WAL disk.'
        FROM cmp c,
             LATERAL (SELECT coalesce(c.bgw_buffers_backend_delta, c.io_client_writes_delta) AS backend) b,
             LATERAL (SELECT b.backend,
                             round(100.0 * b.backend / nullif(b.backend + coalesce(c.io_ckpt_writes_delta, c.ckpt_buffers_delta, 0)
                                                           + coalesce(c.bgw_buffers_clean_delta, 0), 0), 1) AS pct) x
        WHERE x.backend > 0
        UNION ALL
        -- autovacuum_interference
        SELECT 'autovacuum_interference',
               CASE WHEN x.pct_tracked >= telemetry._threshold('vacuum_pct_critical') THEN 'critical'
                    WHEN x.pct_tracked >= telemetry._threshold('vacuum_pct_warning') OR x.autovacuums > 0 THEN 'warning'
                    ELSE 'info' END,
               greatest(x.pct_tracked / telemetry._threshold('vacuum_pct_warning'), CASE WHEN x.autovacuums > 0 THEN 1 ELSE 0.1 END),
               format('Vacuum ran on %s during %s%% of samples; on tracked tables %s autovacuum(s) finished and %s autoanalyze(s).',
                      coalesce((SELECT string_agg(DISTINCT coalesce(relname, relid::text), ', ') FROM vac), 'no table'),
                      x.pct_any, x.autovacuums, x.autoanalyzes),
               jsonb_build_object('samples', nsmp.n, 'pct_of_samples_tracked', x.pct_tracked, 'pct_of_samples_any', x.pct_any,
                                  'vacuums', (SELECT jsonb_agg(to_jsonb(v)) FROM vac v),
                                  'tables', (SELECT jsonb_agg(jsonb_build_object('table_name', t.table_name, 'autovacuum_count_delta', t.autovacuum_count_delta,
                                                                                 'autoanalyze_count_delta', t.autoanalyze_count_delta,
                                                                                 'n_dead_tup_end', t.n_dead_tup_end, 'dead_tuple_ratio', t.dead_tuple_ratio))
                                             FROM tables t WHERE t.autovacuum_ran OR t.autoanalyze_ran)),
               'Keep autovacuum off the batch''s tables while it runs: vacuum them just before the batch (VACUUM (ANALYZE)), or tune their autovacuum thresholds or cost limits (ALTER TABLE ... SET (autovacuum_vacuum_cost_delay = ...)); never disable autovacuum for good.'
        FROM nsmp,
             LATERAL (SELECT coalesce(round(100.0 * (SELECT count(DISTINCT p.sample_id) FROM telemetry.progress_samples p JOIN smp ON smp.id = p.sample_id AND smp.captured_at = p.captured_at AND p.captured_at BETWEEN p_start_time AND p_end_time
                                                      WHERE p.progress_type = 'vacuum' AND p.relid IN (SELECT relid FROM telemetry.tracked_tables)) / nullif(nsmp.n, 0), 1), 0) AS pct_tracked,
                             coalesce(round(100.0 * (SELECT count(DISTINCT p.sample_id) FROM telemetry.progress_samples p JOIN smp ON smp.id = p.sample_id AND smp.captured_at = p.captured_at AND p.captured_at BETWEEN p_start_time AND p_end_time
                                                      WHERE p.progress_type = 'vacuum') / nullif(nsmp.n, 0), 1), 0) AS pct_any,
                             coalesce((SELECT sum(autovacuum_count_delta) FROM tables), 0) AS autovacuums,
                             coalesce((SELECT sum(autoanalyze_count_delta) FROM tables), 0) AS autoanalyzes) x
        WHERE x.pct_any > 0 OR x.autovacuums > 0 OR x.autoanalyzes > 0
        UNION ALL
        -- temp_file_spills
        SELECT 'temp_file_spills',
               telemetry._severity(c.temp_bytes_delta, telemetry._threshold('temp_bytes_warning'), telemetry._threshold('temp_bytes_critical')),
               c.temp_bytes_delta / telemetry._threshold('temp_bytes_warning'),
               format('%s temporary file(s), %s written: sorts or hashes did not fit in work_mem.', c.temp_files_delta, c.temp_bytes_pretty),
               jsonb_build_object('temp_files_delta', c.temp_files_delta, 'temp_bytes_delta', c.temp_bytes_delta,
                                  'temp_bytes_pretty', c.temp_bytes_pretty,
                                  'spilling_queries', (SELECT jsonb_agg(to_jsonb(s)) FROM spillers s)),
               'Raise work_mem for the batch''s session (SET work_mem, or ALTER ROLE ... SET work_mem), or hash_mem_multiplier for hash joins and aggregates; log_temp_files = 0 names the statements that spill.'
        FROM cmp c WHERE c.temp_bytes_delta > 0
        UNION ALL
        -- replication_lag
        SELECT 'replication_lag',
               CASE WHEN x.lag_seconds >= telemetry._threshold('replication_lag_seconds_critical') OR x.lag_bytes >= telemetry._threshold('replication_lag_bytes_critical') THEN 'critical'
                    WHEN x.lag_seconds >= telemetry._threshold('replication_lag_seconds_warning') OR x.lag_bytes >= telemetry._threshold('replication_lag_bytes_warning') THEN 'warning'
                    ELSE 'info' END,
               greatest(x.lag_seconds / telemetry._threshold('replication_lag_seconds_warning'), x.lag_bytes / telemetry._threshold('replication_lag_bytes_warning')),
               format('Standbys fell behind by up to %s and %s s of replay.', telemetry._pretty_bytes(x.lag_bytes::bigint), round(x.lag_seconds, 1)),
               jsonb_build_object('max_replay_lag_bytes', x.lag_bytes, 'max_replay_lag_seconds', round(x.lag_seconds, 1),
                                  'standbys', (SELECT jsonb_agg(to_jsonb(r)) FROM repl r),
                                  'slots_max_retained_wal', (SELECT slots_max_retained_wal FROM cmp)),
               'Check the standbys'' health (disk, network, hot_standby_feedback conflicts); with synchronous replication every commit waits for the slowest standby: consider synchronous_commit = local or remote_write for the batch, or asynchronous replication.'
        FROM (SELECT coalesce(max(lag_bytes), 0) AS lag_bytes, coalesce(max(lag_seconds), 0) AS lag_seconds FROM repl) x
        WHERE x.lag_bytes > 0 OR x.lag_seconds > 0
    )
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
ON CONFLICT (name) DO NOTHING;

-- _run_window is a run's window: its begin and end (now while it runs), and where its start
-- snapshot is looked for.
CREATE OR REPLACE FUNCTION telemetry._run_window(p_run_id bigint)
RETURNS TABLE (run_id bigint, batch text, status text, start_time timestamptz, end_time timestamptz,
               snapshot_start timestamptz, server text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT r.run_id, r.batch, r.status, r.started_at, e.end_time,
           telemetry._run_snapshot_start(r.started_at, r.ended_at),
           r.server
    FROM telemetry.batch_runs r, LATERAL (SELECT coalesce(r.ended_at, now()) AS end_time) e
    WHERE r.run_id = p_run_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no batch run with run_id %', p_run_id;
    END IF;
END
$$;

-- _wait_pattern names the pattern a wait event belongs to, where one does.
CREATE OR REPLACE FUNCTION telemetry._wait_pattern(p_type text, p_event text)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE
        WHEN p_type = 'Lock' AND p_event = 'extend' THEN 'buffer_pressure'
        WHEN p_type = 'Lock' THEN 'lock_contention'
        WHEN p_type = 'IO' AND p_event LIKE 'BufFile%' THEN 'temp_file_spills'
        WHEN p_event IN ('WALWrite', 'WALSync', 'WALInsert', 'WALBufMapping', 'BufferMapping',
                         'DataFileWrite', 'DataFileExtend', 'DataFileFlush') THEN 'buffer_pressure'
        WHEN p_event IN ('SyncRep') THEN 'replication_lag'
        WHEN p_event IN ('CheckpointerComm', 'CheckpointStart') THEN 'checkpoint_interference'
    END
$$;

-- _window_measures is what diagnose_run compares, for one window.
CREATE OR REPLACE FUNCTION telemetry._window_measures(p_start_time timestamptz, p_end_time timestamptz,
                                                      p_snapshot_start timestamptz, p_server text)
RETURNS TABLE (measure text, pattern text, unit text, value numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH srv AS (SELECT telemetry._resolve_server(p_server) AS server),
    cmp AS (SELECT c.* FROM srv, telemetry.compare(p_snapshot_start, p_end_time, srv.server) c),
    smp AS (SELECT s.id, s.captured_at FROM telemetry.samples s, srv
            WHERE s.server = srv.server AND s.captured_at BETWEEN p_start_time AND p_end_time),
    n AS (SELECT count(*) AS n, extract(epoch FROM p_end_time - p_start_time) / nullif(count(*), 0) AS spacing FROM smp),
    waits AS (SELECT w.* FROM srv, telemetry._window_waits(p_start_time, p_end_time, srv.server) w)
    SELECT 'duration', NULL, 'seconds', round(extract(epoch FROM p_end_time - p_start_time), 1)
    UNION ALL SELECT 'wal_bytes', 'checkpoint_interference', 'bytes', wal_bytes_delta FROM cmp
    UNION ALL SELECT 'checkpoints', 'checkpoint_interference', 'count', ckpt_timed_delta + ckpt_requested_delta FROM cmp
    UNION ALL SELECT 'temp_bytes', 'temp_file_spills', 'bytes', temp_bytes_delta FROM cmp
    UNION ALL SELECT 'backend_buffer_writes', 'buffer_pressure', 'buffers', coalesce(bgw_buffers_backend_delta, io_client_writes_delta) FROM cmp
    UNION ALL SELECT 'autovacuums', 'autovacuum_interference', 'count',
                     coalesce((SELECT sum(tc.autovacuum_count_delta) FROM telemetry.tracked_tables t, srv,
                                      telemetry.table_compare(t.relname, p_snapshot_start, p_end_time, t.schemaname, srv.server) tc), 0)
              FROM cmp
    UNION ALL SELECT 'replication_lag_bytes', 'replication_lag', 'bytes',
                     coalesce((SELECT max(pg_wal_lsn_diff(r.sent_lsn, r.replay_lsn)) FROM telemetry.replication_snapshots r, srv
                               WHERE r.server = srv.server AND r.captured_at BETWEEN p_snapshot_start AND p_end_time), 0)
              FROM cmp
    UNION ALL SELECT 'lock_wait_seconds', 'lock_contention', 'seconds',
                     round(coalesce((SELECT sum(seconds) FROM waits WHERE wait_event_type = 'Lock' AND wait_event <> 'extend'), 0), 2)
              FROM n WHERE n.n > 0
    UNION ALL SELECT 'vacuum_seconds', 'autovacuum_interference', 'seconds',
                     round((SELECT count(DISTINCT p.sample_id) FROM telemetry.progress_samples p
                            JOIN smp ON smp.id = p.sample_id AND smp.captured_at = p.captured_at AND p.captured_at BETWEEN p_start_time AND p_end_time
                            WHERE p.progress_type = 'vacuum' AND p.relid IN (SELECT relid FROM telemetry.tracked_tables)) * n.spacing, 2)
              FROM n WHERE n.n > 0
    UNION ALL SELECT 'wait:' || wait_event_type || ':' || wait_event, telemetry._wait_pattern(wait_event_type, wait_event),
                     'seconds', round(seconds, 2)
              FROM waits WHERE wait_event_type <> 'Lock' OR wait_event = 'extend'
$$;

-- _measure_text shows a measure's value in its unit.
CREATE OR REPLACE FUNCTION telemetry._measure_text(p_value numeric, p_unit text)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN p_value IS NULL THEN 'unknown'
                WHEN p_unit = 'bytes' THEN telemetry._pretty_bytes(round(p_value)::bigint)
                WHEN p_unit = 'seconds' THEN round(p_value, 1) || ' s'
                ELSE round(p_value, 1) || ' ' || p_unit END
$$;

-- _baseline_runs are a run's baseline: the previous normal runs of its batch (succeeded, or
-- ended when detected), at most baseline_runs of them, the latest first.
CREATE OR REPLACE FUNCTION telemetry._baseline_runs(p_run_id bigint)
RETURNS TABLE (run_id bigint, batch text, status text, start_time timestamptz, end_time timestamptz,
               snapshot_start timestamptz, server text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT bw.* FROM telemetry._run_window(p_run_id) w,
    LATERAL (SELECT r.run_id FROM telemetry.batch_runs r
             WHERE r.batch = w.batch AND r.status IN ('succeeded', 'ended') AND r.started_at < w.start_time
             ORDER BY r.started_at DESC LIMIT telemetry._threshold('baseline_runs')::bigint) b,
    LATERAL telemetry._run_window(b.run_id) bw
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
    cur AS (SELECT m.* FROM w, LATERAL telemetry._window_measures(w.start_time, w.end_time, w.snapshot_start, w.server) m),
    basem AS (SELECT base.run_id, m.* FROM base,
              LATERAL telemetry._window_measures(base.start_time, base.end_time, base.snapshot_start, base.server) m),
    vals AS (
        SELECT c.measure, b.run_id,
               CASE WHEN bm.value IS NOT NULL THEN bm.value
                    WHEN c.measure LIKE 'wait:%' AND EXISTS (SELECT FROM basem x WHERE x.run_id = b.run_id AND x.measure = 'lock_wait_seconds') THEN 0
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
