-- Statements: pg_stat_statements per snapshot, stored as deltas (only the entries whose calls
-- changed since the recorder's previous snapshot, every entry at a requested snapshot: a
-- batch's boundaries), their texts once per server and queryid, and the wait sampler's
-- session-seconds by statement. Their functions: diagnosis/diagnosissql/statements.sql.

-- An entry's counters as of the snapshot; an entry absent from a snapshot is unchanged since
-- the last row before it.
CREATE TABLE IF NOT EXISTS telemetry.statement_snapshots (
    snapshot_id integer,
    userid oid NOT NULL,
    dbid oid NOT NULL,
    toplevel boolean NOT NULL,
    queryid bigint NOT NULL,
    datname text,
    username text,
    calls bigint NOT NULL,
    plans bigint NOT NULL,
    total_plan_time double precision NOT NULL,
    total_exec_time double precision NOT NULL,
    rows bigint NOT NULL,
    shared_blks_hit bigint NOT NULL,
    shared_blks_read bigint NOT NULL,
    shared_blks_dirtied bigint NOT NULL,
    shared_blks_written bigint NOT NULL,
    local_blks_read bigint NOT NULL,
    local_blks_written bigint NOT NULL,
    temp_blks_read bigint NOT NULL,
    temp_blks_written bigint NOT NULL,
    -- Data file blocks, shared and local: blk_read_time before 17, shared_ + local_ from 17.
    blk_read_time double precision NOT NULL,
    blk_write_time double precision NOT NULL,
    wal_records bigint NOT NULL,
    wal_fpi bigint NOT NULL,
    wal_bytes bigint NOT NULL,
    wal_buffers_full bigint,          -- 18
    stats_since timestamptz,          -- 17: when the entry started counting
    server text NOT NULL,
    captured_at timestamptz NOT NULL,
    PRIMARY KEY (snapshot_id, userid, dbid, toplevel, queryid, captured_at)
) PARTITION BY RANGE (captured_at);

-- pg_stat_statements as a whole at each snapshot where it could be read.
CREATE TABLE IF NOT EXISTS telemetry.statement_info_snapshots (
    snapshot_id integer,
    dealloc bigint NOT NULL,          -- entries evicted since stats_reset
    stats_reset timestamptz NOT NULL,
    entries integer NOT NULL,
    full_read boolean NOT NULL,       -- every entry stored, not only the changed ones
    server text NOT NULL,
    captured_at timestamptz NOT NULL,
    PRIMARY KEY (snapshot_id, captured_at)
) PARTITION BY RANGE (captured_at);

-- Query texts, truncated by the exporter, once per server and queryid.
CREATE TABLE IF NOT EXISTS telemetry.statement_texts (
    server text NOT NULL,
    queryid bigint NOT NULL,
    query text NOT NULL,
    first_seen timestamptz NOT NULL,
    PRIMARY KEY (server, queryid)
);

-- The wait sampler's session-seconds by statement since the previous sample (queryid 0: no
-- statement could be found for them).
CREATE TABLE IF NOT EXISTS telemetry.statement_wait_samples (
    sample_id integer,
    queryid bigint NOT NULL,
    wait_event_type text NOT NULL,
    wait_event text NOT NULL,
    seconds double precision NOT NULL,
    server text NOT NULL,
    captured_at timestamptz NOT NULL,
    PRIMARY KEY (sample_id, queryid, wait_event_type, wait_event, captured_at)
) PARTITION BY RANGE (captured_at);
