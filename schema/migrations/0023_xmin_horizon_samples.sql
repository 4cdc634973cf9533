-- What held the cleanup (xmin) horizon back at each sample (collectors.SQLXminHolders): the
-- oldest holders, sessions, standbys' feedback, prepared transactions and replication slots,
-- ranked by age (1 the oldest); the diagnosis reads a run's (the xmin_horizon cause).
CREATE TABLE IF NOT EXISTS telemetry.xmin_horizon_samples (
    sample_id integer,
    rank integer NOT NULL,
    kind text NOT NULL,
    pid integer,
    datname text,
    usename text,
    name text,
    state text,
    held_since timestamptz,
    horizon_xid bigint NOT NULL,
    xmin_age bigint NOT NULL,
    query_preview text,
    server text NOT NULL,
    captured_at timestamptz NOT NULL,
    PRIMARY KEY (sample_id, rank, captured_at)
) PARTITION BY RANGE (captured_at);
-- A run's holders are read by time (telemetry._runs_xmin_horizon).
CREATE INDEX IF NOT EXISTS xmin_horizon_samples_server_idx ON telemetry.xmin_horizon_samples (server, captured_at);
