-- What changed since a batch's normal runs (issue 20): the relations a batch touches, their
-- state at each run's boundaries, and the server's settings. Their functions:
-- diagnosis/diagnosissql/changes.sql (run_changes).

-- The relations a batch's own sessions held locks on at the wait sampler's readings during its
-- runs (tables, partitioned tables, materialized views of the monitored database), with the
-- statement each session ran then (0: none known) and its role: learnt without configuration.
-- A run's relations are its batch's rows within the run's window.
CREATE TABLE IF NOT EXISTS telemetry.batch_relations (
    sample_id integer,
    batch text NOT NULL,
    relid oid NOT NULL,
    schemaname text NOT NULL,
    relname text NOT NULL,
    queryid bigint NOT NULL,
    username text NOT NULL,
    server text NOT NULL,
    captured_at timestamptz NOT NULL,
    PRIMARY KEY (sample_id, batch, relid, queryid, username, captured_at)
) PARTITION BY RANGE (captured_at);
CREATE INDEX IF NOT EXISTS batch_relations_batch_idx ON telemetry.batch_relations (server, batch, captured_at);

-- The state of the relations batches touch (and of the tracked tables) at a batch's
-- boundaries (the snapshots batch_begin and batch_end ask for): indexes, whether the table
-- was rewritten (relfilenode), rows, rows modified since the last analyze, the last (auto)
-- analyze and vacuum, size, and whether autovacuum is on for it.
CREATE TABLE IF NOT EXISTS telemetry.relation_states (
    snapshot_id integer,
    relid oid NOT NULL,
    schemaname text NOT NULL,
    relname text NOT NULL,
    relfilenode oid,
    reltuples double precision,
    n_live_tup bigint,
    n_mod_since_analyze bigint,
    last_analyze timestamptz,
    last_autoanalyze timestamptz,
    last_vacuum timestamptz,
    last_autovacuum timestamptz,
    total_size bigint,
    autovacuum_enabled boolean NOT NULL,
    indexes jsonb NOT NULL,           -- [{name, definition, valid, ready}], by name
    server text NOT NULL,
    captured_at timestamptz NOT NULL,
    PRIMARY KEY (snapshot_id, relid, captured_at)
) PARTITION BY RANGE (captured_at);
CREATE INDEX IF NOT EXISTS relation_states_relid_idx ON telemetry.relation_states (server, relid, captured_at);

-- The server's settings, a row when they change (telemetry._note_settings): the settings
-- changed from their defaults by the server's configuration (name -> setting, unit, source,
-- category, pending_restart), the per-database and per-role settings of the monitored
-- database (pg_db_role_setting), the configuration's load time, the server's start time and
-- version, and the extensions' versions. Kept whatever the retention: a row a change.
CREATE TABLE IF NOT EXISTS telemetry.server_settings (
    server text NOT NULL,
    captured_at timestamptz NOT NULL,
    settings jsonb NOT NULL,
    PRIMARY KEY (server, captured_at)
);
