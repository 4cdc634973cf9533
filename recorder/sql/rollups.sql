-- Rollups (migrations/0015_rollups.sql): kept as each sample is written, and read by the
-- window analysis functions for a window's whole minutes and hours; raw rows answer for the
-- partial minutes at its two ends (_rollup_span).
--
-- The window readers here, and the analysis functions in diagnosis/diagnosissql that planning
-- cost most, are PL/pgSQL (RETURN QUERY) and keep their plans for the session (the SQL ones
-- there read little, or once a call): a SQL function's query is planned at each call (before
-- PostgreSQL 18), over every day partition of every table it reads (25 ms and more for
-- _statements_at over 31 days, against 5 ms to run it). Planned with a call's values, PL/pgSQL
-- prunes the partitions of the tables it scans by them, but not of those joined to their rows
-- (a sample's rows, a snapshot's): every day's partition of these is planned at each call, and
-- the plan is never kept, as a generic plan costs more in the planner's eyes (it counts every
-- partition). So they SET plan_cache_mode = force_generic_plan: planned once in a session, their
-- partitions pruned as they run (_raw_samples: 4.5 ms a call planned each time, 0.5 ms with its
-- plan kept; the analysis functions over 30 days planned 200 ms in all, 80 now, most of it once).
-- Of these, only _window_statement_waits plans with its values at each call: its ranges pick
-- their index.

-- The raw rows that rollups sum, of a server's samples captured between p_start_time and
-- p_end_time (inclusive), only sample p_id's where given: written once, for the rollups'
-- writer (_rollup_add) and the windows' raw edges (_rollup_edges) alike. wait_samples and
-- wait_time_samples have no index by time: they are read from the samples ((server,
-- captured_at) index), each sample's rows by their primary key (a lateral subquery the planner
-- keeps: OFFSET 0; joined, it hashed a whole day's partition for an edge of a minute). Every
-- row has its sample: a foreign key per day, ON DELETE CASCADE. statement_wait_samples has
-- no primary key (0012): it has an index by (server, captured_at) (0019).

-- _raw_samples: each sample, with the most client sessions (not idle) one of its rows showed
-- waiting on a heavyweight lock (NULL: none waited).
CREATE OR REPLACE FUNCTION telemetry._raw_samples(p_server text, p_start_time timestamptz, p_end_time timestamptz,
                                                  p_id integer)
RETURNS TABLE (captured_at timestamptz, lock_waiters integer)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT s.captured_at,
           (SELECT max(w.count) FROM telemetry.wait_samples w
            WHERE w.sample_id = s.id AND w.captured_at = s.captured_at AND w.server = p_server
              AND w.backend_type = 'client backend' AND w.state NOT LIKE 'idle%' AND w.wait_event_type = 'Lock')
    FROM telemetry.samples s
    WHERE s.server = p_server AND s.captured_at BETWEEN p_start_time AND p_end_time AND (p_id IS NULL OR s.id = p_id);
END
$$;

-- _raw_blocked: each sample's sessions blocked on a heavyweight lock (lock_samples' distinct
-- blocked pids), where it had any; read index-only (0020).
CREATE OR REPLACE FUNCTION telemetry._raw_blocked(p_server text, p_start_time timestamptz, p_end_time timestamptz,
                                                  p_id integer)
RETURNS TABLE (captured_at timestamptz, blocked integer)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT l.captured_at, count(DISTINCT l.blocked_pid)::integer
    FROM telemetry.lock_samples l
    WHERE l.server = p_server AND l.captured_at BETWEEN p_start_time AND p_end_time AND (p_id IS NULL OR l.sample_id = p_id)
    GROUP BY l.sample_id, l.captured_at;
END
$$;

-- _raw_wait_groups: each sample's sessions (not idle) by backend type and wait, its states
-- together: the sessions, and the most one row showed.
CREATE OR REPLACE FUNCTION telemetry._raw_wait_groups(p_server text, p_start_time timestamptz, p_end_time timestamptz,
                                                      p_id integer)
RETURNS TABLE (captured_at timestamptz, backend_type text, wait_event_type text, wait_event text, waiters bigint, max_waiters integer)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT w.captured_at, w.backend_type, w.wait_event_type, w.wait_event, sum(w.count), max(w.count)
    FROM telemetry.samples s
    CROSS JOIN LATERAL (SELECT w.* FROM telemetry.wait_samples w
                        WHERE w.sample_id = s.id AND w.captured_at = s.captured_at AND w.server = p_server
                          AND w.state NOT LIKE 'idle%' OFFSET 0) w
    WHERE s.server = p_server AND s.captured_at BETWEEN p_start_time AND p_end_time AND (p_id IS NULL OR s.id = p_id)
    GROUP BY w.sample_id, w.captured_at, w.backend_type, w.wait_event_type, w.wait_event;
END
$$;

-- _raw_wait_times: the wait sampler's session-seconds.
CREATE OR REPLACE FUNCTION telemetry._raw_wait_times(p_server text, p_start_time timestamptz, p_end_time timestamptz,
                                                     p_id integer)
RETURNS TABLE (captured_at timestamptz, wait_event_type text, wait_event text, seconds numeric)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT t.captured_at, t.wait_event_type, t.wait_event, t.seconds::numeric
    FROM telemetry.samples s
    CROSS JOIN LATERAL (SELECT t.* FROM telemetry.wait_time_samples t
                        WHERE t.sample_id = s.id AND t.captured_at = s.captured_at AND t.server = p_server OFFSET 0) t
    WHERE s.server = p_server AND s.captured_at BETWEEN p_start_time AND p_end_time AND (p_id IS NULL OR s.id = p_id);
END
$$;

-- _raw_statement_waits: the wait sampler's session-seconds by statement (numeric: sums are
-- exact, in any order).
CREATE OR REPLACE FUNCTION telemetry._raw_statement_waits(p_server text, p_start_time timestamptz, p_end_time timestamptz,
                                                          p_id integer)
RETURNS TABLE (captured_at timestamptz, batch text, queryid bigint, wait_event_type text, wait_event text,
               before_query_id boolean, query_text text, seconds numeric)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT x.captured_at, x.batch, x.queryid, x.wait_event_type, x.wait_event, x.before_query_id, x.query_text, x.seconds::numeric
    FROM telemetry.statement_wait_samples x
    WHERE x.server = p_server AND x.captured_at BETWEEN p_start_time AND p_end_time AND (p_id IS NULL OR x.sample_id = p_id);
END
$$;

-- _raw_vacuums: each sample's picture of the vacuums it saw (0025): its distinct [relid,
-- relname, phase] rows, a jsonb array in jsonb's order; read index-only (0020).
CREATE OR REPLACE FUNCTION telemetry._raw_vacuums(p_server text, p_start_time timestamptz, p_end_time timestamptz,
                                                  p_id integer)
