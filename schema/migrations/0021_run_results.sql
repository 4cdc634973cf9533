-- A run's own results, computed once its data are all in (telemetry.settle_run): its
-- statements and measures, which every later run of its batch reads as a baseline run (issue
-- 22: a run against 30 baseline runs read each of their windows again). They hold while the
-- run's times and server, the thresholds, the tracked tables and the schema's definitions are
-- those they were computed under (fingerprint), and while the data they were read from, from
-- data_from on, are kept. complete is false while they are computed, and where they could not
-- be (attempts made): the run is read from its data each time then.
CREATE TABLE IF NOT EXISTS telemetry.run_results (
    run_id bigint PRIMARY KEY REFERENCES telemetry.batch_runs (run_id) ON DELETE CASCADE,
    server text,
    started_at timestamptz NOT NULL,
    ended_at timestamptz NOT NULL,
    start_snapshot_at timestamptz,
    fingerprint text NOT NULL,
    data_server text NOT NULL,
    data_from timestamptz NOT NULL,
    computed_at timestamptz NOT NULL,
    complete boolean NOT NULL,
    attempts integer NOT NULL,
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
