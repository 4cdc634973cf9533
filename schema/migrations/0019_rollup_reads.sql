-- Reads of a long window (issue 22): indexes for the raw rows and the hour rollups it reads, and
-- statement rollups by day.

-- statement_wait_samples by server and time (issue 22): the table has had no index since its
-- primary key went (0012), and every read of a window's rows (the rollups' raw edges, a run's
-- own statements) scanned whole day partitions; the edge of a 30-day window read a day for
-- its last minutes.
CREATE INDEX IF NOT EXISTS statement_wait_samples_server_idx ON telemetry.statement_wait_samples (server, captured_at);

-- The hour rollups by themselves, with what the window readers take from them (issue 22): a
-- window's whole hours are read index-only. Through the primary key the hour rows, spread among
-- sixty times as many minute rows, cost a heap page each (a 30-day wait_summary read 7,000
-- pages for 13,000 rows).
CREATE INDEX IF NOT EXISTS sample_rollups_hour_idx ON telemetry.sample_rollups (server, captured_at)
    INCLUDE (samples, lock_samples, lock_max_waiters) WHERE bucket = interval '1 hour';
CREATE INDEX IF NOT EXISTS wait_rollups_hour_idx ON telemetry.wait_rollups (server, captured_at)
    INCLUDE (backend_type, wait_event_type, wait_event, samples, waiters, max_waiters) WHERE bucket = interval '1 hour';
CREATE INDEX IF NOT EXISTS wait_time_rollups_hour_idx ON telemetry.wait_time_rollups (server, captured_at)
    INCLUDE (wait_event_type, wait_event, seconds) WHERE bucket = interval '1 hour';

-- Statement rollups by day too (bucket '1 day', issue 22): a month of statement_compare read
-- a row per statement, wait and hour (864,000 in the bench's 30 days). The recorder adds each
-- sample to its day from now on (telemetry._rollup_add); the days recorded so far are summed
-- from their hours here, writers held off until the new functions are in (this transaction),
-- so that no sample is in its hour and not in its day.
LOCK TABLE telemetry.statement_wait_rollups IN SHARE ROW EXCLUSIVE MODE;
INSERT INTO telemetry.statement_wait_rollups (server, bucket, captured_at, batch, queryid, wait_event_type, wait_event,
                                              before_query_id, query_text_hash, query_text, seconds)
SELECT r.server, interval '1 day', date_bin('1 day', r.captured_at, timestamptz '1970-01-01 00:00:00+00'),
       r.batch, r.queryid, r.wait_event_type, r.wait_event, r.before_query_id, r.query_text_hash, min(r.query_text), sum(r.seconds)
FROM telemetry.statement_wait_rollups r
WHERE r.bucket = interval '1 hour'
GROUP BY 1, 3, 4, 5, 6, 7, 8, 9
ON CONFLICT DO NOTHING;
