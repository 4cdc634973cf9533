-- Reads of a run and its baseline runs, and of a long window's charts (issue 22): each baseline
-- run reads its batch's own statement rollups; the vacuum progress a window saw and the sessions
-- blocked in each sample are read index-only. (No covering index on a rollup that samples
-- update, statement_wait_rollups: its updated sums in an index would end its in-place (HOT)
-- updates, and a query text in one may pass a btree entry's size.)

-- A batch's own sessions' statement rollups by themselves: a run's statements and each of its
-- baseline runs' are its batch's rows of the window (_window_statement_waits with a batch).
-- Through the primary key, whose batch comes after the time, a 30-day run read every
-- statement's row of the month (318,000 in the bench) to keep its batch's.
CREATE INDEX IF NOT EXISTS statement_wait_rollups_batch_idx ON telemetry.statement_wait_rollups (server, batch, bucket, captured_at);

-- autovacuum_interference reads the samples that saw a vacuum, of which table, in which phase: from the
-- index alone (before: a heap page per row, 86,000 rows a month at a vacuum in every sample).
CREATE INDEX IF NOT EXISTS progress_samples_vacuum_samples_idx ON telemetry.progress_samples (server, captured_at)
    INCLUDE (sample_id, relid, relname, phase) WHERE progress_type = 'vacuum';
DROP INDEX IF EXISTS telemetry.progress_samples_vacuum_idx;

-- The report's chart of sessions blocked on locks over a long window is the most blocked at
-- once in each hour: from lock_samples' index alone (a heap page a row before).
CREATE INDEX IF NOT EXISTS lock_samples_blocked_idx ON telemetry.lock_samples (server, captured_at) INCLUDE (sample_id, blocked_pid);
DROP INDEX IF EXISTS telemetry.lock_samples_server_idx;
