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
-- in: its end's statement snapshot is written (where the server's statements were read at its
-- start), and the server's samples and snapshots (written in the order they were taken) have
-- gone settle_after_seconds past its end. Its data must be kept from where its analysis reads
-- them (data_from: its start, or the snapshots before it its window starts from), or it is
-- left to be read from what is left, every time. Results that fail or cannot be computed within
-- the statement's time (statement_timeout) are tried again at later calls, three times in all.
-- One run a call, so that each has the statement's whole time; one session a server at a time,
-- and none while retention cuts data (a call then returns NULL). The recorder calls it a few times a minute, pg_cron mode's
-- telemetry_settle job every minute (settle_runs).
CREATE OR REPLACE FUNCTION telemetry.settle_run(p_server text)
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_fingerprint text := telemetry._run_results_fingerprint();
    v_first timestamptz;
    v_due timestamptz;
    v_run telemetry.batch_runs;
    v_start timestamptz;
    v_from timestamptz;
    v_attempts integer;
    v_batch text;
    v_own boolean;
BEGIN
    -- Neither while retention cuts data (telemetry._retention_lock) nor beside another session
    -- settling the server's runs: those wait for the next call.
    IF NOT pg_try_advisory_xact_lock_shared(hashtext('telemetry.retention'), 0)
       OR NOT pg_try_advisory_xact_lock(hashtext('telemetry.settle_run'), hashtext(p_server)) THEN
        RETURN NULL;
    END IF;
    SELECT min(s.captured_at), max(s.captured_at) INTO v_first, v_due FROM telemetry.snapshots s WHERE s.server = p_server;
    v_due := least(v_due, (SELECT max(s.captured_at) FROM telemetry.samples s WHERE s.server = p_server))
             - telemetry._threshold('settle_after_seconds') * interval '1 second';
    SELECT r.* INTO v_run
    FROM telemetry.batch_runs r
    JOIN telemetry.batch_runs_checked c ON c.run_id = r.run_id AND c.times_ok
    LEFT JOIN telemetry.run_results x ON x.run_id = r.run_id
    WHERE r.status <> 'running' AND r.ended_at <= v_due AND r.started_at >= v_first
      AND (r.server = p_server OR r.server IS NULL AND (SELECT array_agg(x.server) FROM telemetry.servers x) = ARRAY[p_server])
      AND (x.run_id IS NULL OR NOT telemetry._run_results_hold(x, r, v_fingerprint) OR NOT x.complete AND x.attempts < 3)
      -- its end's statement snapshot written, where one at its start says the server's statements are read
      AND (EXISTS (SELECT FROM telemetry.statement_info_snapshots i WHERE i.server = p_server AND i.captured_at >= r.ended_at)
           OR NOT EXISTS (SELECT FROM telemetry.statement_info_snapshots i
                          WHERE i.server = p_server AND i.captured_at <= telemetry._run_snapshot_start(r.started_at, r.ended_at, r.start_snapshot_at)))
    ORDER BY r.ended_at DESC, r.run_id DESC
    LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    -- Where its analysis reads from: the statements as of the last full read before its window
    -- (all of them where there was none), and the snapshot before it.
    v_start := telemetry._run_snapshot_start(v_run.started_at, v_run.ended_at, v_run.start_snapshot_at);
    v_from := least(v_run.started_at,
                    (SELECT max(s.captured_at) FROM telemetry.snapshots s WHERE s.server = p_server AND s.captured_at <= v_start),
                    CASE WHEN EXISTS (SELECT FROM telemetry.statement_info_snapshots i WHERE i.server = p_server AND i.captured_at <= v_start)
                         THEN coalesce((SELECT max(i.captured_at) FROM telemetry.statement_info_snapshots i
                                        WHERE i.server = p_server AND i.full_read AND i.captured_at <= v_start), v_first) END);
    -- Attempts go on counting while the results would hold, and start again once they do not.
    SELECT CASE WHEN telemetry._run_results_hold(x, v_run, v_fingerprint) THEN x.attempts ELSE 0 END INTO v_attempts
    FROM telemetry.run_results x WHERE x.run_id = v_run.run_id;
    DELETE FROM telemetry.run_results WHERE run_id = v_run.run_id;
    INSERT INTO telemetry.run_results (run_id, server, started_at, ended_at, start_snapshot_at, fingerprint, data_server, data_from,
                                       computed_at, complete, attempts)
    VALUES (v_run.run_id, v_run.server, v_run.started_at, v_run.ended_at, v_run.start_snapshot_at, v_fingerprint, p_server, v_from,
            clock_timestamp(), false, coalesce(v_attempts, 0) + 1);
    IF v_from < v_first THEN
        -- Retention cut where its analysis reads from: never settled, read from what is left.
        UPDATE telemetry.run_results SET attempts = 3 WHERE run_id = v_run.run_id;
        RETURN v_run.run_id;
    END IF;
    -- Computed from the data, as the results are not complete until the update at the end.
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
             LATERAL telemetry._runs_statements(ARRAY[v_run.run_id], o.own, true) WITH ORDINALITY s (run_id, batch, queryid, query, status,
                 calls, rows, seconds, blocks, temp_blks, wal_bytes, sampled_waits, evicted, ord)
        WHERE NOT o.own OR v_batch IS NOT NULL;
        INSERT INTO telemetry.run_result_measures (run_id, own, ord, measure, pattern, unit, value)
        SELECT v_run.run_id, o.own, m.ord, m.measure, m.pattern, m.unit, m.value
        FROM (VALUES (false), (true)) o (own),
             LATERAL telemetry._run_part_measures(v_run.run_id, o.own, NULL) WITH ORDINALITY m (measure, pattern, unit, value, ord);
        UPDATE telemetry.run_results SET complete = true, statement_batch = v_batch, own_recorded = v_own, computed_at = clock_timestamp()
        WHERE run_id = v_run.run_id;
    EXCEPTION WHEN query_canceled OR others THEN
        RAISE WARNING 'run % could not be settled (attempt %; its analysis reads its data each time): %',
            v_run.run_id, coalesce(v_attempts, 0) + 1, SQLERRM;
    END;
    -- The statement medians of the baselines it completes (_store_next_statement_baseline): its
    -- own next one, and that of the latest settled normal run of its batch (runs are settled
    -- the latest first: the last of a baseline to settle completes the latest's). A failure
    -- leaves them to be computed where read.
    BEGIN
        PERFORM telemetry._store_next_statement_baseline(k.run_id)
        FROM (SELECT v_run.run_id
              UNION
              (SELECT b.run_id FROM telemetry._normal_runs_before(v_run.batch, 'infinity') b
               JOIN telemetry.run_results x ON x.run_id = b.run_id AND x.complete
               ORDER BY b.started_at DESC LIMIT 1)) k (run_id);
    EXCEPTION WHEN query_canceled OR others THEN
        RAISE WARNING 'the statement medians of the baselines run % completes could not be stored (they are computed where read): %',
            v_run.run_id, SQLERRM;
    END;
    RETURN v_run.run_id;
END
$$;
REVOKE EXECUTE ON FUNCTION telemetry.settle_run(text) FROM PUBLIC;

-- settle_runs is pg_cron mode's telemetry_settle job (every minute): for each recorded server,
-- settle_run up to 5 times (the recorder's settleAtOnce), until it returns NULL. A failure is a
-- warning and ends that server's turn, never the other servers'; a cancel or timeout
-- (statement_timeout, which the job's calls share: it is one statement) ends the job, keeping
-- the runs settled before it. Returns how many settle_run calls returned a run.
CREATE OR REPLACE FUNCTION telemetry.settle_runs()
RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_server text;
    v_run bigint;
    v_settled integer := 0;
BEGIN
    FOR v_server IN SELECT s.server FROM telemetry.servers s ORDER BY s.server LOOP
        FOR i IN 1..5 LOOP
            BEGIN
                v_run := telemetry.settle_run(v_server);
            EXCEPTION
                WHEN query_canceled THEN
                    RAISE WARNING 'telemetry.settle_run(%) was cancelled (runs are analysed from their data): %', v_server, SQLERRM;
                    RETURN v_settled;
                WHEN others THEN
                    RAISE WARNING 'telemetry.settle_run(%) failed (runs are analysed from their data): %', v_server, SQLERRM;
                    EXIT;
            END;
            EXIT WHEN v_run IS NULL;
            v_settled := v_settled + 1;
        END LOOP;
    END LOOP;
    RETURN v_settled;
END
$$;
REVOKE EXECUTE ON FUNCTION telemetry.settle_runs() FROM PUBLIC;
