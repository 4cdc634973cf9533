-- A baseline's statement medians, stored (issue 22): a run's statements against 30 baseline
-- runs took their 30,000 stored rows and 8,000 medians at each call. Once a run is settled and
-- the runs of the baseline a later run of its batch would have (next_baseline_runs: its own and
-- the normal runs before it whose statements are known, sorted) are all settled, each
-- statement's medians over them are stored here; a run whose baseline is that set reads them
-- while those runs' stored results are the ones they were computed from
-- (next_baseline_results: their computed_at, in the same order).
ALTER TABLE telemetry.run_results ADD COLUMN IF NOT EXISTS next_baseline_runs bigint[],
    ADD COLUMN IF NOT EXISTS next_baseline_results timestamptz[];

-- Each statement of those runs: its medians over them (a run without it counts 0 for its
-- seconds, calls and rows), as _baseline_statement_medians computes them, and in how many it ran.
CREATE TABLE IF NOT EXISTS telemetry.run_result_baseline_statements (
    run_id bigint NOT NULL REFERENCES telemetry.run_results (run_id) ON DELETE CASCADE,
    queryid bigint NOT NULL,
    seconds numeric,
    calls numeric,
    rows numeric,
    per_call numeric,
    blocks_per_call numeric,
    blocks_per_row numeric,
    temp_per_call numeric,
    wal_per_call numeric,
    runs_with integer NOT NULL,
    PRIMARY KEY (run_id, queryid)
);
