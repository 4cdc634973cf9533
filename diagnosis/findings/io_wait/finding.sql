-- io_wait: the batch's statements waited on reads and writes (IO:*) longer than usual, at the
-- same plan (a statement whose blocks per row rose is statement_regression).
CREATE OR REPLACE FUNCTION telemetry._finding_io_wait(p_run_id bigint, p_account jsonb)
RETURNS TABLE (finding text, severity text, summary text, evidence jsonb, recommendation text, explained_seconds numeric, children jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH waits AS (SELECT r.bucket AS wait, sum(r.seconds) AS seconds, sum(r.extra_seconds) AS extra
                   FROM telemetry._account_rows(p_account, 'io_wait') r GROUP BY 1),
    top AS (SELECT r.query, r.queryid, r.statistics AS s FROM telemetry._account_rows(p_account, 'io_wait') r
            WHERE r.statistics IS NOT NULL ORDER BY r.extra_seconds DESC LIMIT 1)
    SELECT f.* FROM telemetry._cause_finding(p_account, 'io_wait', 'The batch''s statements waited on I/O longer than usual',
        (SELECT 'Mostly ' || string_agg(format('%s (+%s s)', w.wait, round(w.extra, 1)), ', ' ORDER BY w.extra DESC)
                || coalesce((SELECT format('; "%s"%s', telemetry._statement_label(top.query, top.queryid),
                                           coalesce(nullif(telemetry._statistics_note(top.s), ''),
                                                    -- (the blocks pg_stat_statements counts read, whether from the
                                                    -- operating system's page cache or the disk)
                                                    CASE WHEN (top.s->>'baseline_seconds_per_call') IS NOT NULL AND (top.s->>'baseline_blocks_per_call') IS NOT NULL
                                                    THEN format(': %s per call instead of %s, reading %s blocks per call (baseline %s)%s',
                                                           (telemetry._call_times(top.s))[1], (telemetry._call_times(top.s))[2],
                                                           round((top.s->>'blocks_per_call')::numeric), round((top.s->>'baseline_blocks_per_call')::numeric),
                                                           CASE WHEN (top.s->>'blocks_per_call')::numeric * telemetry._threshold('statement_growth_ratio') >= (top.s->>'baseline_blocks_per_call')::numeric
                                                                 AND (top.s->>'blocks_per_call')::numeric <= telemetry._threshold('statement_growth_ratio') * (top.s->>'baseline_blocks_per_call')::numeric
                                                                THEN ': the same reads took longer' ELSE '' END) END, ''))
                             FROM top), '') || '.'
         FROM (SELECT * FROM waits ORDER BY extra DESC LIMIT 3) w),
        jsonb_build_object('io_waits', (SELECT jsonb_object_agg(w.wait, round(w.seconds, 3)) FROM waits w)),
        'Reads that used to come from memory came from disk, or the disk was slower: check the cache hit ratio (shared_blks_read against hit in the statements'' evidence), other I/O on the server in the window (telemetry.diagnose(start, end): checkpoints, autovacuum) and the storage''s latency.') f
$$;
