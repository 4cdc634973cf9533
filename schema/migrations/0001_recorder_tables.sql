-- The seed's tables, with three changes that keep every seed query working:
--   * every table is partitioned by day on captured_at, so retention drops partitions;
--     child tables carry captured_at (appended) and their foreign keys are declared per
--     partition pair, so that a day's partitions can be dropped without scanning others;
--   * every row carries the server it came from (appended column "server");
--   * activity, progress and lock samples keep their database name (appended "datname").
-- Tables and indexes only: the functions and views that read and write them are the
-- definitions (recorder/README.md). Every migration must be re-runnable (an interrupted psql
-- install may run one again).

CREATE TABLE IF NOT EXISTS telemetry.servers (
    server            text PRIMARY KEY,
    system_identifier text,
    pg_version        integer,
    first_seen        timestamptz NOT NULL DEFAULT now(),
    last_seen         timestamptz
);

CREATE TABLE IF NOT EXISTS telemetry.snapshots (
    id serial,
    captured_at timestamptz NOT NULL,
    pg_version integer NOT NULL,
    wal_records bigint,
    wal_fpi bigint,
    wal_bytes bigint,
    wal_write_time double precision,
    wal_sync_time double precision,
    checkpoint_lsn pg_lsn,
    checkpoint_time timestamptz,
    ckpt_timed bigint,
    ckpt_requested bigint,
    ckpt_write_time double precision,
    ckpt_sync_time double precision,
    ckpt_buffers bigint,
    bgw_buffers_clean bigint,
    bgw_maxwritten_clean bigint,
    bgw_buffers_alloc bigint,
    bgw_buffers_backend bigint,
    bgw_buffers_backend_fsync bigint,
    autovacuum_workers integer,
    slots_count integer,
    slots_max_retained_wal bigint,
    io_checkpointer_writes bigint,
    io_checkpointer_write_time double precision,
    io_checkpointer_fsyncs bigint,
    io_checkpointer_fsync_time double precision,
    io_autovacuum_writes bigint,
    io_autovacuum_write_time double precision,
    io_client_writes bigint,
    io_client_write_time double precision,
    io_bgwriter_writes bigint,
    io_bgwriter_write_time double precision,
    temp_files bigint,
    temp_bytes bigint,
    server text NOT NULL,
    -- When each group of counters last restarted from zero (pg_stat_reset_shared, a crash):
    -- a delta across a change is NULL.
    wal_stats_reset timestamptz,
    ckpt_stats_reset timestamptz,
    bgw_stats_reset timestamptz,
    db_stats_reset timestamptz,
    io_stats_reset timestamptz, -- pg_stat_io (16+): the io_* columns' epoch
    PRIMARY KEY (id, captured_at),
    -- One collection per server and instant: a retried write never duplicates.
    UNIQUE (server, captured_at)
) PARTITION BY RANGE (captured_at);
CREATE INDEX IF NOT EXISTS snapshots_captured_at_idx ON telemetry.snapshots (captured_at);

