-- Batch runs' functions and view (the table: schema/migrations/0002_batch_runs.sql).
-- A repeatable definition: applied again whenever its text changes.

-- The batch functions' settings, kept where an operator changed a value: rows of diagnosis's
-- telemetry.diagnose_thresholds, read with its telemetry._threshold
-- (diagnosis/diagnosissql/thresholds.sql, applied before this file).
INSERT INTO telemetry.diagnose_thresholds (name, value, unit, description) VALUES
    ('batch_max_run_seconds', 86400, 'seconds',
     'A run still open after this long is closed as abandoned (its end was never marked).'),
    ('boundary_snapshot_grace_seconds', 5, 'seconds',
     'A run without the snapshot batch_begin asked for noted (recorded before it was, or its snapshot failed) starts on one taken up to this long (at most a tenth of the run) after its begin.')
ON CONFLICT (name) DO UPDATE SET unit = excluded.unit, description = excluded.description;

-- _manages_every_run tells whether a role may mark any batch's runs: the schema's owner (and
-- superusers) and the exporter's role, telemetry_recorder (its tracker records detected
-- runs). A batch job's role (telemetry_writer) marks only its own batches' runs
-- (batch_runs.began_by). batch_begin and batch_end run as their owner: they ask for session_user.
CREATE OR REPLACE FUNCTION telemetry._manages_every_run(p_role name) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(pg_has_role(r.oid, n.nspowner, 'MEMBER')
                    OR pg_has_role(r.oid, to_regrole('telemetry_recorder'), 'MEMBER'), false)
    FROM pg_namespace n LEFT JOIN pg_roles r ON r.rolname = p_role -- a role dropped since: none
    WHERE n.nspname = 'telemetry'
$$;

-- batch_runs_checked is every run with times_ok: _run_times_ok's test of its begin and end,
-- with the range read once per query (the function per row costs ~50 us: 3 s for 60,000 runs).
-- Runs stored otherwise (before batch_begin checked, or by hand) are what readers skip, and
-- count: batch_runs_out_of_range.
CREATE OR REPLACE VIEW telemetry.batch_runs_checked AS
SELECT r.run_id, r.batch, r.started_at, r.ended_at, r.status, r.source, r.exit_code, r.detail, r.server,
       r.backend_pid, r.backend_start, r.began_by,
       coalesce(r.started_at <@ t.accepted AND (r.ended_at IS NULL OR r.ended_at <@ t.accepted), false) AS times_ok,
       r.start_snapshot_at
FROM telemetry.batch_runs r CROSS JOIN (SELECT telemetry._time_range() AS accepted OFFSET 0) t;

-- close_abandoned_runs closes the runs that will never get their end: open longer than
-- batch_max_run_seconds, or begun by an exec wrapper whose session is gone. SECURITY DEFINER:
-- a session is judged gone with the schema owner's sight of pg_stat_activity (the exporter's
-- role has pg_read_all_stats through pg_monitor), not the caller's: a batch role without it
-- sees other roles' backend_start as NULL, and closed their live runs. A session whose start
-- even the owner cannot see is taken as alive: its run is closed by age only. It takes no
-- input, and writes nothing but this.
CREATE OR REPLACE FUNCTION telemetry.close_abandoned_runs() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_closed integer;
BEGIN
    UPDATE telemetry.batch_runs r
    SET status = 'abandoned',
        ended_at = greatest(r.started_at, clock_timestamp()),
        detail = CASE WHEN r.started_at < clock_timestamp() - make_interval(secs => telemetry._threshold('batch_max_run_seconds'))
                      THEN format('no batch_end within batch_max_run_seconds (%s s)', telemetry._threshold('batch_max_run_seconds'))
                      ELSE 'the exec wrapper''s session ended without batch_end' END
    WHERE r.status = 'running'
      AND (r.started_at < clock_timestamp() - make_interval(secs => telemetry._threshold('batch_max_run_seconds'))
           OR (r.source = 'exec' AND r.backend_pid IS NOT NULL AND NOT EXISTS (
                   SELECT FROM pg_stat_activity a
                   WHERE a.pid = r.backend_pid AND (a.backend_start = r.backend_start OR a.backend_start IS NULL))));
    GET DIAGNOSTICS v_closed = ROW_COUNT;
    RETURN v_closed;
END
$$;
REVOKE EXECUTE ON FUNCTION telemetry.close_abandoned_runs() FROM PUBLIC;

-- _boundary_snapshot takes the snapshot at a batch's boundary: the Go recorder takes it when
-- asked (_request_snapshot, at once: a run's own); where none listens (pg_cron mode) it is taken here.
-- At a run's begin (p_run_id) that snapshot is the run's start read (batch_runs.start_snapshot_at:
-- the recorder notes it once taken). Reading the other sessions' LISTEN needs the owner's
-- rights (SECURITY DEFINER). A failed snapshot only warns: it must not fail the batch.
-- A recorder listens once its LISTEN is done, its session no longer active (the one rule,
-- collectors.SQLActiveState): while it runs, it has not committed, and a notification then
-- reaches no one.
CREATE OR REPLACE FUNCTION telemetry._recorder_listening() RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT FROM pg_stat_activity
                   WHERE datname = current_database() AND query = 'LISTEN telemetry_request_snapshot'
                     AND NOT (state NOT LIKE 'idle%'))
