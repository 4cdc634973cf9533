-- A run's own results, computed once its data are all in (telemetry.settle_run): its
-- statements and measures, which every later run of its batch reads as a baseline run (issue
-- 22: a run against 30 baseline runs read each of their windows again). They hold while the
-- run's times, the thresholds, the tracked tables and the schema's definitions are those they
-- were computed under (fingerprint); retention deletes those of runs begun before what it
-- kept. complete is false where they could not be computed within the statement's time: the
-- run is read from its data each time then.
CREATE TABLE IF NOT EXISTS telemetry.run_results (
    run_id bigint PRIMARY KEY REFERENCES telemetry.batch_runs (run_id) ON DELETE CASCADE,
    server text,
    started_at timestamptz NOT NULL,
    ended_at timestamptz NOT NULL,
    start_snapshot_at timestamptz,
    fingerprint text NOT NULL,
    computed_at timestamptz NOT NULL,
    complete boolean NOT NULL,
    statement_batch text,
    own_recorded boolean
);

-- The run's statements (_window_statements of its window, in its order: ord), their sampled
-- waits those of its batch's own sessions (own, where it had them: statement_batch) or every
-- session's.
CREATE TABLE IF NOT EXISTS telemetry.run_result_statements (
    run_id bigint NOT NULL REFERENCES telemetry.run_results (run_id) ON DELETE CASCADE,
    own boolean NOT NULL,
    ord integer NOT NULL,
    queryid bigint,
    query text,
    status text,
    calls bigint,
    rows bigint,
    seconds numeric,
    blocks bigint,
    temp_blks bigint,
    wal_bytes bigint,
    sampled_waits jsonb,
    evicted boolean,
    PRIMARY KEY (run_id, own, ord)
);

-- The run's measures (_run_measures), by its own sessions' waits (own) and by every session's.
CREATE TABLE IF NOT EXISTS telemetry.run_result_measures (
    run_id bigint NOT NULL REFERENCES telemetry.run_results (run_id) ON DELETE CASCADE,
    own boolean NOT NULL,
    ord integer NOT NULL,
    measure text,
    pattern text,
    unit text,
    value numeric,
    PRIMARY KEY (run_id, own, ord)
);
