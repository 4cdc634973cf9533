-- statement_wait_samples by server and time (issue 22): the table has had no index since its
-- primary key went (0012), and every read of a window's rows (the rollups' raw edges, a run's
-- own statements) scanned whole day partitions; the edge of a 30-day window read a day for
-- its last minutes.
CREATE INDEX IF NOT EXISTS statement_wait_samples_server_idx ON telemetry.statement_wait_samples (server, captured_at);
