-- The batch tracker's split of the wait sampler's session-seconds while a batch runs: its own
-- sessions' (own, by wait and statement) and every other client session's (by wait), so a
-- run's lock and wait findings judge what the batch itself waited on, and a past run can be
-- diagnosed again. Its functions: diagnosis/diagnosissql/statements.sql (run_session_waits).
CREATE TABLE IF NOT EXISTS telemetry.batch_wait_samples (
    sample_id integer,
    batch text NOT NULL,
    own boolean NOT NULL,             -- the batch's own sessions, else every other client session
    wait_event_type text NOT NULL,
    wait_event text NOT NULL,
    queryid bigint NOT NULL,          -- own sessions' statement (0: none found); 0 for the others
    seconds double precision NOT NULL,
    server text NOT NULL,
    captured_at timestamptz NOT NULL,
    PRIMARY KEY (sample_id, batch, own, wait_event_type, wait_event, queryid, captured_at)
) PARTITION BY RANGE (captured_at);