CREATE TABLE IF NOT EXISTS telemetry.tracked_tables (
    relid oid PRIMARY KEY,
    schemaname text NOT NULL DEFAULT 'public',
    relname text NOT NULL,
    added_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS telemetry.table_snapshots (
    snapshot_id integer,
    relid oid,
    schemaname text,
    relname text,
    pg_relation_size bigint,
    pg_total_relation_size bigint,
    pg_indexes_size bigint,
    n_live_tup bigint,
    n_dead_tup bigint,
    n_tup_ins bigint,
    n_tup_upd bigint,
    n_tup_del bigint,
    n_tup_hot_upd bigint,
    last_vacuum timestamptz,
    last_autovacuum timestamptz,
    last_analyze timestamptz,
    last_autoanalyze timestamptz,
    vacuum_count bigint,
    autovacuum_count bigint,
    analyze_count bigint,
    autoanalyze_count bigint,
    server text NOT NULL,
    captured_at timestamptz NOT NULL,
    PRIMARY KEY (snapshot_id, relid, captured_at)
) PARTITION BY RANGE (captured_at);
-- table_deltas finds each row's previous snapshot of the same table: without an index on
-- (server, relid, captured_at) that was a scan per row, hours over 7 days.
CREATE INDEX IF NOT EXISTS table_snapshots_relid_captured_at_idx ON telemetry.table_snapshots (server, relid, captured_at);
CREATE INDEX IF NOT EXISTS table_snapshots_captured_at_idx ON telemetry.table_snapshots (captured_at);

CREATE TABLE IF NOT EXISTS telemetry.replication_snapshots (
    snapshot_id integer,
    pid integer NOT NULL,
    client_addr inet,
    application_name text,
    state text,
    sync_state text,
    sent_lsn pg_lsn,
    write_lsn pg_lsn,
    flush_lsn pg_lsn,
    replay_lsn pg_lsn,
    write_lag interval,
    flush_lag interval,
    replay_lag interval,
    server text NOT NULL,
    captured_at timestamptz NOT NULL,
    PRIMARY KEY (snapshot_id, pid, captured_at)
) PARTITION BY RANGE (captured_at);

CREATE TABLE IF NOT EXISTS telemetry.samples (
    id serial,
    captured_at timestamptz NOT NULL,
    server text NOT NULL,
    PRIMARY KEY (id, captured_at),
    UNIQUE (server, captured_at)
) PARTITION BY RANGE (captured_at);
CREATE INDEX IF NOT EXISTS samples_captured_at_idx ON telemetry.samples (captured_at);

CREATE TABLE IF NOT EXISTS telemetry.wait_samples (
    sample_id integer,
    backend_type text NOT NULL,
    wait_event_type text NOT NULL,
    wait_event text NOT NULL,
    state text NOT NULL,
    count integer NOT NULL,
    server text NOT NULL,
    captured_at timestamptz NOT NULL,
    PRIMARY KEY (sample_id, backend_type, wait_event_type, wait_event, state, captured_at)
) PARTITION BY RANGE (captured_at);

CREATE TABLE IF NOT EXISTS telemetry.activity_samples (
    sample_id integer,
    pid integer NOT NULL,
    usename text,
    application_name text,
    backend_type text,
    state text,
    wait_event_type text,
    wait_event text,
    query_start timestamptz,
    state_change timestamptz,
    query_preview text,
    server text NOT NULL,
    captured_at timestamptz NOT NULL,
    datname text,
    PRIMARY KEY (sample_id, pid, captured_at)
) PARTITION BY RANGE (captured_at);

CREATE TABLE IF NOT EXISTS telemetry.progress_samples (
    sample_id integer,
    progress_type text NOT NULL,
    pid integer NOT NULL,
    relid oid,
    relname text,
    phase text,
    blocks_total bigint,
    blocks_done bigint,
    tuples_total bigint,
    tuples_done bigint,
    bytes_total bigint,
    bytes_done bigint,
    details jsonb,
    server text NOT NULL,
    captured_at timestamptz NOT NULL,
    datname text,
    PRIMARY KEY (sample_id, progress_type, pid, captured_at)
) PARTITION BY RANGE (captured_at);

CREATE TABLE IF NOT EXISTS telemetry.lock_samples (
    sample_id integer,
    blocked_pid integer NOT NULL,
    blocked_user text,
    blocked_app text,
    blocked_query_preview text,
    blocked_duration interval,
    blocking_pid integer NOT NULL,
    blocking_user text,
    blocking_app text,
    blocking_query_preview text,
    lock_type text,
    locked_relation text,
    server text NOT NULL,
    captured_at timestamptz NOT NULL,
    datname text,
    PRIMARY KEY (sample_id, blocked_pid, blocking_pid, captured_at)
) PARTITION BY RANGE (captured_at);

-- The high-frequency wait sampler's session-seconds (client backends, not idle) accumulated
-- since the previous sample: short waits that a 30-second grid of wait_samples misses.
CREATE TABLE IF NOT EXISTS telemetry.wait_time_samples (
    sample_id integer,
    wait_event_type text NOT NULL,
    wait_event text NOT NULL,
    seconds double precision NOT NULL,
    server text NOT NULL,
    captured_at timestamptz NOT NULL,
    PRIMARY KEY (sample_id, wait_event_type, wait_event, captured_at)
) PARTITION BY RANGE (captured_at);
