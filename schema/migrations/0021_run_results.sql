-- A run's own results, computed once its data are all in (telemetry.settle_run): its
-- statements and measures, which every later run of its batch reads as a baseline run (issue
-- 22: a run against 30 baseline runs read each of their windows again). results is NULL where
-- they could not be computed within the statement's time (read from the data each time then).
-- A row holds while the run's times, the thresholds, the tracked tables and the schema's
-- definitions are those it was computed under (fingerprint); retention deletes those of runs
-- begun before what it kept.
CREATE TABLE IF NOT EXISTS telemetry.run_results (
    run_id bigint PRIMARY KEY REFERENCES telemetry.batch_runs (run_id) ON DELETE CASCADE,
    server text,
    started_at timestamptz NOT NULL,
    ended_at timestamptz NOT NULL,
    start_snapshot_at timestamptz,
    fingerprint text NOT NULL,
    computed_at timestamptz NOT NULL,
    results jsonb
);
