-- commit_wait: the batch's own sessions waited at commit (SyncRep: a synchronous standby's
-- confirmation; WALWrite, WALSync, WALFlush in a COMMIT: the WAL flush) longer than usual.
CREATE OR REPLACE FUNCTION telemetry._finding_commit_wait(p_run_id bigint, p_account jsonb)
RETURNS TABLE (finding text, severity text, summary text, evidence jsonb, recommendation text, explained_seconds numeric, children jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH waits AS (SELECT substr(r.bucket, 12) AS wait, sum(r.seconds) AS seconds, sum(r.extra_seconds) AS extra
                   FROM telemetry._account_rows(p_account, 'commit_wait') r GROUP BY 1),
    top AS (SELECT * FROM waits ORDER BY extra DESC LIMIT 1)
    SELECT f.* FROM telemetry._cause_finding(p_account, 'commit_wait', 'The batch''s commits waited longer than usual',
        (SELECT format('Mostly %s (+%s s): %s', top.wait, round(top.extra, 1),
                       CASE WHEN top.wait = 'SyncRep' THEN 'each commit waited for a synchronous standby to confirm it (synchronous_standby_names; a standby down or lagging holds every commit).'
                            ELSE 'each commit waited for its WAL to reach the disk (slow WAL storage, or many small transactions each flushing).' END)
         FROM top),
        jsonb_build_object('commit_waits', (SELECT jsonb_object_agg(w.wait, round(w.seconds, 3)) FROM waits w)),
        CASE WHEN (SELECT wait FROM top) = 'SyncRep'
             THEN 'Check the synchronous standbys (pg_stat_replication: state, sync_state, replay lag): bring the missing one back, or take it out of synchronous_standby_names; for the batch alone, SET synchronous_commit = local (or off) where losing its last transactions on a failover is acceptable.'
             ELSE 'Commit less often (larger transactions), or put WAL on faster storage; for the batch alone, SET synchronous_commit = off where losing its last transactions on a crash is acceptable.' END) f
$$;
