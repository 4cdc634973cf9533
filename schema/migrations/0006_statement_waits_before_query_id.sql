-- The wait sampler's session-seconds of a statement before the server reported its query_id
-- (parse analysis, where a statement first locks its tables), kept apart: pg_stat_statements'
-- times leave that phase out, so statement analysis adds them. query_text: of a query that
-- waited on a lock and never showed a query_id (queryid 0), for statement analysis to match
-- against pg_stat_statements' texts (diagnosis/diagnosissql/statements.sql).
ALTER TABLE telemetry.statement_wait_samples ADD COLUMN before_query_id boolean NOT NULL DEFAULT false;
ALTER TABLE telemetry.statement_wait_samples ADD COLUMN query_text text NOT NULL DEFAULT '';
ALTER TABLE telemetry.statement_wait_samples DROP CONSTRAINT statement_wait_samples_pkey;
ALTER TABLE telemetry.statement_wait_samples
    ADD PRIMARY KEY (sample_id, queryid, wait_event_type, wait_event, before_query_id, query_text, captured_at);