RETURNS TABLE (captured_at timestamptz, vacuums jsonb)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT p.captured_at, jsonb_agg(DISTINCT jsonb_build_array(p.relid, p.relname, p.phase))
    FROM telemetry.progress_samples p
    WHERE p.server = p_server AND p.captured_at BETWEEN p_start_time AND p_end_time AND p.progress_type = 'vacuum'
      AND (p_id IS NULL OR p.sample_id = p_id)
    GROUP BY p.sample_id, p.captured_at;
END
$$;

-- _rollup_replication adds a server's replication rows captured in [p_from, p_to) to the hour
-- rollups (0028): maxima stay maxima, so rows added again, or one snapshot after others of its
-- hour, leave them as one pass would.
CREATE OR REPLACE FUNCTION telemetry._rollup_replication(p_server text, p_from timestamptz, p_to timestamptz)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO telemetry.replication_rollups AS x (server, captured_at, standby_hash, application_name, client_addr,
                                                    max_lag_bytes, max_replay_lag)
    SELECT p_server, date_bin('1 hour', r.captured_at, timestamptz '1970-01-01 00:00:00+00'),
           hashtextextended(jsonb_build_array(r.application_name, r.client_addr)::text, 0), r.application_name, r.client_addr,
           max(pg_wal_lsn_diff(r.sent_lsn, r.replay_lsn)), max(r.replay_lag)
    FROM telemetry.replication_snapshots r
    WHERE r.server = p_server AND r.captured_at >= p_from AND r.captured_at < p_to
    GROUP BY 2, 3, 4, 5
    ON CONFLICT (server, captured_at, standby_hash) DO UPDATE
    SET max_lag_bytes = greatest(x.max_lag_bytes, excluded.max_lag_bytes),
        max_replay_lag = greatest(x.max_replay_lag, excluded.max_replay_lag)
$$;
REVOKE EXECUTE ON FUNCTION telemetry._rollup_replication(text, timestamptz, timestamptz) FROM PUBLIC;

