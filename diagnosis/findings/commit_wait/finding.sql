-- commit_wait: the batch's own sessions waited at commit (SyncRep: a synchronous standby's
-- confirmation; WALWrite, WALSync, WALFlush in a COMMIT: the WAL flush) longer than usual.
-- For SyncRep it says what pg_stat_replication showed at the run's snapshots (its start's to
-- the first at or after its end), judged at the last, which the samples the batch triggers
-- keep fresh: a standby seen earlier but gone then went down; a synchronous one still there
-- confirmed slowly; none synchronous, the one synchronous_standby_names waits for was down.
CREATE OR REPLACE FUNCTION telemetry._finding_commit_wait(p_run_id bigint, p_account jsonb)
RETURNS TABLE (finding text, severity text, summary text, evidence jsonb, recommendation text, explained_seconds numeric, children jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH waits AS (SELECT substr(r.bucket, 12) AS wait, sum(r.seconds) AS seconds, sum(r.extra_seconds) AS extra
                   FROM telemetry._account_rows(p_account, 'commit_wait') r GROUP BY 1),
    top AS (SELECT * FROM waits ORDER BY extra DESC LIMIT 1),
    w AS (SELECT w.*, telemetry._resolve_server(w.server) AS srv
          FROM top, telemetry._run_window(p_run_id) w WHERE top.wait = 'SyncRep'),
    snaps AS (SELECT x.captured_at FROM w JOIN telemetry.snapshots x ON x.server = w.srv AND x.captured_at >= w.snapshot_start
                AND x.captured_at <= coalesce((SELECT min(e.captured_at) FROM telemetry.snapshots e
                                               WHERE e.server = w.srv AND e.captured_at >= w.end_time), w.end_time)),
    standbys AS (
        SELECT coalesce(nullif(r.application_name, ''), host(r.client_addr), '?') AS name,
               r.application_name, host(r.client_addr) AS client_addr,
               (array_agg(coalesce(r.sync_state, 'sync_state unknown') ORDER BY r.captured_at DESC))[1] AS sync_state,
               bool_or(r.captured_at = (SELECT max(captured_at) FROM snaps)) AS at_end,
               max(pg_wal_lsn_diff(r.sent_lsn, r.replay_lsn)) AS max_replay_lag_bytes,
               round(extract(epoch FROM max(r.replay_lag)), 1) AS max_replay_lag_seconds
        FROM w JOIN telemetry.replication_snapshots r ON r.server = w.srv AND r.captured_at IN (SELECT captured_at FROM snaps)
        GROUP BY 1, 2, 3),
    seen AS (SELECT string_agg(format('%s (%s)', s.name, s.sync_state), ', ' ORDER BY s.name)
                        FILTER (WHERE s.at_end AND s.sync_state IN ('sync', 'quorum')) AS sync_at_end,
                    string_agg(format('%s (%s)', s.name, s.sync_state), ', ' ORDER BY s.name) FILTER (WHERE s.at_end) AS at_end,
                    string_agg(s.name, ', ' ORDER BY s.name) FILTER (WHERE NOT s.at_end) AS gone
             FROM standbys s)
    SELECT f.* FROM telemetry._cause_finding(p_account, 'commit_wait', 'The batch''s commits waited longer than usual',
        (SELECT format('Mostly %s (+%s s): %s', top.wait, round(top.extra, 1),
                       CASE WHEN top.wait <> 'SyncRep' THEN 'each commit waited for its WAL to reach the disk (slow WAL storage, or many small transactions each flushing).'
                            ELSE 'each commit waited for a synchronous standby to confirm it (synchronous_standby_names), and ' ||
                                 CASE WHEN seen.gone IS NOT NULL THEN format('%s, seen earlier in the run, was gone by its end: it went down or lost its connection.', seen.gone)
                                      WHEN seen.sync_at_end IS NOT NULL THEN format('%s stayed connected: it confirmed slowly (behind in writing, flushing or replaying WAL, or far away), or synchronous_standby_names waits for more standbys than were connected.', seen.sync_at_end)
                                      WHEN seen.at_end IS NOT NULL THEN format('no synchronous standby was connected, only %s: the one synchronous_standby_names waits for was down, or still catching up (potential).', seen.at_end)
                                      ELSE 'pg_stat_replication showed no standby at the run''s snapshots: the one synchronous_standby_names waits for was down or could not connect (unless the replication collector is off).' END END)
               -- synchronous_commit, synchronous_standby_names, the WAL's own settings
               || telemetry._run_changed_settings(p_run_id, '^(Write-Ahead Log / Settings|Replication)')
         FROM top, seen),
        jsonb_build_object('commit_waits', (SELECT jsonb_object_agg(w.wait, round(w.seconds, 3)) FROM waits w),
                           'standbys', (SELECT jsonb_agg(to_jsonb(s) - 'name' ORDER BY s.name) FROM standbys s)),
        CASE WHEN (SELECT wait FROM top) = 'SyncRep'
             THEN 'Check the synchronous standbys (pg_stat_replication: state, sync_state, replay lag): bring the missing one back, or take it out of synchronous_standby_names; for the batch alone, SET synchronous_commit = local (or off) where losing its last transactions on a failover is acceptable.'
             ELSE 'Commit less often (larger transactions), or put WAL on faster storage; for the batch alone, SET synchronous_commit = off where losing its last transactions on a crash is acceptable.' END) f
$$;
