-- Rollups: what the window analysis functions read, summed by minute and by hour (bucket) as
-- the recorder writes each sample (telemetry._rollup_sample), so that a window of months reads
-- its whole hours and minutes here and raw rows only for the partial minutes at its two ends
-- (telemetry._rollup_span). captured_at is the bucket's start (UTC-aligned, date_bin from the
-- epoch); tables are partitioned by day like the raw ones, so retention drops a day's rollups
-- with its raw rows. Every key leads with server: a distributed PostgreSQL can shard by it.

-- Per bucket: its samples; those in which a client session (not idle) waited on a heavyweight
-- lock, and the most sessions one sample's row showed waiting on one (lock_contention).
CREATE TABLE IF NOT EXISTS telemetry.sample_rollups (
    server text NOT NULL,
    bucket interval NOT NULL,           -- 1 minute or 1 hour
    captured_at timestamptz NOT NULL,   -- the bucket's start
    samples integer NOT NULL,
    lock_samples integer NOT NULL,
    lock_max_waiters integer,
    PRIMARY KEY (server, bucket, captured_at)
) PARTITION BY RANGE (captured_at);

-- wait_samples, not idle, per bucket and wait: the samples that saw it (states together), the
-- sessions they saw in it, the most one row showed (wait_summary).
CREATE TABLE IF NOT EXISTS telemetry.wait_rollups (
    server text NOT NULL,
    bucket interval NOT NULL,
    captured_at timestamptz NOT NULL,
    backend_type text NOT NULL,
    wait_event_type text NOT NULL,
    wait_event text NOT NULL,
    samples integer NOT NULL,
    waiters bigint NOT NULL,
    max_waiters integer NOT NULL,
    PRIMARY KEY (server, bucket, captured_at, backend_type, wait_event_type, wait_event)
) PARTITION BY RANGE (captured_at);

-- wait_time_samples per bucket and wait: the wait sampler's session-seconds, summed exactly.
CREATE TABLE IF NOT EXISTS telemetry.wait_time_rollups (
    server text NOT NULL,
    bucket interval NOT NULL,
    captured_at timestamptz NOT NULL,
    wait_event_type text NOT NULL,
    wait_event text NOT NULL,
    seconds numeric NOT NULL,
    PRIMARY KEY (server, bucket, captured_at, wait_event_type, wait_event)
) PARTITION BY RANGE (captured_at);

-- statement_wait_samples per hour (statement_compare's windows start and end on statement
-- snapshots, an hour apart by default). query_text stays out of the key (no free text in keys,
-- 0012): its 64-bit hash stands in.
CREATE TABLE IF NOT EXISTS telemetry.statement_wait_rollups (
    server text NOT NULL,
    bucket interval NOT NULL,
    captured_at timestamptz NOT NULL,
    batch text NOT NULL,
    queryid bigint NOT NULL,
    wait_event_type text NOT NULL,
    wait_event text NOT NULL,
    before_query_id boolean NOT NULL,
    query_text_hash bigint NOT NULL,
    query_text text NOT NULL,
    seconds numeric NOT NULL,
    PRIMARY KEY (server, bucket, captured_at, batch, queryid, wait_event_type, wait_event, before_query_id, query_text_hash)
) PARTITION BY RANGE (captured_at);

-- Where each server's rollups are complete from (an hour's start): before it, and for a server
-- recorded before rollups existed, the analysis reads raw rows (telemetry.rollup_rebuild fills
-- older days in).
CREATE TABLE IF NOT EXISTS telemetry.rollup_coverage (
    server text PRIMARY KEY,
    since timestamptz NOT NULL
);
INSERT INTO telemetry.rollup_coverage (server, since)
SELECT s.server, date_bin('1 hour', now(), timestamptz '1970-01-01 00:00:00+00') + interval '1 hour' FROM telemetry.servers s
ON CONFLICT DO NOTHING;

-- Rows that diagnose reads raw, by the few a window has: vacuum progress and sessions waiting
-- on temporary files, by server and time.
CREATE INDEX IF NOT EXISTS progress_samples_vacuum_idx ON telemetry.progress_samples (server, captured_at)
    WHERE progress_type = 'vacuum';
CREATE INDEX IF NOT EXISTS activity_samples_temp_file_idx ON telemetry.activity_samples (server, captured_at)
    WHERE wait_event IN ('BufFileWrite', 'BufFileRead');
CREATE INDEX IF NOT EXISTS replication_snapshots_server_idx ON telemetry.replication_snapshots (server, captured_at);
CREATE INDEX IF NOT EXISTS lock_samples_server_idx ON telemetry.lock_samples (server, captured_at);
