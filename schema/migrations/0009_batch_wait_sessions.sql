-- The batch's own sessions in batch_wait_samples, one row each (pid and backend_start; 0 and
-- NULL for the other sessions, still summed by wait): which lock waits were the batch's.
ALTER TABLE telemetry.batch_wait_samples ADD COLUMN pid integer NOT NULL DEFAULT 0;
ALTER TABLE telemetry.batch_wait_samples ADD COLUMN backend_start timestamptz;
ALTER TABLE telemetry.batch_wait_samples DROP CONSTRAINT batch_wait_samples_pkey;
ALTER TABLE telemetry.batch_wait_samples
    ADD PRIMARY KEY (sample_id, batch, own, pid, wait_event_type, wait_event, queryid, captured_at);
