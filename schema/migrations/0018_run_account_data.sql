-- The run account's data (issue 19).
--
-- The batch's own sessions between statements: while a batch runs, the wait sampler also
-- reads its own sessions when idle or idle in transaction, so a run's time outside its
-- statements (waiting for the client, idle in a transaction) is in its account. state is
-- pg_stat_activity's: 'active' for every non-idle state (the only rows before this migration,
-- and the only rows of the other sessions), else 'idle', 'idle in transaction' or 'idle in
-- transaction (aborted)'; an idle session's queryid is its last statement's.
ALTER TABLE telemetry.batch_wait_samples ADD COLUMN state text NOT NULL DEFAULT 'active';
-- An own session's role and database (NULL for the other sessions, and before this
-- migration): a run's statements that escaped the samples are looked for among those its own
-- roles ran in its own databases (telemetry._run_unsampled_statements).
ALTER TABLE telemetry.batch_wait_samples ADD COLUMN usename text;
ALTER TABLE telemetry.batch_wait_samples ADD COLUMN datname text;
ALTER TABLE telemetry.batch_wait_samples DROP CONSTRAINT batch_wait_samples_pkey;
ALTER TABLE telemetry.batch_wait_samples
    ADD PRIMARY KEY (sample_id, batch, own, pid, state, wait_event_type, wait_event, queryid, captured_at);

-- A run's start snapshot tied to its own request (issue 19, exact windows): batch_begin's
-- request names its run (snapshot_requests.run_id), and the snapshot taken for it is the run's
-- start read (batch_runs.start_snapshot_at), however late a loaded recorder takes it. Before,
-- the run started on the latest snapshot within boundary_snapshot_grace_seconds (at most a
-- tenth of the run) of its begin: one taken later left the run on an older snapshot, a
-- neighbouring run's. NULL: a run recorded before this migration, or whose snapshot failed.
ALTER TABLE telemetry.snapshot_requests ADD COLUMN IF NOT EXISTS run_id bigint;
ALTER TABLE telemetry.batch_runs ADD COLUMN IF NOT EXISTS start_snapshot_at timestamptz;