-- _rollup_replication_rows adds what a statement wrote to telemetry.replication_snapshots to
-- the rollups, whoever wrote it (the Go recorder of any version, pg_cron mode's snapshot(), a
-- load by hand): a trigger, in the writer's transaction. The stretch each server's rows span is
-- added again whole (a snapshot's: its own rows).
CREATE OR REPLACE FUNCTION telemetry._rollup_replication_rows()
RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM telemetry._rollup_replication(w.server, w.first, w.last + interval '1 microsecond')
    FROM (SELECT r.server, min(r.captured_at) AS first, max(r.captured_at) AS last FROM written r GROUP BY r.server) w;
    RETURN NULL;
END
$$;
REVOKE EXECUTE ON FUNCTION telemetry._rollup_replication_rows() FROM PUBLIC;
CREATE OR REPLACE TRIGGER replication_rollups AFTER INSERT ON telemetry.replication_snapshots
    REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION telemetry._rollup_replication_rows();

-- _rollup_add adds the raw rows of a server's samples captured in [p_from, p_to) (only sample
-- p_id's, where given) to the minute and hour rollups. Sums add up and maxima stay maxima, so a
-- sample added on its own, after others of its bucket, leaves the rollups as one pass would.
CREATE OR REPLACE FUNCTION telemetry._rollup_add(p_server text, p_from timestamptz, p_to timestamptz, p_id integer)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_last timestamptz := p_to - interval '1 microsecond';
BEGIN
    INSERT INTO telemetry.sample_rollups AS r (server, bucket, captured_at, samples, lock_samples, lock_max_waiters)
    SELECT p_server, b.width, date_bin(b.width, s.captured_at, timestamptz '1970-01-01 00:00:00+00'),
           count(*), count(s.lock_waiters), max(s.lock_waiters)
    FROM telemetry._raw_samples(p_server, p_from, v_last, p_id) s,
         (VALUES (interval '1 minute'), (interval '1 hour')) b (width)
    GROUP BY 2, 3
    ON CONFLICT (server, bucket, captured_at) DO UPDATE
    SET samples = r.samples + excluded.samples, lock_samples = r.lock_samples + excluded.lock_samples,
        lock_max_waiters = greatest(r.lock_max_waiters, excluded.lock_max_waiters);
    -- and the most sessions blocked at once (0026), in the buckets just written: those from
    -- p_from's hour on (bounded, so that only their days' partitions are read: joined alone,
    -- every day's rollups were hashed for a sample that saw a session blocked).
    UPDATE telemetry.sample_rollups r SET lock_max_blocked = greatest(r.lock_max_blocked, b.blocked)
    FROM (SELECT w.width, date_bin(w.width, l.captured_at, timestamptz '1970-01-01 00:00:00+00') AS at, max(l.blocked) AS blocked
          FROM telemetry._raw_blocked(p_server, p_from, v_last, p_id) l,
               (VALUES (interval '1 minute'), (interval '1 hour')) w (width)
          GROUP BY 1, 2) b
    WHERE r.server = p_server AND r.bucket = b.width AND r.captured_at = b.at
      AND r.captured_at BETWEEN date_bin('1 hour', p_from, timestamptz '1970-01-01 00:00:00+00') AND v_last;

    INSERT INTO telemetry.wait_rollups AS r (server, bucket, captured_at, backend_type, wait_event_type, wait_event,
                                             samples, waiters, max_waiters)
    SELECT p_server, b.width, date_bin(b.width, g.captured_at, timestamptz '1970-01-01 00:00:00+00'),
           g.backend_type, g.wait_event_type, g.wait_event, count(*), sum(g.waiters), max(g.max_waiters)
    FROM telemetry._raw_wait_groups(p_server, p_from, v_last, p_id) g,
         (VALUES (interval '1 minute'), (interval '1 hour')) b (width)
    GROUP BY 2, 3, 4, 5, 6
    ON CONFLICT (server, bucket, captured_at, backend_type, wait_event_type, wait_event) DO UPDATE
    SET samples = r.samples + excluded.samples, waiters = r.waiters + excluded.waiters,
        max_waiters = greatest(r.max_waiters, excluded.max_waiters);

    INSERT INTO telemetry.wait_time_rollups AS r (server, bucket, captured_at, wait_event_type, wait_event, seconds)
    SELECT p_server, b.width, date_bin(b.width, t.captured_at, timestamptz '1970-01-01 00:00:00+00'),
           t.wait_event_type, t.wait_event, sum(t.seconds)
    FROM telemetry._raw_wait_times(p_server, p_from, v_last, p_id) t,
         (VALUES (interval '1 minute'), (interval '1 hour')) b (width)
    GROUP BY 2, 3, 4, 5
    ON CONFLICT (server, bucket, captured_at, wait_event_type, wait_event) DO UPDATE
    SET seconds = r.seconds + excluded.seconds;

    -- Statement rollups by hour, and by day (statement_compare's windows of days and months):
    -- day rows sample by sample here; a rebuild (p_id NULL) derives them from its hours
    -- (_rollup_days), as it rebuilds hours of days it may not hold whole.
    INSERT INTO telemetry.statement_wait_rollups AS r (server, bucket, captured_at, batch, queryid, wait_event_type, wait_event,
                                                       before_query_id, query_text_hash, query_text, seconds)
    SELECT p_server, b.width, date_bin(b.width, x.captured_at, timestamptz '1970-01-01 00:00:00+00'),
           x.batch, x.queryid, x.wait_event_type, x.wait_event, x.before_query_id, hashtextextended(x.query_text, 0),
           min(x.query_text), sum(x.seconds)
    FROM telemetry._raw_statement_waits(p_server, p_from, v_last, p_id) x,
         (VALUES (interval '1 hour'), (interval '1 day')) b (width)
    WHERE b.width = interval '1 hour' OR p_id IS NOT NULL
    GROUP BY 2, 3, 4, 5, 6, 7, 8, 9
    ON CONFLICT (server, bucket, captured_at, batch, queryid, wait_event_type, wait_event, before_query_id, query_text_hash) DO UPDATE
    SET seconds = r.seconds + excluded.seconds;

    -- Vacuum pictures by hour and by day, as statements.
    INSERT INTO telemetry.vacuum_rollups AS r (server, bucket, captured_at, vacuums_hash, vacuums, samples)
    SELECT p_server, b.width, date_bin(b.width, v.captured_at, timestamptz '1970-01-01 00:00:00+00'),
           hashtextextended(v.vacuums::text, 0), v.vacuums, count(*)
    FROM telemetry._raw_vacuums(p_server, p_from, v_last, p_id) v,
         (VALUES (interval '1 hour'), (interval '1 day')) b (width)
    WHERE b.width = interval '1 hour' OR p_id IS NOT NULL
    GROUP BY 2, 3, 4, 5
    ON CONFLICT (server, bucket, captured_at, vacuums_hash) DO UPDATE
    SET samples = r.samples + excluded.samples;

    -- Standbys' lag comes with snapshots, added as they are written (_rollup_replication_rows):
    -- here in a rebuild only.
    IF p_id IS NULL THEN
        PERFORM telemetry._rollup_replication(p_server, p_from, p_to);
    END IF;
END
$$;
REVOKE EXECUTE ON FUNCTION telemetry._rollup_add(text, timestamptz, timestamptz, integer) FROM PUBLIC;

-- _statement_wait_totals_add writes a server's statement totals (0024) at p_day, a day's
-- start: its latest totals before it and the day rollups since, or every day rollup before it
-- where it has none.
CREATE OR REPLACE FUNCTION telemetry._statement_wait_totals_add(p_server text, p_day timestamptz)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO telemetry.statement_wait_totals (server, captured_at, batch, queryid, wait_event_type, wait_event,
                                                 before_query_id, query_text_hash, query_text, seconds, days)
    SELECT p_server, p_day, x.batch, x.queryid, x.wait_event_type, x.wait_event, x.before_query_id, x.query_text_hash,
           min(x.query_text), sum(x.seconds), sum(x.days)
    FROM (SELECT t.batch, t.queryid, t.wait_event_type, t.wait_event, t.before_query_id, t.query_text_hash, t.query_text,
                 t.seconds, t.days
          FROM telemetry.statement_wait_totals t
          WHERE t.server = p_server
            AND t.captured_at = (SELECT max(l.captured_at) FROM telemetry.statement_wait_totals l
                                 WHERE l.server = p_server AND l.captured_at < p_day)
          UNION ALL
          SELECT r.batch, r.queryid, r.wait_event_type, r.wait_event, r.before_query_id, r.query_text_hash, r.query_text,
                 r.seconds, 1
          FROM telemetry.statement_wait_rollups r
          WHERE r.server = p_server AND r.bucket = interval '1 day' AND r.captured_at < p_day
            AND r.captured_at >= coalesce((SELECT max(l.captured_at) FROM telemetry.statement_wait_totals l
                                           WHERE l.server = p_server AND l.captured_at < p_day), '-infinity')) x
    GROUP BY 3, 4, 5, 6, 7, 8
    ON CONFLICT DO NOTHING
$$;
REVOKE EXECUTE ON FUNCTION telemetry._statement_wait_totals_add(text, timestamptz) FROM PUBLIC;

-- _rollup_sample adds a sample just written (its rows are all in: the recorder and sample()
-- call it last in the sample's transaction) to the rollups; a server's first sample marks its
-- rollups complete from that hour on.
CREATE OR REPLACE FUNCTION telemetry._rollup_sample(p_server text, p_id integer, p_at timestamptz)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_day timestamptz := date_bin('1 day', p_at, timestamptz '1970-01-01 00:00:00+00');
    v_last timestamptz;
BEGIN
    -- One writer of a server's rollups at a time: a day's totals read the day before complete.
    PERFORM pg_advisory_xact_lock(hashtext('telemetry._rollup_sample'), hashtext(p_server));
    PERFORM telemetry._rollup_add(p_server, p_at, p_at + interval '1 microsecond', p_id);
    INSERT INTO telemetry.rollup_coverage (server, since)
    VALUES (p_server, date_bin('1 hour', p_at, timestamptz '1970-01-01 00:00:00+00'))
    ON CONFLICT DO NOTHING;
    -- The statement totals: a day's with its first sample. A sample written after a later
    -- day's totals summed its day: totals up to its day no longer hold against later ones.
    v_last := (SELECT max(t.captured_at) FROM telemetry.statement_wait_totals t WHERE t.server = p_server);
    IF v_last > v_day THEN
        DELETE FROM telemetry.statement_wait_totals WHERE server = p_server AND captured_at <= v_day;
    ELSIF v_last < v_day OR (v_last IS NULL AND EXISTS (SELECT FROM telemetry.statement_wait_rollups r
                                                        WHERE r.server = p_server AND r.bucket = interval '1 day' AND r.captured_at < v_day)) THEN
        PERFORM telemetry._statement_wait_totals_add(p_server, v_day);
    END IF;
END
$$;
REVOKE EXECUTE ON FUNCTION telemetry._rollup_sample(text, integer, timestamptz) FROM PUBLIC;

-- _rollup_delete deletes the rollups of buckets in [p_from, p_to), of one server or all (NULL),
-- and the statement totals that summed them.
CREATE OR REPLACE FUNCTION telemetry._rollup_delete(p_server text, p_from timestamptz, p_to timestamptz)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    DELETE FROM telemetry.sample_rollups WHERE (p_server IS NULL OR server = p_server) AND captured_at >= p_from AND captured_at < p_to;
    DELETE FROM telemetry.wait_rollups WHERE (p_server IS NULL OR server = p_server) AND captured_at >= p_from AND captured_at < p_to;
    DELETE FROM telemetry.wait_time_rollups WHERE (p_server IS NULL OR server = p_server) AND captured_at >= p_from AND captured_at < p_to;
    DELETE FROM telemetry.statement_wait_rollups WHERE (p_server IS NULL OR server = p_server) AND captured_at >= p_from AND captured_at < p_to;
    DELETE FROM telemetry.vacuum_rollups WHERE (p_server IS NULL OR server = p_server) AND captured_at >= p_from AND captured_at < p_to;
    DELETE FROM telemetry.replication_rollups WHERE (p_server IS NULL OR server = p_server) AND captured_at >= p_from AND captured_at < p_to;
    -- A day changed here: the totals up to it no longer hold against later ones (readers fall
    -- back to the day rollups where a window's whole days begin before the totals kept).
    DELETE FROM telemetry.statement_wait_totals WHERE (p_server IS NULL OR server = p_server)
        AND captured_at <= date_bin('1 day', p_to - interval '1 microsecond', timestamptz '1970-01-01 00:00:00+00');
$$;
REVOKE EXECUTE ON FUNCTION telemetry._rollup_delete(text, timestamptz, timestamptz) FROM PUBLIC;

-- _rollup_days derives a server's day rollups of statements and vacuums (the days holding
-- p_from to p_to) from their hour rollups: the hours of those days outside [p_from, p_to) are as they were.
CREATE OR REPLACE FUNCTION telemetry._rollup_days(p_server text, p_from timestamptz, p_to timestamptz)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    DELETE FROM telemetry.statement_wait_rollups
    WHERE server = p_server AND bucket = interval '1 day'
      AND captured_at >= date_bin('1 day', p_from, timestamptz '1970-01-01 00:00:00+00')
      AND captured_at < date_bin('1 day', p_to - interval '1 microsecond', timestamptz '1970-01-01 00:00:00+00') + interval '24 hours';
    INSERT INTO telemetry.statement_wait_rollups (server, bucket, captured_at, batch, queryid, wait_event_type, wait_event,
                                                  before_query_id, query_text_hash, query_text, seconds)
    SELECT p_server, interval '1 day', date_bin('1 day', r.captured_at, timestamptz '1970-01-01 00:00:00+00'),
           r.batch, r.queryid, r.wait_event_type, r.wait_event, r.before_query_id, r.query_text_hash, min(r.query_text), sum(r.seconds)
    FROM telemetry.statement_wait_rollups r
    WHERE r.server = p_server AND r.bucket = interval '1 hour'
      AND r.captured_at >= date_bin('1 day', p_from, timestamptz '1970-01-01 00:00:00+00')
      AND r.captured_at < date_bin('1 day', p_to - interval '1 microsecond', timestamptz '1970-01-01 00:00:00+00') + interval '24 hours'
    GROUP BY 3, 4, 5, 6, 7, 8, 9;
    DELETE FROM telemetry.vacuum_rollups
    WHERE server = p_server AND bucket = interval '1 day'
      AND captured_at >= date_bin('1 day', p_from, timestamptz '1970-01-01 00:00:00+00')
      AND captured_at < date_bin('1 day', p_to - interval '1 microsecond', timestamptz '1970-01-01 00:00:00+00') + interval '24 hours';
    INSERT INTO telemetry.vacuum_rollups (server, bucket, captured_at, vacuums_hash, vacuums, samples)
    SELECT p_server, interval '1 day', date_bin('1 day', r.captured_at, timestamptz '1970-01-01 00:00:00+00'), r.vacuums_hash, r.vacuums,
           sum(r.samples)
    FROM telemetry.vacuum_rollups r
    WHERE r.server = p_server AND r.bucket = interval '1 hour'
      AND r.captured_at >= date_bin('1 day', p_from, timestamptz '1970-01-01 00:00:00+00')
      AND r.captured_at < date_bin('1 day', p_to - interval '1 microsecond', timestamptz '1970-01-01 00:00:00+00') + interval '24 hours'
    GROUP BY 3, 4, 5;
$$;
REVOKE EXECUTE ON FUNCTION telemetry._rollup_days(text, timestamptz, timestamptz) FROM PUBLIC;

-- _rollup_rebuild recomputes a server's rollups of the hours from p_from's to p_to's from the
-- raw rows: for days recorded before rollups existed (the analysis reads them raw until then),
-- and for the hour that retention cut in two. Rollups are complete from p_from's hour on where
-- they were from p_to on (or where the server has no sample after p_to). The statement totals
-- up to its last day go (_rollup_delete).
CREATE OR REPLACE FUNCTION telemetry._rollup_rebuild(p_server text, p_from timestamptz, p_to timestamptz)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_from timestamptz := date_bin('1 hour', telemetry._check_time(p_from, 'the rebuild''s start'), timestamptz '1970-01-01 00:00:00+00');
    v_to timestamptz := date_bin('1 hour', telemetry._check_time(p_to, 'the rebuild''s end'), timestamptz '1970-01-01 00:00:00+00') + interval '1 hour';
BEGIN
    PERFORM telemetry._rollup_delete(p_server, v_from, v_to);
    PERFORM telemetry._rollup_add(p_server, v_from, v_to, NULL);
    PERFORM telemetry._rollup_days(p_server, v_from, v_to);
    IF EXISTS (SELECT FROM telemetry.rollup_coverage c WHERE c.server = p_server) THEN
        UPDATE telemetry.rollup_coverage SET since = v_from WHERE server = p_server AND since <= v_to AND since > v_from;
    ELSIF NOT EXISTS (SELECT FROM telemetry.samples s WHERE s.server = p_server AND s.captured_at >= v_to) THEN
        -- A server whose samples were never added one by one: complete where rebuilt, to its last.
        INSERT INTO telemetry.rollup_coverage (server, since) VALUES (p_server, v_from) ON CONFLICT DO NOTHING;
    END IF;
END
$$;
REVOKE EXECUTE ON FUNCTION telemetry._rollup_rebuild(text, timestamptz, timestamptz) FROM PUBLIC;

-- rollup_rebuild is _rollup_rebuild with the server's statement totals written again, each day
-- recorded from the one after its first day rollup to its last sample's: a day's totals sum
-- every day before it, and later totals summed the days rebuilt as they were. It waits for the
-- server's samples being written (_rollup_sample).
CREATE OR REPLACE FUNCTION telemetry.rollup_rebuild(p_server text, p_from timestamptz, p_to timestamptz)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_day timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('telemetry._rollup_sample'), hashtext(p_server));
    PERFORM telemetry._rollup_rebuild(p_server, p_from, p_to);
    DELETE FROM telemetry.statement_wait_totals WHERE server = p_server;
    FOR v_day IN
        SELECT d FROM generate_series(
            (SELECT min(r.captured_at) FROM telemetry.statement_wait_rollups r WHERE r.server = p_server AND r.bucket = interval '1 day') + interval '24 hours',
            (SELECT date_bin('1 day', max(s.captured_at), timestamptz '1970-01-01 00:00:00+00') FROM telemetry.samples s WHERE s.server = p_server),
            interval '24 hours') d
        -- a day nothing was recorded on has no partition, and no sample to read its totals
        WHERE to_regclass(format('telemetry.statement_wait_totals_d%s', to_char(d AT TIME ZONE 'UTC', 'YYYYMMDD'))) IS NOT NULL
    LOOP
        PERFORM telemetry._statement_wait_totals_add(p_server, v_day);
    END LOOP;
END
$$;
REVOKE EXECUTE ON FUNCTION telemetry.rollup_rebuild(text, timestamptz, timestamptz) FROM PUBLIC;

-- _rollup_cut keeps the rollups in step with raw rows deleted before p_cutoff (cleanup): the
-- rollups of the hours before its hour go, and its hour's are summed again from what is left
-- (the statement totals up to its day go with them, _rollup_delete); the stored results of
-- runs read from before it go too (settle_run).
CREATE OR REPLACE FUNCTION telemetry._rollup_cut(p_cutoff timestamptz)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_hour timestamptz := date_bin('1 hour', p_cutoff, timestamptz '1970-01-01 00:00:00+00');
BEGIN
    DELETE FROM telemetry.run_results WHERE data_from < p_cutoff;
    PERFORM telemetry._rollup_delete(NULL, '-infinity', v_hour);
    PERFORM telemetry._rollup_rebuild(c.server, v_hour, v_hour) FROM telemetry.rollup_coverage c WHERE c.since <= v_hour;
    -- Standbys' lag is rolled up for every server, its rollups complete or not: the cut hour's
    -- again from what is left, for all.
    DELETE FROM telemetry.replication_rollups WHERE captured_at = v_hour;
    PERFORM telemetry._rollup_replication(s.server, v_hour, v_hour + interval '1 hour') FROM telemetry.servers s;
    -- Statements no day since a server's oldest totals kept has summed (gone: a statement on a
    -- temporary table has a new queryid each run) count 0 in every difference of those totals:
    -- they leave them all, and start again from their next day rollup. The totals keep the
    -- statements of the days kept, not of every day ever recorded.
    DELETE FROM telemetry.statement_wait_totals t
    USING (SELECT a.server, a.batch, a.queryid, a.wait_event_type, a.wait_event, a.before_query_id, a.query_text_hash
           FROM telemetry.servers v
           CROSS JOIN LATERAL (SELECT min(x.captured_at) AS f, max(x.captured_at) AS l
                               FROM telemetry.statement_wait_totals x WHERE x.server = v.server) e
           JOIN telemetry.statement_wait_totals a ON a.server = v.server AND a.captured_at = e.f
           JOIN telemetry.statement_wait_totals b ON b.server = v.server AND b.captured_at = e.l
                AND b.batch = a.batch AND b.queryid = a.queryid AND b.wait_event_type = a.wait_event_type
                AND b.wait_event = a.wait_event AND b.before_query_id = a.before_query_id AND b.query_text_hash = a.query_text_hash
           WHERE b.days = a.days) d
    WHERE t.server = d.server AND t.batch = d.batch AND t.queryid = d.queryid AND t.wait_event_type = d.wait_event_type
      AND t.wait_event = d.wait_event AND t.before_query_id = d.before_query_id AND t.query_text_hash = d.query_text_hash;
END
$$;
REVOKE EXECUTE ON FUNCTION telemetry._rollup_cut(timestamptz) FROM PUBLIC;

-- _rollup_span is the part of a window read from the rollups, as pieces [piece_from, piece_to)
-- of one bucket width: its whole hours from the hour rollups, the minutes around them from the
-- minute ones; raw rows answer for the window outside them. It starts after the start's minute
-- (a window open at its start, as statement_compare's, leaves out a row at the start itself),
-- not before the server's rollups are complete, and with p_minutes false (statement rollups are
-- by hour and day) it is the whole hours alone, its whole UTC days from the day rollups. No
-- pieces: a short window, a server without rollups, or a session that SET telemetry.rollups =
-- off (the raw answer, which the tests compare with).
CREATE OR REPLACE FUNCTION telemetry._rollup_span(p_start_time timestamptz, p_end_time timestamptz, p_server text, p_minutes boolean)
RETURNS TABLE (bucket interval, piece_from timestamptz, piece_to timestamptz)
LANGUAGE plpgsql STABLE ROWS 3 SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH c AS (
        SELECT greatest(date_bin('1 minute', p_start_time, timestamptz '1970-01-01 00:00:00+00') + interval '1 minute', v.since) AS f,
               date_bin('1 minute', p_end_time, timestamptz '1970-01-01 00:00:00+00') AS t
        FROM telemetry.rollup_coverage v
        WHERE v.server = p_server AND current_setting('telemetry.rollups', true) IS DISTINCT FROM 'off'
          AND p_end_time < 'infinity' AND p_start_time > '-infinity'),
    h AS (SELECT c.f, c.t, date_bin('1 hour', c.f - interval '1 minute', timestamptz '1970-01-01 00:00:00+00') + interval '1 hour' AS hf,
                 date_bin('1 hour', c.t, timestamptz '1970-01-01 00:00:00+00') AS ht
          FROM c WHERE c.f < c.t),
    -- Whole days (statements only): from the first day's start at or after the hours' start.
    d AS (SELECT h.*, date_bin('1 day', h.hf - interval '1 hour', timestamptz '1970-01-01 00:00:00+00') + interval '24 hours' AS df,
                 date_bin('1 day', h.ht, timestamptz '1970-01-01 00:00:00+00') AS dt
          FROM h),
    x AS (SELECT d.*, NOT p_minutes AND d.df < d.dt AS days FROM d)
    SELECT p.* FROM x, LATERAL (VALUES (interval '1 hour', x.hf, CASE WHEN x.days THEN x.df ELSE x.ht END),
                                       (interval '1 day', x.df, CASE WHEN x.days THEN x.dt ELSE x.df END),
                                       (interval '1 hour', CASE WHEN x.days THEN x.dt ELSE x.ht END, x.ht),
                                       (interval '1 minute', x.f, least(x.hf, x.t)),
                                       (interval '1 minute', greatest(x.ht, x.hf, x.f), x.t)) p (bucket, piece_from, piece_to)
    WHERE p.piece_from < p.piece_to AND (p_minutes OR p.bucket <> interval '1 minute');
END
$$;

-- _rollup_edges are the parts of a window that _rollup_span leaves to raw rows: from its start
-- to the span, and from the span to its end (inclusive), or the whole window where there is no
-- span. Each is read as a range of its own: a window's edges are minutes, not its months.
CREATE OR REPLACE FUNCTION telemetry._rollup_edges(p_start_time timestamptz, p_end_time timestamptz, p_server text, p_minutes boolean)
RETURNS TABLE (edge_from timestamptz, edge_to timestamptz)
LANGUAGE sql STABLE ROWS 2 SET search_path = pg_catalog, pg_temp AS $$
    WITH cov AS (SELECT min(sp.piece_from) AS f, max(sp.piece_to) AS t
                 FROM telemetry._rollup_span(p_start_time, p_end_time, p_server, p_minutes) sp)
    SELECT p_start_time, coalesce(cov.f - interval '1 microsecond', p_end_time) FROM cov
    UNION ALL
    SELECT cov.t, p_end_time FROM cov WHERE cov.t IS NOT NULL
$$;

-- The window readers: a server's rows between p_start_time and p_end_time (inclusive) summed,
-- from the rollups over the window's _rollup_span and raw rows at its edges. Each piece of the
-- span is read by itself (a lateral subquery the planner keeps: OFFSET 0): joined to the span
-- as a whole, the planner hashed it and read every minute and hour row of every day. Hour
-- pieces and minute pieces apart, each with its bucket a constant: hour pieces are read
-- index-only from the hour rows' own index (0019), minute pieces through the primary key.

-- _window_sample_counts: the window's samples, those that saw a client session (not idle) wait
-- on a heavyweight lock, and the most sessions one row showed waiting on one.
CREATE OR REPLACE FUNCTION telemetry._window_sample_counts(p_start_time timestamptz, p_end_time timestamptz, p_server text)
RETURNS TABLE (samples bigint, lock_samples bigint, lock_max_waiters integer)
LANGUAGE plpgsql STABLE ROWS 1 SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH sp AS (SELECT * FROM telemetry._rollup_span(p_start_time, p_end_time, p_server, true))
    SELECT coalesce(sum(x.samples), 0)::bigint, coalesce(sum(x.lock_samples), 0)::bigint, max(x.lock_max_waiters)
    FROM (SELECT count(*) AS samples, count(r.lock_waiters) AS lock_samples, max(r.lock_waiters) AS lock_max_waiters
          FROM telemetry._rollup_edges(p_start_time, p_end_time, p_server, true) e, telemetry._raw_samples(p_server, e.edge_from, e.edge_to, NULL) r
          UNION ALL
          SELECT r.samples, r.lock_samples, r.lock_max_waiters
          FROM sp CROSS JOIN LATERAL (
              SELECT r.samples, r.lock_samples, r.lock_max_waiters FROM telemetry.sample_rollups r
              WHERE sp.bucket = interval '1 hour' AND r.server = p_server AND r.bucket = interval '1 hour'
                AND r.captured_at >= sp.piece_from AND r.captured_at < sp.piece_to OFFSET 0) r
          UNION ALL
          SELECT r.samples, r.lock_samples, r.lock_max_waiters
          FROM sp CROSS JOIN LATERAL (
              SELECT r.samples, r.lock_samples, r.lock_max_waiters FROM telemetry.sample_rollups r
              WHERE sp.bucket = interval '1 minute' AND r.server = p_server AND r.bucket = interval '1 minute'
                AND r.captured_at >= sp.piece_from AND r.captured_at < sp.piece_to OFFSET 0) r) x;
END
$$;

-- _window_wait_groups: the window's sessions (not idle) by backend type and wait: the samples
-- that saw them, the sessions seen, the most one row showed.
CREATE OR REPLACE FUNCTION telemetry._window_wait_groups(p_start_time timestamptz, p_end_time timestamptz, p_server text)
RETURNS TABLE (backend_type text, wait_event_type text, wait_event text, samples bigint, waiters bigint, max_waiters integer)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH sp AS (SELECT * FROM telemetry._rollup_span(p_start_time, p_end_time, p_server, true))
    SELECT x.backend_type, x.wait_event_type, x.wait_event, sum(x.samples)::bigint, sum(x.waiters)::bigint, max(x.max_waiters)
    FROM (SELECT g.backend_type, g.wait_event_type, g.wait_event, 1 AS samples, g.waiters, g.max_waiters
          FROM telemetry._rollup_edges(p_start_time, p_end_time, p_server, true) e, telemetry._raw_wait_groups(p_server, e.edge_from, e.edge_to, NULL) g
          UNION ALL
          SELECT r.backend_type, r.wait_event_type, r.wait_event, r.samples, r.waiters, r.max_waiters
          FROM sp CROSS JOIN LATERAL (
              SELECT r.backend_type, r.wait_event_type, r.wait_event, r.samples, r.waiters, r.max_waiters FROM telemetry.wait_rollups r
              WHERE sp.bucket = interval '1 hour' AND r.server = p_server AND r.bucket = interval '1 hour'
                AND r.captured_at >= sp.piece_from AND r.captured_at < sp.piece_to OFFSET 0) r
          UNION ALL
          SELECT r.backend_type, r.wait_event_type, r.wait_event, r.samples, r.waiters, r.max_waiters
          FROM sp CROSS JOIN LATERAL (
              SELECT r.backend_type, r.wait_event_type, r.wait_event, r.samples, r.waiters, r.max_waiters FROM telemetry.wait_rollups r
              WHERE sp.bucket = interval '1 minute' AND r.server = p_server AND r.bucket = interval '1 minute'
                AND r.captured_at >= sp.piece_from AND r.captured_at < sp.piece_to OFFSET 0) r) x
    GROUP BY 1, 2, 3;
END
$$;

-- _window_wait_times: the wait sampler's session-seconds in the window by wait.
CREATE OR REPLACE FUNCTION telemetry._window_wait_times(p_start_time timestamptz, p_end_time timestamptz, p_server text)
RETURNS TABLE (wait_event_type text, wait_event text, seconds numeric)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH sp AS (SELECT * FROM telemetry._rollup_span(p_start_time, p_end_time, p_server, true))
    SELECT x.wait_event_type, x.wait_event, sum(x.seconds)
    FROM (SELECT t.wait_event_type, t.wait_event, t.seconds
          FROM telemetry._rollup_edges(p_start_time, p_end_time, p_server, true) e, telemetry._raw_wait_times(p_server, e.edge_from, e.edge_to, NULL) t
          UNION ALL
          SELECT r.wait_event_type, r.wait_event, r.seconds
          FROM sp CROSS JOIN LATERAL (
              SELECT r.wait_event_type, r.wait_event, r.seconds FROM telemetry.wait_time_rollups r
              WHERE sp.bucket = interval '1 hour' AND r.server = p_server AND r.bucket = interval '1 hour'
                AND r.captured_at >= sp.piece_from AND r.captured_at < sp.piece_to OFFSET 0) r
          UNION ALL
          SELECT r.wait_event_type, r.wait_event, r.seconds
          FROM sp CROSS JOIN LATERAL (
              SELECT r.wait_event_type, r.wait_event, r.seconds FROM telemetry.wait_time_rollups r
              WHERE sp.bucket = interval '1 minute' AND r.server = p_server AND r.bucket = interval '1 minute'
                AND r.captured_at >= sp.piece_from AND r.captured_at < sp.piece_to OFFSET 0) r) x
    GROUP BY 1, 2;
END
$$;

-- _window_vacuums: the window's pictures of vacuums (0025), the samples that saw each, and
-- whether one of its tables is tracked (now): whole UTC days from the day rollups, whole hours
-- from the hour ones, raw rows at the edges.
CREATE OR REPLACE FUNCTION telemetry._window_vacuums(p_start_time timestamptz, p_end_time timestamptz, p_server text)
RETURNS TABLE (vacuums jsonb, samples bigint, tracked boolean)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT x.vacuums, sum(x.samples)::bigint,
           EXISTS (SELECT FROM jsonb_array_elements(x.vacuums) e WHERE (e->>0)::oid IN (SELECT t.relid FROM telemetry.tracked_tables t))
    FROM (SELECT v.vacuums, 1 AS samples
          FROM telemetry._rollup_edges(p_start_time, p_end_time, p_server, false) e,
               telemetry._raw_vacuums(p_server, e.edge_from, e.edge_to, NULL) v
          UNION ALL
          SELECT r.vacuums, r.samples
          FROM telemetry._rollup_span(p_start_time, p_end_time, p_server, false) sp
          CROSS JOIN LATERAL (SELECT r.vacuums, r.samples FROM telemetry.vacuum_rollups r
                              WHERE r.server = p_server AND r.bucket = sp.bucket
                                AND r.captured_at >= sp.piece_from AND r.captured_at < sp.piece_to OFFSET 0) r) x
    GROUP BY 1;
END
$$;

-- _window_replication: each standby's largest replay lag in the window, in bytes (sent minus
-- replayed) and in seconds: whole hours from the hour rollups (0028, its whole days too), raw
-- rows at the edges.
CREATE OR REPLACE FUNCTION telemetry._window_replication(p_start_time timestamptz, p_end_time timestamptz, p_server text)
RETURNS TABLE (application_name text, client_addr inet, lag_bytes numeric, lag_seconds numeric)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT x.application_name, x.client_addr, max(x.lag_bytes),
           extract(epoch FROM max(x.replay_lag))  -- the largest converted once, not each row
    FROM (SELECT r.application_name, r.client_addr, pg_wal_lsn_diff(r.sent_lsn, r.replay_lsn) AS lag_bytes, r.replay_lag
          FROM telemetry._rollup_edges(p_start_time, p_end_time, p_server, false) e
          JOIN telemetry.replication_snapshots r ON r.server = p_server AND r.captured_at BETWEEN e.edge_from AND e.edge_to
          UNION ALL
          SELECT r.application_name, r.client_addr, r.max_lag_bytes, r.max_replay_lag
          FROM telemetry._rollup_span(p_start_time, p_end_time, p_server, false) sp
          CROSS JOIN LATERAL (SELECT r.application_name, r.client_addr, r.max_lag_bytes, r.max_replay_lag FROM telemetry.replication_rollups r
                              WHERE r.server = p_server AND r.captured_at >= sp.piece_from AND r.captured_at < sp.piece_to OFFSET 0) r) x
    GROUP BY 1, 2;