$$;
REVOKE EXECUTE ON FUNCTION telemetry._recorder_listening() FROM PUBLIC;

DROP FUNCTION IF EXISTS telemetry._boundary_snapshot();
CREATE OR REPLACE FUNCTION telemetry._boundary_snapshot(p_run_id bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_at timestamptz;
BEGIN
    PERFORM telemetry._request_snapshot(true, p_run_id);
    IF NOT telemetry._recorder_listening() THEN
        BEGIN
            v_at := telemetry.snapshot();
            UPDATE telemetry.batch_runs SET start_snapshot_at = v_at WHERE run_id = p_run_id;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'no snapshot at the batch''s boundary: %', SQLERRM;
        END;
    END IF;
END
$$;
REVOKE EXECUTE ON FUNCTION telemetry._boundary_snapshot(bigint) FROM PUBLIC;

-- batch_begin opens a run and takes a snapshot, so that the run's window starts on a
-- snapshot of its own. Returns the run's id. SECURITY DEFINER: a batch job's role has no
-- right on the tables, only these functions, which record its role as the run's began_by.
-- A batch belongs to the role that marked its first run (_manages_every_run's roles and
-- dropped roles aside): another role's run would close that role's open run or enter its
-- runs' baseline.
CREATE OR REPLACE FUNCTION telemetry.batch_begin(p_batch text, p_source text DEFAULT 'marker',
                                                 p_started_at timestamptz DEFAULT NULL, p_server text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    -- A start ahead of now (another host's clock) is now: a run cannot begin in the future.
    v_at  timestamptz := least(telemetry._check_time(coalesce(p_started_at, clock_timestamp()), 'the run''s start'), clock_timestamp());
    v_run bigint;
    v_other record;
BEGIN
    -- Detected runs are the exporter's tracker's own: it reads only the others back.
    IF p_source = 'detected' AND NOT telemetry._manages_every_run(session_user) THEN
        RAISE EXCEPTION 'only the exporter''s role records detected runs' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_batch IS NULL OR btrim(p_batch) = '' THEN
        RAISE EXCEPTION 'batch name must not be empty';
    END IF;
    -- The name becomes a Prometheus label: bounded as the exporter bounds it (batch.MaxNameBytes).
    IF octet_length(p_batch) > 200 THEN
        RAISE EXCEPTION 'batch name of % bytes: at most 200', octet_length(p_batch);
    END IF;
    -- Nor control characters (a tab, a newline), as batch.CheckName refuses them.
    IF p_batch ~ '[\u0001-\u001f\u007f-\u009f]' THEN
        RAISE EXCEPTION 'batch name % has a control character', to_json(p_batch);
    END IF;
    -- Stored and shown on every page of the run, as the batch's name is.
    IF octet_length(p_server) > 200 THEN
        RAISE EXCEPTION 'server name of % bytes: at most 200', octet_length(p_server);
    END IF;
    PERFORM telemetry.close_abandoned_runs();
    IF NOT telemetry._manages_every_run(session_user) THEN
        SELECT run_id, began_by INTO v_other FROM telemetry.batch_runs
        WHERE batch = p_batch AND began_by IS DISTINCT FROM session_user
          AND (status = 'running' OR began_by IN (SELECT rolname FROM pg_roles) AND NOT telemetry._manages_every_run(began_by))
        LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'batch % is marked by role %, not %: run % is theirs', p_batch,
                coalesce(v_other.began_by::text, '(unknown)'), session_user, v_other.run_id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;
    UPDATE telemetry.batch_runs
    SET status = 'abandoned', ended_at = greatest(started_at, v_at),
        detail = 'a new run began before batch_end'
    WHERE batch = p_batch AND status = 'running';
    -- The session's pid only with its backend_start (which the owner sees with
    -- pg_read_all_stats): a pid alone would make close_abandoned_runs take the run for dead.
    INSERT INTO telemetry.batch_runs (batch, started_at, source, backend_pid, backend_start, server, began_by)
    SELECT p_batch, v_at, p_source, CASE WHEN a.backend_start IS NOT NULL THEN pg_backend_pid() END, a.backend_start,
           p_server, session_user
    FROM pg_stat_activity a WHERE a.pid = pg_backend_pid()
    RETURNING run_id INTO v_run;
    PERFORM telemetry._boundary_snapshot(v_run);
    RETURN v_run;
END
$$;
REVOKE EXECUTE ON FUNCTION telemetry.batch_begin(text, text, timestamptz, text) FROM PUBLIC;

-- batch_end closes the batch's open run with a status (succeeded, failed, cancelled, ended)
-- and takes a snapshot. Without an open run it warns (saying how the batch's last run was
-- closed, where one was) and returns NULL: a lost begin must not fail the batch's last step.
-- Another role's open run it refuses to close (SECURITY DEFINER as batch_begin).
CREATE OR REPLACE FUNCTION telemetry.batch_end(p_batch text, p_status text DEFAULT 'succeeded',
                                               p_exit_code integer DEFAULT NULL,
                                               p_ended_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_run bigint;
    v_other record;
BEGIN
    IF p_status IS NULL OR p_status NOT IN ('succeeded', 'failed', 'cancelled', 'ended') THEN
        RAISE EXCEPTION 'batch_end status must be succeeded, failed, cancelled or ended, not %', coalesce(p_status, 'NULL');
    END IF;
    PERFORM telemetry._check_time(p_ended_at, 'the run''s end') WHERE p_ended_at IS NOT NULL;
    PERFORM telemetry.close_abandoned_runs();
    UPDATE telemetry.batch_runs
    SET status = p_status, exit_code = p_exit_code,
        ended_at = greatest(started_at, least(coalesce(p_ended_at, clock_timestamp()), clock_timestamp()))
    WHERE batch = p_batch AND status = 'running' AND (began_by = session_user OR telemetry._manages_every_run(session_user))
    RETURNING run_id INTO v_run;
    IF v_run IS NULL THEN
        SELECT run_id, began_by INTO v_other FROM telemetry.batch_runs WHERE batch = p_batch AND status = 'running';
        IF FOUND THEN
            RAISE EXCEPTION 'batch %''s open run % was begun by role %, not %: that role ends it', p_batch,
                v_other.run_id, coalesce(v_other.began_by::text, '(unknown)'), session_user
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RAISE WARNING 'batch % has no open run: batch_end ignored%', p_batch,
            coalesce((SELECT format(' (its last run, %s, was closed as %s at %s: %s)', r.run_id, r.status, r.ended_at, coalesce(r.detail, 'no detail'))
                      FROM telemetry.batch_runs r WHERE r.batch = p_batch ORDER BY r.run_id DESC LIMIT 1), '');
        RETURN NULL;
    END IF;
    PERFORM telemetry._boundary_snapshot(NULL);
    RETURN v_run;
END
$$;
REVOKE EXECUTE ON FUNCTION telemetry.batch_end(text, text, integer, timestamptz) FROM PUBLIC;

-- _run_snapshot_start is where a run's start snapshot is looked for (the latest at or before):
-- the snapshot taken for batch_begin's request (p_start_snapshot_at, batch_runs.start_snapshot_at),
-- however late it came, unless after the run's end (a run shorter than the delay has no start
-- read of its own). Without it (a run recorded before it was noted, or the snapshot failed),
-- one taken shortly after the begin: within boundary_snapshot_grace_seconds, at most a tenth
-- of the run.
DROP FUNCTION IF EXISTS telemetry._run_snapshot_start(timestamptz, timestamptz) CASCADE;
CREATE OR REPLACE FUNCTION telemetry._run_snapshot_start(p_started_at timestamptz, p_ended_at timestamptz,
                                                         p_start_snapshot_at timestamptz)
RETURNS timestamptz LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- PL/pgSQL: an expression it keeps ready (16 us a call; as SQL, planned at each call, 130 us)
    RETURN CASE WHEN p_start_snapshot_at <= coalesce(p_ended_at, now()) THEN p_start_snapshot_at
                ELSE p_started_at + least(make_interval(secs => telemetry._threshold('boundary_snapshot_grace_seconds')),
                                          (coalesce(p_ended_at, now()) - p_started_at) / 10) END;
END
$$;

-- recent_batch_runs: the runs of the last 7 days and every open one, newest first, with the
-- snapshots each starts and ends on: compare(start_snapshot_at, end_snapshot_at) is the run.
CREATE OR REPLACE VIEW telemetry.recent_batch_runs AS
SELECT r.run_id, r.batch, r.started_at, r.ended_at, r.status, r.source,
       round(extract(epoch FROM coalesce(r.ended_at, now()) - r.started_at)::numeric, 1) AS duration_seconds,
       r.exit_code, r.detail, r.server,
       (SELECT s.captured_at FROM telemetry.snapshots s
        WHERE (r.server IS NULL OR s.server = r.server)
          AND s.captured_at <= telemetry._run_snapshot_start(r.started_at, r.ended_at, r.start_snapshot_at)
        ORDER BY s.captured_at DESC LIMIT 1) AS start_snapshot_at,
       (SELECT s.captured_at FROM telemetry.snapshots s
        WHERE (r.server IS NULL OR s.server = r.server) AND s.captured_at >= r.ended_at
        ORDER BY s.captured_at LIMIT 1) AS end_snapshot_at
FROM telemetry.batch_runs_checked r
WHERE (r.started_at > now() - interval '7 days' OR r.status = 'running') AND r.times_ok
ORDER BY r.started_at DESC, r.run_id DESC;

-- batch_runs_out_of_range: the stored runs whose times are out of range (batch_runs_checked),
-- which readers leave out and count.
CREATE OR REPLACE VIEW telemetry.batch_runs_out_of_range AS
SELECT r.run_id, r.batch, r.started_at, r.ended_at, r.status, r.source
FROM telemetry.batch_runs_checked r
WHERE NOT r.times_ok
ORDER BY r.run_id;
