-- pg_cron mode: snapshot() and sample() collect in SQL what the Go recorder writes from the
-- exporter's collections, through the same statements (the _collect_* functions of
-- sql/collect.sql), and map them to rows the same way: the tables declared in
-- collectors/recorded.go through _record_snapshots and _record_samples (sql/collect.sql,
-- generated from the declarations), the parent rows as recorder/rows.go does. Each starts from
-- fresh statistics and its own timestamp, even when called twice in one transaction.

-- _normalized_query is a query's text with each constant replaced by $n, as pg_stat_statements
-- shows a statement: what both recorders store of a session's query (the Go recorder keeps it
-- literal only with --recorder.literal-query-text), since the readers of the telemetry schema
-- may not read other roles' queries (docs/security.md). Done on the text, not by query_id: a
-- query waiting on a lock while parsing has none yet, and pg_stat_statements may be absent. A
-- constant cut off by a preview's length is replaced to the end; comments and identifiers stay,
-- as pg_stat_statements keeps them. A \' in a string that is not E'' ends it or not
-- (standard_conforming_strings): the string is then replaced to the end.
CREATE OR REPLACE FUNCTION telemetry._normalized_query(p_query text)
RETURNS text LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    c text[] := regexp_split_to_array(p_query, '');
    n integer := cardinality(c);
    i integer := 1;
    j integer;            -- where the token at i starts
    depth integer;
    tag text;
    close integer;        -- where a dollar quote's closing tag starts, after its opening one
    kept integer := 1;    -- c[kept:j-1] is copied as it is
    params integer;       -- numbered after the query's own parameters, as pg_stat_statements does
    out text := '';
    piece text;
    starts integer[] := '{}';