END
$$;

DROP FUNCTION IF EXISTS telemetry._statement_wait_days(text, timestamptz, timestamptz, text);

-- _statement_wait_totals_at: the latest day start at or before p_at a server's statement
-- totals were written at (NULL: none). A function of its own, its plan kept (generic, pruned
-- as it runs): planned with the values, in _window_statement_waits, it planned every day's
-- partition up to p_at at each call (1.7 ms).
CREATE OR REPLACE FUNCTION telemetry._statement_wait_totals_at(p_server text, p_at timestamptz)
RETURNS timestamptz LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN (SELECT max(t.captured_at) FROM telemetry.statement_wait_totals t WHERE t.server = p_server AND t.captured_at <= p_at);
END
$$;

-- _window_statement_waits: the wait sampler's session-seconds by statement captured after
-- p_after, up to p_end_time (statement_compare's window: between two statement snapshots),
-- summed by statement and wait over every session (batch NULL), or one batch's own sessions'
-- only where p_batch is given (batch p_batch; read as such: a run's baseline runs each read
-- their batch's rows, not the window's all).
-- query_text is only where there is no queryid (0), the one place it names the statement:
-- summed here, a month is a row per statement and wait, not one per statement, wait and hour
-- for the caller to carry. A statement and wait is one of the window's where it has rows in it
-- (days: the whole days' totals subtract).
-- A first day the window holds more than half of (hours after its start) is read as a whole
-- day less its hours before the window (4 hours' rows, not 20, for a window from 03:23), where
-- the rollups cover that whole day and running totals at its start are kept. Its hours
-- subtracted may be a statement's only rows that day, so its rows are no longer counted there:
-- a statement is one of the window's where its seconds in it are above 0 (the sums are exact,
-- and the sampler books no row of 0 seconds).
-- The window's whole days are the running totals (0024) at the last day's start (or the latest
-- before it, with the day rollups since) less those at the first's (the same): two days' rows,
-- whatever the window's length; the day rollups themselves where there are no totals at or
-- before the first. Its pieces are found first and the rows read in one query planned with
-- them (plan_cache_mode): each range prunes to its days' partitions and takes the index its
-- batch or none wants, and nothing is materialized between helper functions (a month's 49,000
-- rows went through three: a third of the time).
DROP FUNCTION IF EXISTS telemetry._window_statement_waits(timestamptz, timestamptz, text);
CREATE OR REPLACE FUNCTION telemetry._window_statement_waits(p_after timestamptz, p_end_time timestamptz, p_server text, p_batch text)
RETURNS TABLE (batch text, queryid bigint, wait_event_type text, wait_event text, before_query_id boolean,
               query_text text, seconds numeric)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_custom_plan AS $$
#variable_conflict use_column
DECLARE
    v_from timestamptz := p_after + interval '1 microsecond';
    v_edge_from timestamptz[];  -- the raw edges, inclusive
    v_edge_to timestamptz[];
    v_hours_from timestamptz;   -- the hour rollups: [v_hours_from, v_hours_to) but the whole days
    v_hours_to timestamptz;
    v_days_from timestamptz;    -- the whole days: [v_days_from, v_days_to)
    v_days_to timestamptz;
    v_totals_from timestamptz;  -- the running totals subtracted (NULL: none) and added
    v_totals_to timestamptz;
    v_lead_from timestamptz;    -- the first day's hours before the window, subtracted: [v_lead_from, v_hours_from)
    v_lead_totals timestamptz;  -- the totals that would be subtracted then
BEGIN
    SELECT array_agg(e.edge_from ORDER BY e.edge_from), array_agg(e.edge_to ORDER BY e.edge_from)
    INTO v_edge_from, v_edge_to
    FROM telemetry._rollup_edges(v_from, p_end_time, p_server, false) e;
    SELECT min(sp.piece_from) FILTER (WHERE sp.bucket = interval '1 hour'), max(sp.piece_to) FILTER (WHERE sp.bucket = interval '1 hour'),
           min(sp.piece_from) FILTER (WHERE sp.bucket = interval '1 day'), max(sp.piece_to) FILTER (WHERE sp.bucket = interval '1 day')
    INTO v_hours_from, v_hours_to, v_days_from, v_days_to
    FROM telemetry._rollup_span(v_from, p_end_time, p_server, false) sp;
    IF v_days_from IS NOT NULL THEN
        v_totals_from := telemetry._statement_wait_totals_at(p_server, v_days_from);
        -- The first day whole, where the rollups cover it, unless that loses the totals (a
        -- cleanup that cut into it deleted those at its start: every day's rollups would be read).
        IF v_days_from - v_hours_from > interval '12 hours'
           AND (SELECT c.since FROM telemetry.rollup_coverage c WHERE c.server = p_server) <= v_days_from - interval '1 day' THEN
            v_lead_totals := telemetry._statement_wait_totals_at(p_server, v_days_from - interval '1 day');
            IF v_lead_totals IS NOT NULL OR v_totals_from IS NULL THEN
                v_lead_from := v_days_from - interval '1 day';
                v_days_from := v_lead_from;
                v_totals_from := v_lead_totals;
            END IF;
        END IF;
        IF v_totals_from IS NOT NULL THEN
            v_totals_to := telemetry._statement_wait_totals_at(p_server, v_days_to);
        END IF;
    END IF;
    RETURN QUERY
    SELECT p_batch, x.queryid, x.wait_event_type, x.wait_event, x.before_query_id,
           CASE WHEN x.queryid = 0 THEN x.query_text END, sum(x.seconds)
    FROM (SELECT x.queryid, x.wait_event_type, x.wait_event, x.before_query_id, x.query_text, x.seconds::numeric AS seconds, 1 AS days
          FROM telemetry.statement_wait_samples x
          WHERE x.server = p_server AND (x.captured_at BETWEEN v_edge_from[1] AND v_edge_to[1] OR x.captured_at BETWEEN v_edge_from[2] AND v_edge_to[2])
            AND (p_batch IS NULL OR x.batch = p_batch)
          UNION ALL  -- the hours before the whole days (but where the first day is whole) and after them
          SELECT r.queryid, r.wait_event_type, r.wait_event, r.before_query_id, r.query_text, r.seconds, 1
          FROM telemetry.statement_wait_rollups r
          WHERE r.server = p_server AND r.bucket = interval '1 hour' AND (p_batch IS NULL OR r.batch = p_batch)
            AND (r.captured_at >= v_hours_from AND r.captured_at < coalesce(v_days_from, v_hours_to) AND v_lead_from IS NULL
                 OR r.captured_at >= v_days_to AND r.captured_at < v_hours_to)
          UNION ALL  -- the first day's hours before the window, where it is whole
          SELECT r.queryid, r.wait_event_type, r.wait_event, r.before_query_id, r.query_text, -r.seconds, -1
          FROM telemetry.statement_wait_rollups r
          WHERE r.server = p_server AND r.bucket = interval '1 hour' AND (p_batch IS NULL OR r.batch = p_batch)
            AND r.captured_at >= v_lead_from AND r.captured_at < v_hours_from
          UNION ALL  -- the whole days: the totals at their end less those at their start
          SELECT t.queryid, t.wait_event_type, t.wait_event, t.before_query_id, t.query_text, t.seconds, t.days
          FROM telemetry.statement_wait_totals t
          WHERE t.server = p_server AND t.captured_at = v_totals_to AND (p_batch IS NULL OR t.batch = p_batch)
          UNION ALL
          SELECT t.queryid, t.wait_event_type, t.wait_event, t.before_query_id, t.query_text, -t.seconds, -t.days
          FROM telemetry.statement_wait_totals t
          WHERE t.server = p_server AND t.captured_at = v_totals_from AND (p_batch IS NULL OR t.batch = p_batch)
          UNION ALL  -- and the day rollups after either (all of the days' where there are no totals)
          SELECT r.queryid, r.wait_event_type, r.wait_event, r.before_query_id, r.query_text, r.seconds, 1
          FROM telemetry.statement_wait_rollups r
          WHERE r.server = p_server AND r.bucket = interval '1 day' AND (p_batch IS NULL OR r.batch = p_batch)
            AND r.captured_at >= coalesce(v_totals_to, v_days_from) AND r.captured_at < v_days_to
          UNION ALL
          SELECT r.queryid, r.wait_event_type, r.wait_event, r.before_query_id, r.query_text, -r.seconds, -1
          FROM telemetry.statement_wait_rollups r
          WHERE r.server = p_server AND r.bucket = interval '1 day' AND (p_batch IS NULL OR r.batch = p_batch)
            AND r.captured_at >= v_totals_from AND r.captured_at < v_days_from) x
    GROUP BY 2, 3, 4, 5, 6
    HAVING CASE WHEN v_lead_from IS NULL THEN sum(x.days) > 0 ELSE sum(x.seconds) > 0 END;
END
$$;
