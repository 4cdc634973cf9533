-- Settling a run: once its data are all in, its own results (statements and measures, what a
-- later run reads of it as a baseline run) are computed once and stored in run_results, so
-- that a run against 30 baseline runs reads 30 stored results, not 30 windows of data (issue
-- 22). The readers take them only while they hold (_run_settled): the same run times and
-- fingerprint (_run_results_fingerprint); else, and before a run is settled, they compute
-- from the data as before, to the same answer (recorder.TestRollupsAnswerAsRawRows).

INSERT INTO telemetry.diagnose_thresholds (name, value, unit, description) VALUES
    ('settle_after_seconds', 600, 'seconds',
     'A run''s results are computed once and stored (settle_run) when the server''s samples and snapshots have gone this far past its end: its data are all in.')
ON CONFLICT (name) DO UPDATE SET unit = excluded.unit, description = excluded.description;

-- settle_run settles the latest ended run of server p_server whose data are all in and whose
-- results are not stored (or no longer hold), and returns its run_id (NULL: none left). All
-- in: the server's samples and snapshots (written in the order they were taken) have gone
-- settle_after_seconds past the run's end, and the run began after the server's first
-- snapshot kept (a run whose start retention cut is read from what is left, every time).
-- Results that cannot be computed within the statement's time (statement_timeout), or that
-- fail, are left incomplete: read from the data each time, as before. One run a call, so that
-- each has the statement's whole time: the recorder calls it a few times a minute, and pg_cron
-- mode's snapshot() once a snapshot.
CREATE OR REPLACE FUNCTION telemetry.settle_run(p_server text)
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_fingerprint text := telemetry._run_results_fingerprint();
    v_run telemetry.batch_runs;
    v_batch text;
    v_own boolean;
BEGIN
    SELECT r.* INTO v_run
    FROM telemetry.batch_runs r
    JOIN telemetry.batch_runs_checked c ON c.run_id = r.run_id AND c.times_ok
    CROSS JOIN (SELECT min(s.captured_at) AS first_at, max(s.captured_at) AS last_at
                FROM telemetry.snapshots s WHERE s.server = p_server) snap
    CROSS JOIN (SELECT max(s.captured_at) AS last_at FROM telemetry.samples s WHERE s.server = p_server) sample
    WHERE r.status <> 'running' AND r.ended_at IS NOT NULL
      AND (r.server = p_server OR r.server IS NULL AND (SELECT array_agg(x.server) FROM telemetry.servers x) = ARRAY[p_server])
      AND r.started_at >= snap.first_at
      AND r.ended_at + telemetry._threshold('settle_after_seconds') * interval '1 second' <= least(snap.last_at, sample.last_at)
      AND NOT EXISTS (SELECT FROM telemetry.run_results x WHERE x.run_id = r.run_id AND telemetry._run_results_hold(x, r, v_fingerprint))
    ORDER BY r.ended_at DESC, r.run_id DESC
    LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    -- Computed from the data: the run's results are taken as not settled (complete false)
    -- until its rows are all in.
    DELETE FROM telemetry.run_results WHERE run_id = v_run.run_id;
    INSERT INTO telemetry.run_results (run_id, server, started_at, ended_at, start_snapshot_at, fingerprint, computed_at, complete)
    VALUES (v_run.run_id, v_run.server, v_run.started_at, v_run.ended_at, v_run.start_snapshot_at, v_fingerprint, clock_timestamp(), false)
    ON CONFLICT (run_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN NULL; -- another session (a second recorder of the server) has just settled it
    END IF;
    BEGIN
        v_batch := telemetry._run_statement_batch(v_run.run_id);
        v_own := telemetry._run_own_recorded(v_run.run_id);
        -- Every session's, and its own sessions' where it had them apart (read as every
        -- session's where not: _runs_statements).
        INSERT INTO telemetry.run_result_statements (run_id, own, ord, queryid, query, status, calls, rows, seconds, blocks,
                                                     temp_blks, wal_bytes, sampled_waits, evicted)
        SELECT v_run.run_id, o.own, s.ord, s.queryid, s.query, s.status, s.calls, s.rows, s.seconds, s.blocks, s.temp_blks,
               s.wal_bytes, s.sampled_waits, s.evicted
        FROM (VALUES (false), (true)) o (own),
             LATERAL telemetry._runs_statements(ARRAY[v_run.run_id], o.own) WITH ORDINALITY s (run_id, batch, queryid, query, status,
                 calls, rows, seconds, blocks, temp_blks, wal_bytes, sampled_waits, evicted, ord)
        WHERE NOT o.own OR v_batch IS NOT NULL;
        INSERT INTO telemetry.run_result_measures (run_id, own, ord, measure, pattern, unit, value)
        SELECT v_run.run_id, o.own, m.ord, m.measure, m.pattern, m.unit, m.value
        FROM (VALUES (false), (true)) o (own),
             LATERAL telemetry._run_part_measures(v_run.run_id, o.own, NULL) WITH ORDINALITY m (measure, pattern, unit, value, ord);
        UPDATE telemetry.run_results SET complete = true, statement_batch = v_batch, own_recorded = v_own, computed_at = clock_timestamp()
        WHERE run_id = v_run.run_id;
    EXCEPTION WHEN query_canceled OR others THEN
        RAISE WARNING 'run % could not be settled (its analysis reads its data each time): %', v_run.run_id, SQLERRM;
    END;
    RETURN v_run.run_id;
END
$$;
REVOKE EXECUTE ON FUNCTION telemetry.settle_run(text) FROM PUBLIC;
