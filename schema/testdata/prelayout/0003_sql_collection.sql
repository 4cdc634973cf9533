-- pg_cron mode: snapshot() and sample() collect in SQL what the Go recorder writes from the
-- exporter's collections, through the same statements (the _collect_* functions of
-- sql/collect.sql), and map them to rows the same way (recorder/rows.go). Each starts from
-- fresh statistics and its own timestamp, even when called twice in one transaction.

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
        wal_stats_reset, ckpt_stats_reset, bgw_stats_reset, db_stats_reset, io_stats_reset)
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
        (SELECT stats_reset FROM telemetry._collect_io_reset())
    FROM (SELECT) one LEFT JOIN w ON true LEFT JOIN k ON true LEFT JOIN ctl ON true LEFT JOIN b ON true
        LEFT JOIN sl ON true LEFT JOIN d ON true LEFT JOIN av ON true
    RETURNING id INTO v_id;

    INSERT INTO telemetry.table_snapshots
    SELECT v_id, t.relid, t.schemaname, t.relname, t.relation_size, t.total_size, t.indexes_size, t.n_live_tup,
        t.n_dead_tup, t.n_tup_ins, t.n_tup_upd, t.n_tup_del, t.n_tup_hot_upd, t.last_vacuum, t.last_autovacuum,
        t.last_analyze, t.last_autoanalyze, t.vacuum_count, t.autovacuum_count, t.analyze_count,
        t.autoanalyze_count, v_server, v_at
    FROM telemetry._collect_tables('{}', '{}') t;

    INSERT INTO telemetry.replication_snapshots
    SELECT v_id, r.pid, r.client_addr::inet, r.application_name, r.state, r.sync_state, r.sent_lsn::pg_lsn,
        r.write_lsn::pg_lsn, r.flush_lsn::pg_lsn, r.replay_lsn::pg_lsn,
        make_interval(secs => r.write_lag_seconds), make_interval(secs => r.flush_lag_seconds),
        make_interval(secs => r.replay_lag_seconds), v_server, v_at
    FROM telemetry._collect_replication() r;

    PERFORM telemetry._note_server(v_server, v_server, current_setting('server_version_num')::int / 10000, v_at);
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
BEGIN
    PERFORM pg_stat_clear_snapshot();
    PERFORM telemetry._ensure_partitions(v_at);
    INSERT INTO telemetry.samples (captured_at, server) VALUES (v_at, v_server) RETURNING id INTO v_id;

    INSERT INTO telemetry.wait_samples
    SELECT v_id, g.backend_type, g.wait_event_type, g.wait_event, g.state, g.count, v_server, v_at
    FROM telemetry._collect_session_groups() g;

    INSERT INTO telemetry.activity_samples
    SELECT v_id, a.pid, a.usename, a.application_name, a.backend_type, a.state, a.wait_event_type, a.wait_event,
        a.query_start, a.state_change, a.query_preview, v_server, v_at, a.datname
    FROM telemetry._collect_active_sessions() a;

    INSERT INTO telemetry.progress_samples
    SELECT v_id, p.progress_type, p.pid, p.relid, p.relname, p.phase, p.blocks_total, p.blocks_done,
        p.tuples_total, p.tuples_done, p.bytes_total, p.bytes_done, p.details, v_server, v_at, p.datname
    FROM telemetry._collect_progress() p;

    INSERT INTO telemetry.lock_samples
    SELECT v_id, l.blocked_pid, l.blocked_user, l.blocked_app, l.blocked_query_preview,
        make_interval(secs => l.waited_seconds), l.blocking_pid, l.blocking_user, l.blocking_app,
        l.blocking_query_preview, l.lock_type, l.locked_relation, v_server, v_at, l.datname
    FROM telemetry._collect_lock_waits() l;

    PERFORM telemetry._note_server(v_server, v_server, current_setting('server_version_num')::int / 10000, v_at);
    RETURN v_at;
END
$$;
REVOKE EXECUTE ON FUNCTION telemetry.sample() FROM PUBLIC;
