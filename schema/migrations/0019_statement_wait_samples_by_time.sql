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