BEGIN
    -- Most texts (pg_stat_statements' among them) have no quote, no dollar quote and no digit
    -- starting a token: nothing to replace, and no need to walk them character by character.
    IF p_query !~ '[''"]|\$([[:alpha:]_][[:alnum:]_]*)?\$|(^|[^[:alnum:]_$])\.?[0-9]' THEN
        RETURN p_query;
    END IF;
    SELECT coalesce(max(m[2]::integer), 0) INTO params
    FROM regexp_matches(p_query, '(^|[^[:alnum:]_$])\$([0-9]{1,9})(?![0-9])', 'g') m;
    -- Where a token may start that is not an identifier's, keyword's or operator's, in one pass
    -- in C: walking every character in PL/pgSQL took 1.5 to 2 times as long (200 characters).
    j := 1;
    FOREACH piece IN ARRAY regexp_split_to_array(p_query, '(?=--|/\*|["''$.0-9]|[EeBbXxNn]''|[Uu]&'')') LOOP
        starts := starts || j;
        j := j + length(piece);
    END LOOP;
    FOREACH j IN ARRAY starts LOOP
        CONTINUE WHEN j < i;  -- within the previous token
        i := j;
        -- A digit, dot, $ or letter within an identifier ("t1", "a$b", "AREA'...'"?): not a token.
        CONTINUE WHEN i > 1 AND c[i] !~ '[-/"'']' AND (c[i - 1] ~ '[[:alnum:]_$]' OR ascii(c[i - 1]) > 127);
        IF c[i] = '-' AND c[i + 1] = '-' THEN                       -- a comment to the line's end
            i := coalesce(array_position(c, E'\n', i), n) + 1;
            CONTINUE;
        ELSIF c[i] = '/' AND c[i + 1] = '*' THEN                    -- a comment, nested
            depth := 1;
            i := i + 2;
            WHILE i <= n AND depth > 0 LOOP
                IF c[i] = '/' AND c[i + 1] = '*' THEN depth := depth + 1; i := i + 1;
                ELSIF c[i] = '*' AND c[i + 1] = '/' THEN depth := depth - 1; i := i + 1;
                END IF;
                i := i + 1;
            END LOOP;
            CONTINUE;
        ELSIF c[i] = '"' THEN                                       -- a quoted identifier
            i := i + 1;
            WHILE i <= n AND NOT (c[i] = '"' AND coalesce(c[i + 1], '') <> '"') LOOP
                i := i + CASE WHEN c[i] = '"' THEN 2 ELSE 1 END;
            END LOOP;
            i := i + 1;
            CONTINUE;
        ELSIF upper(c[i]) IN ('E', 'B', 'X', 'N') AND c[i + 1] = '''' THEN  -- E'', B'', X'', N''
            i := telemetry._string_end(c, i + 1, upper(c[i]) = 'E');
        ELSIF upper(c[i]) = 'U' AND c[i + 1] = '&' AND c[i + 2] = '''' THEN  -- U&''
            i := telemetry._string_end(c, i + 2, false);
        ELSIF c[i] ~ '[[:alpha:]_]' OR ascii(c[i]) > 127 THEN       -- an identifier or keyword
            WHILE i < n AND (c[i + 1] ~ '[[:alnum:]_$]' OR ascii(c[i + 1]) > 127) LOOP
                i := i + 1;
            END LOOP;
            i := i + 1;
            CONTINUE;
        ELSIF c[i] = '''' THEN                                      -- a string
            i := telemetry._string_end(c, i, false);
        ELSIF c[i] = '$' AND c[i + 1] ~ '[0-9]' THEN                -- a parameter
            i := i + 1;
            WHILE i <= n AND c[i] ~ '[0-9]' LOOP i := i + 1; END LOOP;
            CONTINUE;
        ELSIF c[i] = '$' THEN                                       -- a dollar-quoted string, or a lone $
            i := i + 1;
            WHILE i <= n AND (c[i] ~ '[[:alnum:]_]' OR ascii(c[i]) > 127) LOOP
                i := i + 1;
            END LOOP;
            IF c[i] IS DISTINCT FROM '$' THEN
                i := j + 1;
                CONTINUE;
            END IF;
            tag := array_to_string(c[j:i], '');
            -- Its closing tag in one search (to the end where there is none): a slice compared
            -- at each character was quadratic, 2 s for a function's 9000 characters.
            close := strpos(substr(p_query, i + 1), tag);
            i := CASE WHEN close = 0 THEN n ELSE i + close + length(tag) - 1 END;
        ELSIF c[i] ~ '[0-9]' OR c[i] = '.' AND c[i + 1] ~ '[0-9]' THEN  -- a number
            WHILE i < n AND (c[i + 1] ~ '[[:alnum:]_.]'
                             OR c[i + 1] IN ('+', '-') AND upper(c[i]) = 'E' AND upper(coalesce(c[j + 1], '')) <> 'X') LOOP
                i := i + 1;
            END LOOP;
        ELSE
            i := i + 1;
            CONTINUE;
        END IF;
        -- c[j:i] is a constant.
        params := params + 1;
        out := out || array_to_string(c[kept:j - 1], '') || '$' || params;
        kept := i + 1;
        i := i + 1;
    END LOOP;
    RETURN out || array_to_string(c[kept:n], '');
END
$$;

-- _string_end is where the string constant whose opening quote is c[p_at] ends: its closing
-- quote, or the text's end where it was cut off. p_escapes: an E'' string, where \ escapes.
CREATE OR REPLACE FUNCTION telemetry._string_end(c text[], p_at integer, p_escapes boolean)
RETURNS integer LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    i integer := p_at + 1;
    n integer := cardinality(c);
BEGIN
    WHILE i <= n LOOP
        IF p_escapes AND c[i] = E'\\' THEN
            i := i + 2;
        ELSIF c[i] = E'\\' AND c[i + 1] = '''' THEN
            -- The string ends here where standard_conforming_strings is on (the default), and
            -- goes on where a session turned it off: replaced to the end, either way.
            RETURN n;
        ELSIF c[i] = '''' AND c[i + 1] = '''' THEN
            i := i + 2;
        ELSIF c[i] = '''' THEN
            RETURN i;
        ELSE
            i := i + 1;
        END IF;
    END LOOP;
    RETURN n;
END
$$;

-- _snapshot_statements stores pg_stat_statements for snapshot p_id where it is usable: every
-- entry at a batch's boundary (a run began or ended since the previous read, as batch_begin
-- and batch_end ask) and once an hour between them, as the recorder does at its default
-- --recorder.statements-interval (recorder/rows.go); nothing at the other snapshots.
CREATE OR REPLACE FUNCTION telemetry._snapshot_statements(p_id integer, p_at timestamptz, p_server text)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_info record;
    v_last timestamptz;
BEGIN
    SELECT * INTO v_info FROM telemetry._collect_statements_info();
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT max(captured_at) INTO v_last
    FROM telemetry.statement_info_snapshots WHERE server = p_server AND captured_at > p_at - interval '1 hour';
    IF v_last IS NOT NULL AND NOT EXISTS (
        SELECT FROM telemetry.batch_runs_checked r -- ('infinity' would be a boundary forever)
        WHERE (r.server IS NULL OR r.server = p_server) AND (r.started_at > v_last OR r.ended_at > v_last) AND r.times_ok) THEN
        RETURN;
    END IF;
    WITH cur AS (SELECT * FROM telemetry._collect_statements()),
    stored AS (
        INSERT INTO telemetry.statement_snapshots (snapshot_id, userid, dbid, toplevel, queryid, datname, username,
            calls, plans, total_plan_time, total_exec_time, rows, shared_blks_hit, shared_blks_read,
            shared_blks_dirtied, shared_blks_written, local_blks_read, local_blks_written, temp_blks_read,
            temp_blks_written, blk_read_time, blk_write_time, wal_records, wal_fpi, wal_bytes, wal_buffers_full,
            stats_since, parallel_workers_to_launch, parallel_workers_launched, server, captured_at)
        SELECT p_id, c.userid, c.dbid, c.toplevel, c.queryid, c.datname, c.username, c.calls, c.plans,
            c.total_plan_time, c.total_exec_time, c.rows, c.shared_blks_hit, c.shared_blks_read, c.shared_blks_dirtied,
            c.shared_blks_written, c.local_blks_read, c.local_blks_written, c.temp_blks_read, c.temp_blks_written,
            c.blk_read_time, c.blk_write_time, c.wal_records, c.wal_fpi, c.wal_bytes, c.wal_buffers_full,
            c.stats_since, c.parallel_workers_to_launch, c.parallel_workers_launched, p_server, p_at
        FROM cur c),
    info AS (
        INSERT INTO telemetry.statement_info_snapshots (snapshot_id, dealloc, stats_reset, entries, full_read, server, captured_at)
        SELECT p_id, v_info.dealloc, v_info.stats_reset, (SELECT count(*) FROM cur), true, p_server, p_at)
    -- (Data-modifying CTEs run to completion, read or not.) Texts once per server and queryid,
    -- truncated as the exporter does by default.
    INSERT INTO telemetry.statement_texts (server, queryid, query, first_seen)
    SELECT p_server, t.queryid, telemetry._normalized_query(t.query), p_at
    FROM telemetry._collect_statement_texts(ARRAY(
            SELECT DISTINCT c.queryid FROM cur c
            WHERE NOT EXISTS (SELECT FROM telemetry.statement_texts x WHERE x.server = p_server AND x.queryid = c.queryid)),
        4096) t -- collectors.DefaultStatementTextLength
    ON CONFLICT DO NOTHING;
END
$$;
REVOKE EXECUTE ON FUNCTION telemetry._snapshot_statements(integer, timestamptz, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION telemetry.snapshot()
RETURNS timestamptz LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_at timestamptz := clock_timestamp();
    v_server text := (SELECT system_identifier::text FROM pg_control_system());
    v_id integer;
BEGIN
    PERFORM pg_stat_clear_snapshot();
    PERFORM telemetry._ensure_partitions(v_at);
    WITH w AS (SELECT * FROM telemetry._collect_wal()),
    k AS (SELECT * FROM telemetry._collect_checkpointer()),
    ctl AS (SELECT * FROM telemetry._collect_control_checkpoint()),
    b AS (SELECT * FROM telemetry._collect_bgwriter()),
    io AS (
        SELECT backend_type, sum(writes)::bigint AS writes, sum(write_time) AS write_time,
            sum(fsyncs)::bigint AS fsyncs, sum(fsync_time) AS fsync_time
        FROM telemetry._collect_io() GROUP BY backend_type
    ),
    sl AS (SELECT count(*)::int AS n, max(retained_wal_bytes) AS max_retained FROM telemetry._collect_replication_slots()),
    d AS (SELECT * FROM telemetry._collect_databases() WHERE datname = current_database()),
    av AS (SELECT * FROM telemetry._collect_autovacuum_workers())
    INSERT INTO telemetry.snapshots (captured_at, pg_version, wal_records, wal_fpi, wal_bytes, wal_write_time,
        wal_sync_time, checkpoint_lsn, checkpoint_time, ckpt_timed, ckpt_requested, ckpt_write_time, ckpt_sync_time,
        ckpt_buffers, bgw_buffers_clean, bgw_maxwritten_clean, bgw_buffers_alloc, bgw_buffers_backend,
        bgw_buffers_backend_fsync, autovacuum_workers, slots_count, slots_max_retained_wal,
        io_checkpointer_writes, io_checkpointer_write_time, io_checkpointer_fsyncs, io_checkpointer_fsync_time,
        io_autovacuum_writes, io_autovacuum_write_time, io_client_writes, io_client_write_time,
        io_bgwriter_writes, io_bgwriter_write_time, temp_files, temp_bytes, server,
        wal_stats_reset, ckpt_stats_reset, bgw_stats_reset, db_stats_reset, io_stats_reset, io_client_buffer_writes)
    SELECT v_at, current_setting('server_version_num')::int / 10000, w.wal_records, w.wal_fpi, w.wal_bytes,
        w.wal_write_time, w.wal_sync_time, ctl.checkpoint_lsn::pg_lsn, ctl.checkpoint_time, k.timed, k.requested,
        k.write_time, k.sync_time, k.buffers_written, b.buffers_clean, b.maxwritten_clean, b.buffers_alloc,
        b.buffers_backend, b.buffers_backend_fsync, av.workers, sl.n, sl.max_retained,
        (SELECT writes FROM io WHERE backend_type = 'checkpointer'),
        (SELECT write_time FROM io WHERE backend_type = 'checkpointer'),
        (SELECT fsyncs FROM io WHERE backend_type = 'checkpointer'),
        (SELECT fsync_time FROM io WHERE backend_type = 'checkpointer'),
        (SELECT writes FROM io WHERE backend_type = 'autovacuum worker'),
        (SELECT write_time FROM io WHERE backend_type = 'autovacuum worker'),
        (SELECT writes FROM io WHERE backend_type = 'client backend'),
        (SELECT write_time FROM io WHERE backend_type = 'client backend'),
        (SELECT writes FROM io WHERE backend_type = 'background writer'),
        (SELECT write_time FROM io WHERE backend_type = 'background writer'),
        d.temp_files, d.temp_bytes, v_server, w.stats_reset, k.stats_reset, b.stats_reset, d.stats_reset,
        (SELECT stats_reset FROM telemetry._collect_io_reset()),
        (SELECT writes FROM telemetry._collect_client_backend_writes())
    FROM (SELECT) one LEFT JOIN w ON true LEFT JOIN k ON true LEFT JOIN ctl ON true LEFT JOIN b ON true
        LEFT JOIN sl ON true LEFT JOIN d ON true LEFT JOIN av ON true
    RETURNING id INTO v_id;

    PERFORM telemetry._record_snapshots(v_id, v_server, v_at);
    PERFORM telemetry._snapshot_statements(v_id, v_at, v_server);
    PERFORM telemetry._note_server(v_server, v_server, current_setting('server_version_num')::int / 10000, v_at);
    PERFORM telemetry._note_settings(v_server, v_at, (SELECT s.settings::jsonb FROM telemetry._collect_settings() s));
    RETURN v_at;
END
$$;
REVOKE EXECUTE ON FUNCTION telemetry.snapshot() FROM PUBLIC;

CREATE OR REPLACE FUNCTION telemetry.sample()
RETURNS timestamptz LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_at timestamptz := clock_timestamp();
    v_server text := (SELECT system_identifier::text FROM pg_control_system());
    v_id integer;
    v_previous timestamptz; -- the server's previous sample
BEGIN
    PERFORM pg_stat_clear_snapshot();
    PERFORM telemetry._ensure_partitions(v_at);
    v_previous := (SELECT max(captured_at) FROM telemetry.samples WHERE server = v_server AND captured_at < v_at);
    INSERT INTO telemetry.samples (captured_at, server) VALUES (v_at, v_server) RETURNING id INTO v_id;

    PERFORM telemetry._record_samples(v_id, v_server, v_at);

    -- The open runs' session-seconds, as the exporter's batch tracker books them
    -- (batch_wait_samples): a run's own sessions (the session that began it, and those named
    -- after the batch: a marker run's of the role that began it) by state, wait and statement,
    -- idle ones included, and every other non-idle session by wait. The sample stands for the
    -- time since the previous one (at most two minutes), and never for time before the run began.
    WITH runs AS (
        SELECT r.batch, r.source, r.started_at, r.backend_pid, r.backend_start, r.began_by
        FROM telemetry.batch_runs_checked r WHERE r.status = 'running' AND r.times_ok),
    sessions AS (
        SELECT s.* FROM telemetry._collect_session_waits(0, (SELECT array_agg(left(batch, 63)) FROM runs), NULL,
                                                         (SELECT array_agg(backend_pid) FROM runs), false) s
        WHERE EXISTS (SELECT FROM runs)),
    booked AS (
        SELECT r.batch, s.*, r.started_at,
               (s.pid = r.backend_pid AND s.backend_start = r.backend_start)
               OR (s.application_name = left(r.batch, 63) AND (r.source <> 'marker' OR s.usename = r.began_by::text)) AS own
        FROM runs r CROSS JOIN sessions s)
    INSERT INTO telemetry.batch_wait_samples (sample_id, batch, own, pid, backend_start, state, usename, datname,
                                              wait_event_type, wait_event, queryid, seconds, server, captured_at)
    SELECT v_id, b.batch, b.own, CASE WHEN b.own THEN b.pid ELSE 0 END, CASE WHEN b.own THEN b.backend_start END, b.state,
           CASE WHEN b.own THEN b.usename END, CASE WHEN b.own THEN b.datname END, b.wait_event_type, b.wait_event,
           CASE WHEN b.own THEN b.query_id ELSE 0 END,
           sum(extract(epoch FROM least(v_at - b.started_at,
                                        coalesce(v_at - v_previous, interval '30 seconds'), interval '2 minutes'))),
           v_server, v_at
    FROM booked b WHERE b.own OR b.state = 'active'
    GROUP BY 2, 3, 4, 5, 6, 7, 8, 9, 10, 11;

    PERFORM telemetry._rollup_sample(v_server, v_id, v_at);
    PERFORM telemetry._note_server(v_server, v_server, current_setting('server_version_num')::int / 10000, v_at);
    RETURN v_at;
END
$$;
REVOKE EXECUTE ON FUNCTION telemetry.sample() FROM PUBLIC;
