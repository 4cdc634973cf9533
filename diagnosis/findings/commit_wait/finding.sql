-- commit_wait: the batch's own sessions waited at commit (SyncRep: a synchronous standby's
-- confirmation; WALWrite, WALSync, WALFlush in a COMMIT: the WAL flush) longer than usual.
-- For SyncRep it says which standbys pg_stat_replication showed at the run's snapshots (its
-- start to the first at or after its end): a synchronous one connected confirmed slowly;
-- none connected, the one synchronous_standby_names waits for is down.
CREATE OR REPLACE FUNCTION telemetry._finding_commit_wait(p_run_id bigint, p_account jsonb)
RETURNS TABLE (finding text, severity text, summary text, evidence jsonb, recommendation text, explained_seconds numeric, children jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH waits AS (SELECT substr(r.bucket, 12) AS wait, sum(r.seconds) AS seconds, sum(r.extra_seconds) AS extra
                   FROM telemetry._account_rows(p_account, 'commit_wait') r GROUP BY 1),
    top AS (SELECT * FROM waits ORDER BY extra DESC LIMIT 1),
    standbys AS MATERIALIZED (
        SELECT r.application_name, host(r.client_addr) AS client_addr, r.sync_state,
               max(pg_wal_lsn_diff(r.sent_lsn, r.replay_lsn)) AS max_replay_lag_bytes,
               round(extract(epoch FROM max(r.replay_lag)), 1) AS max_replay_lag_seconds
        FROM top, telemetry._run_window(p_run_id) w
        CROSS JOIN LATERAL (SELECT telemetry._resolve_server(w.server) AS srv) s
        JOIN telemetry.replication_snapshots r ON r.server = s.srv AND r.captured_at >= w.snapshot_start
         AND r.captured_at <= coalesce((SELECT min(x.captured_at) FROM telemetry.snapshots x
                                        WHERE x.server = s.srv AND x.captured_at >= w.end_time), w.end_time)
        WHERE top.wait = 'SyncRep'
        GROUP BY 1, 2, 3),
    sync AS (SELECT string_agg(format('%s (%s)', coalesce(nullif(s.application_name, ''), s.client_addr, '?'), s.sync_state), ', '
                               ORDER BY s.application_name, s.client_addr, s.sync_state) FILTER (WHERE s.sync_state IN ('sync', 'quorum')) AS named,
                    string_agg(format('%s (%s)', coalesce(nullif(s.application_name, ''), s.client_addr, '?'), s.sync_state), ', '
                               ORDER BY s.application_name, s.client_addr, s.sync_state) AS all_named
             FROM standbys s)
    SELECT f.* FROM telemetry._cause_finding(p_account, 'commit_wait', 'The batch''s commits waited longer than usual',
        (SELECT format('Mostly %s (+%s s): %s', top.wait, round(top.extra, 1),
                       CASE WHEN top.wait <> 'SyncRep' THEN 'each commit waited for its WAL to reach the disk (slow WAL storage, or many small transactions each flushing).'
                            WHEN sync.named IS NOT NULL THEN format('each commit waited for a synchronous standby to confirm it, and %s was connected: it confirmed slowly (behind in writing, flushing or replaying WAL, or far away).', sync.named)
                            WHEN sync.all_named IS NOT NULL THEN format('each commit waited for a synchronous standby to confirm it, and none was connected, only %s: the one synchronous_standby_names waits for is down or cannot connect.', sync.all_named)
                            ELSE 'each commit waited for a synchronous standby to confirm it, and no standby was connected at the run''s snapshots: the one synchronous_standby_names waits for is down or cannot connect.' END)
         FROM top, sync),
        jsonb_build_object('commit_waits', (SELECT jsonb_object_agg(w.wait, round(w.seconds, 3)) FROM waits w),
                           'standbys', (SELECT jsonb_agg(to_jsonb(s) ORDER BY s.application_name, s.client_addr, s.sync_state) FROM standbys s)),
        CASE WHEN (SELECT wait FROM top) = 'SyncRep'
             THEN 'Check the synchronous standbys (pg_stat_replication: state, sync_state, replay lag): bring the missing one back, or take it out of synchronous_standby_names; for the batch alone, SET synchronous_commit = local (or off) where losing its last transactions on a failover is acceptable.'
             ELSE 'Commit less often (larger transactions), or put WAL on faster storage; for the batch alone, SET synchronous_commit = off where losing its last transactions on a crash is acceptable.' END) f
$$;
