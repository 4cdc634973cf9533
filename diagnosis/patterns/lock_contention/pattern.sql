-- lock_contention: the share of the window in which a session waited on a lock, from the
-- episodes where there are any, else the share of samples that saw one waiting.

INSERT INTO telemetry.diagnose_thresholds (name, value, unit, description) VALUES
    ('lock_wait_pct_warning', 5, 'percent of samples',
     'Samples with a client session waiting on a heavyweight lock: warning at this share.'),
    ('lock_wait_pct_critical', 25, 'percent of samples', 'Samples with a client session waiting on a heavyweight lock: critical at this share.')
ON CONFLICT (name) DO UPDATE SET unit = excluded.unit, description = excluded.description;

CREATE OR REPLACE FUNCTION telemetry._pattern_lock_contention(p_start_time timestamptz, p_end_time timestamptz,
                                                              p_snapshot_start timestamptz, p_server text, p_shared jsonb)
RETURNS TABLE (pattern text, severity text, score numeric, summary text, evidence jsonb, recommendation text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH
    -- The samples, and those in which client sessions (not idle: the sessions a batch is made
    -- of) waited on a lock.
    counts AS (SELECT * FROM telemetry._shared_sample_counts(p_shared, p_start_time, p_end_time, p_server)),
    nsmp AS (SELECT c.samples AS n FROM counts c),
    wait_time AS (SELECT * FROM telemetry._shared_waits(p_shared)),
    lockw AS (SELECT c.lock_samples AS samples, coalesce(c.lock_max_waiters, 0) AS max_waiters FROM counts c),
    -- The lock waits the wait sampler followed from start to end, where it ran (not in pg_cron
    -- mode): each with its blocker and its length, which the samples see only at their instants.
    episodes AS (SELECT * FROM telemetry.lock_episodes(p_start_time, p_end_time, p_server) e
                 WHERE e.lock_type IS DISTINCT FROM 'extend'),
    -- The time in the window during which at least one session waited: the union of the
    -- episodes, each counted from where the ones before it (by start) had reached.
    lock_cover AS (
        SELECT count(*) AS episodes, max(x.duration_seconds) AS longest_seconds, sum(x.duration_seconds) AS seconds,
               coalesce(sum(greatest(extract(epoch FROM x.e - greatest(x.s, coalesce(x.reached, x.s))), 0)), 0) AS covered_seconds
        FROM (SELECT c.*, max(c.e) OVER (ORDER BY c.s, c.e ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reached
              FROM (SELECT greatest(started_at, p_start_time) AS s, least(ended_at, p_end_time) AS e, duration_seconds FROM episodes) c) x),
    episode_blockers AS (
        SELECT e.blocking_pid, e.blocking_app, e.blocking_user, e.lock_type, e.locked_relation,
               e.blocking_query_preview, count(*) AS episodes, sum(e.duration_seconds) AS blocked_seconds,
               max(e.duration_seconds) AS max_blocked_seconds,
               -- the object where all its waits were on one (a row lock's transaction differs from
               -- one wait to the next), the longest wait's holder state
               CASE WHEN count(DISTINCT e.locked_object) = 1 THEN min(e.locked_object) END AS locked_object,
               (array_agg(e.blocking_state ORDER BY e.duration_seconds DESC, e.started_at))[1] AS blocking_state
        FROM episodes e GROUP BY 1, 2, 3, 4, 5, 6),
    sampled_blockers AS (
        SELECT l.blocking_pid, l.blocking_app, l.blocking_user, l.lock_type, l.locked_relation,
               l.blocking_query_preview, count(DISTINCT l.sample_id) AS samples,
               round(extract(epoch FROM max(l.blocked_duration))::numeric, 1) AS max_blocked_seconds,
               CASE WHEN count(DISTINCT l.locked_object) = 1 THEN min(l.locked_object) END AS locked_object,
               (array_agg(l.blocking_state ORDER BY l.blocked_duration DESC NULLS LAST, l.captured_at))[1] AS blocking_state
        FROM telemetry.lock_samples l
        WHERE l.server = p_server AND l.captured_at BETWEEN p_start_time AND p_end_time
        GROUP BY 1, 2, 3, 4, 5, 6),
    -- The top three blockers: by the seconds they held sessions up where the episodes tell,
    -- else by the samples that saw them block.
    blockers AS (
        SELECT * FROM (
            SELECT b.blocking_pid, b.blocking_app, b.blocking_user, b.lock_type, b.locked_relation, b.locked_object, to_jsonb(b) AS blocker,
                   row_number() OVER (ORDER BY b.blocked_seconds DESC, b.max_blocked_seconds DESC) AS rank
            FROM episode_blockers b
            UNION ALL
            SELECT b.blocking_pid, b.blocking_app, b.blocking_user, b.lock_type, b.locked_relation, b.locked_object, to_jsonb(b),
                   row_number() OVER (ORDER BY b.samples DESC, b.max_blocked_seconds DESC NULLS LAST)
            FROM sampled_blockers b WHERE NOT EXISTS (SELECT FROM episodes)) b
        WHERE b.rank <= 3)
    -- Info at least: lock waits were seen, if for under 0.05% of a long window (x.pct rounds to 0).
    SELECT 'lock_contention', coalesce(telemetry._severity(x.pct, telemetry._threshold('lock_wait_pct_warning'), telemetry._threshold('lock_wait_pct_critical')), 'info'),
           x.pct / telemetry._threshold('lock_wait_pct_warning'),
           CASE WHEN lc.episodes > 0
                THEN format('Sessions waited on locks during %s%% of the window (%s lock wait(s), %s s in all, the longest %s s)', x.pct, lc.episodes, lc.seconds, lc.longest_seconds)
                ELSE format('Client sessions waited on locks in %s%% of samples (%s of %s)', x.pct, lockw.samples, nsmp.n) END ||
           coalesce((SELECT format(', mostly behind %s (%s), waiting for %s',
                                   telemetry._lock_holder(b.blocking_pid),
                                   coalesce(nullif(b.blocking_app, ''), b.blocking_user, '?'),
                                   telemetry._lock_target(b.lock_type, b.locked_relation, b.locked_object))
                     FROM blockers b WHERE b.rank = 1), '') || '.',
           jsonb_build_object('samples', nsmp.n, 'samples_with_lock_waits', lockw.samples,
                              'pct_of_samples', round(100.0 * lockw.samples / nullif(nsmp.n, 0), 1),
                              'max_waiters', lockw.max_waiters,
                              'lock_wait_seconds', (SELECT round(sum(seconds)::numeric, 1) FROM wait_time WHERE wait_event_type = 'Lock'),
                              'blockers', (SELECT jsonb_agg(b.blocker ORDER BY b.rank) FROM blockers b)) ||
           CASE WHEN lc.episodes > 0
                THEN jsonb_build_object('pct_of_window', x.pct, 'lock_wait_episodes', lc.episodes,
                                        'episode_seconds', lc.seconds, 'longest_wait_seconds', lc.longest_seconds)
                ELSE '{}' END,
           format('See who blocked in %s for the window; move the conflicting job out of the batch''s window, shorten its transactions, or give the batch a lock_timeout so it fails fast instead of queueing.',
                  CASE WHEN lc.episodes > 0 THEN 'telemetry.lock_episodes' ELSE 'telemetry.recent_locks' END)
    FROM lockw, nsmp, lock_cover lc,
         LATERAL (SELECT CASE WHEN lc.episodes > 0 THEN round(100 * lc.covered_seconds / extract(epoch FROM p_end_time - p_start_time), 1)
                              ELSE round(100.0 * lockw.samples / nullif(nsmp.n, 0), 1) END AS pct) x
    WHERE lockw.samples > 0 OR lc.episodes > 0;
END
$$;
