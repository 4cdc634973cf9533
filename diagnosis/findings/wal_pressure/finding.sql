-- wal_pressure: the batch's statements waited on writing the WAL (IO:WAL*, LWLock:WAL* outside
-- a commit: the WAL buffers full, a slow WAL disk, another session holding the WAL write lock)
-- or on a checkpoint (IPC:Checkpoint*) longer than usual, or spent more CPU writing it: a
-- statement's CPU where its WAL per call rose statement_wal_ratio times (the account's rule).
-- The evidence is the run's WAL and checkpoints against its baseline runs', and the WAL per
-- call of the statement whose rose that much: checkpoints during the run make every page's
-- first change afterwards a full-page image, many times the WAL of the change itself.
INSERT INTO telemetry.diagnose_thresholds (name, value, unit, description) VALUES
    ('statement_wal_ratio', 3, 'ratio',
     'wal_pressure: a statement''s CPU time is the WAL''s where its WAL per call is at least this many times its baseline median (full-page images after checkpoints, updates no longer in place) at the same blocks per row, and statement_wal_min_extra_bytes more in all.'),
    ('statement_wal_min_extra_bytes', 67108864, 'bytes',
     'wal_pressure: the least extra WAL a statement wrote in the run (against its baseline median calls and WAL per call) for its CPU time to be the WAL''s.')
ON CONFLICT (name) DO UPDATE SET unit = excluded.unit, description = excluded.description;

CREATE OR REPLACE FUNCTION telemetry._finding_wal_pressure(p_run_id bigint, p_account jsonb)
RETURNS TABLE (finding text, severity text, summary text, evidence jsonb, recommendation text, explained_seconds numeric, children jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH waits AS (SELECT r.bucket AS wait, sum(r.seconds) AS seconds, sum(r.extra_seconds) AS extra
                   FROM telemetry._account_rows(p_account, 'wal_pressure') r GROUP BY 1),
    -- the run's and each baseline run's WAL and checkpoints, between the snapshots of its window
    wal AS (
        SELECT x.this_run, c.wal_bytes_delta AS wal_bytes, c.ckpt_timed_delta + c.ckpt_requested_delta AS checkpoints
        FROM (SELECT true AS this_run, w.snapshot_start, w.end_time, w.server FROM telemetry._run_window(p_run_id) w
              UNION ALL
              SELECT false, b.snapshot_start, b.end_time, b.server FROM telemetry._baseline_runs(p_run_id) b) x,
             LATERAL telemetry.compare(x.snapshot_start, x.end_time, telemetry._resolve_server(x.server)) c),
    run AS (SELECT max(wal_bytes) FILTER (WHERE this_run) AS wal_bytes, max(checkpoints) FILTER (WHERE this_run) AS checkpoints,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY wal_bytes) FILTER (WHERE NOT this_run) AS baseline_wal_bytes,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY checkpoints) FILTER (WHERE NOT this_run) AS baseline_checkpoints
            FROM wal)
    SELECT f.* FROM telemetry._cause_finding(p_account, 'wal_pressure', 'The batch was slowed by the WAL or by checkpoints',
        (SELECT 'Mostly ' || string_agg(format('%s (+%s s)', CASE w.wait WHEN 'CPU' THEN 'CPU writing the WAL' ELSE w.wait END, round(w.extra, 1)),
                                        ', ' ORDER BY w.extra DESC) || '.'
                || coalesce((SELECT format(' The run wrote %s of WAL (baseline median %s) with %s checkpoint(s) (baseline median %s).',
                                           telemetry._pretty_bytes(r.wal_bytes), telemetry._pretty_bytes(round(r.baseline_wal_bytes)::bigint),
                                           r.checkpoints, round(r.baseline_checkpoints::numeric, 1))
                             FROM run r WHERE r.wal_bytes IS NOT NULL), '')
                -- the WAL's and checkpoints' settings changed since the baseline: why they came
                || telemetry._run_changed_settings(p_run_id, '^Write-Ahead Log')
                || coalesce((SELECT format(' "%s" wrote %s of WAL per call instead of %s.', telemetry._statement_label(a.query, a.queryid),
                                           telemetry._pretty_bytes((a.statistics->>'wal_per_call')::bigint),
                                           telemetry._pretty_bytes((a.statistics->>'baseline_wal_per_call')::bigint))
                             FROM telemetry._account_rows(p_account, 'wal_pressure') a
                             WHERE (a.statistics->>'wal_per_call')::numeric
                                   >= telemetry._threshold('statement_wal_ratio') * (a.statistics->>'baseline_wal_per_call')::numeric
                             ORDER BY a.extra_seconds DESC LIMIT 1), '')
         FROM (SELECT * FROM waits WHERE extra > 0 ORDER BY extra DESC LIMIT 3) w),
        (SELECT jsonb_build_object('wal_waits', (SELECT jsonb_object_agg(w.wait, round(w.seconds, 3)) FROM waits w),
                                   'wal_bytes', r.wal_bytes, 'baseline_wal_bytes', round(r.baseline_wal_bytes),
                                   'checkpoints', r.checkpoints, 'baseline_checkpoints', r.baseline_checkpoints)
         FROM run r),
        'Checkpoints during the run multiply the WAL (a full-page image at each page''s first change after one): look at what requested them (max_wal_size reached: raise it; a manual CHECKPOINT; checkpoint_timeout), at the WAL volume of the batch''s statements (their wal_per_call in the evidence; wal_compression shrinks full-page images), wal_buffers and the WAL disk''s write latency.') f
$$;
