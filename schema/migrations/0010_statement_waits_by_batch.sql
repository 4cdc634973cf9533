-- The wait sampler's statement seconds by the batch whose own session ran the statement (''
-- for every other session): a run's statements are those its own sessions ran, so that its
-- statement findings never name another application's (diagnosis/diagnosissql/statements.sql).
ALTER TABLE telemetry.statement_wait_samples ADD COLUMN batch text NOT NULL DEFAULT '';
ALTER TABLE telemetry.statement_wait_samples DROP CONSTRAINT statement_wait_samples_pkey;
ALTER TABLE telemetry.statement_wait_samples
    ADD PRIMARY KEY (sample_id, batch, queryid, wait_event_type, wait_event, before_query_id, query_text, captured_at);
