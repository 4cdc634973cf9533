-- The batch's own sessions between statements (issue 19): while a batch runs, the wait sampler
-- also reads its own sessions when idle or idle in transaction, so a run's time outside its
-- statements (waiting for the client, idle in a transaction) is in its account. state is
-- pg_stat_activity's: 'active' for every non-idle state (the only rows before this migration,
-- and the only rows of the other sessions), else 'idle', 'idle in transaction' or 'idle in
-- transaction (aborted)'; an idle session's queryid is its last statement's.
ALTER TABLE telemetry.batch_wait_samples ADD COLUMN state text NOT NULL DEFAULT 'active';
ALTER TABLE telemetry.batch_wait_samples DROP CONSTRAINT batch_wait_samples_pkey;
ALTER TABLE telemetry.batch_wait_samples
    ADD PRIMARY KEY (sample_id, batch, own, pid, state, wait_event_type, wait_event, queryid, captured_at);
