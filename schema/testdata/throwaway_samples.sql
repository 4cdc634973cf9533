-- The migration of the throwaway table that recorder.TestThrowawayTableThroughItsDeclaration and
-- schema.TestThrowawayTableInPgCronMode add, as schema/README.md says a table is added.
CREATE TABLE IF NOT EXISTS telemetry.throwaway_samples (
    sample_id integer,
    sessions integer NOT NULL,
    server text NOT NULL,
    captured_at timestamptz NOT NULL,
    PRIMARY KEY (sample_id, captured_at)
) PARTITION BY RANGE (captured_at);
