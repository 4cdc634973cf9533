-- The most sessions blocked on a heavyweight lock at once, in one sample (lock_samples'
-- distinct blocked pids), by minute and by hour (issue 22): the report's chart of a long
-- window drew each hour's from the window's lock samples (172,000 rows in the bench's month,
-- 130 ms of the 30-day page). NULL: no sample of the bucket had one. Kept by
-- telemetry._rollup_add; the buckets recorded so far are filled here, writers of lock samples
-- held off until the new functions are in (this transaction). The per-sample count is
-- telemetry._raw_blocked's, not defined yet while migrations run. Locked in the writers' order
-- (a sample's lock samples, then its rollups): sample_rollups first would deadlock with a
-- sample between the two.
LOCK TABLE telemetry.lock_samples IN SHARE MODE;
ALTER TABLE telemetry.sample_rollups ADD COLUMN IF NOT EXISTS lock_max_blocked integer;
UPDATE telemetry.sample_rollups r SET lock_max_blocked = b.blocked
FROM (SELECT l.server, w.width, date_bin(w.width, l.captured_at, timestamptz '1970-01-01 00:00:00+00') AS at, max(l.blocked) AS blocked
      FROM (SELECT l.server, l.captured_at, count(DISTINCT l.blocked_pid)::integer AS blocked FROM telemetry.lock_samples l
            GROUP BY l.server, l.sample_id, l.captured_at) l,
           (VALUES (interval '1 minute'), (interval '1 hour')) w (width)
      GROUP BY 1, 2, 3) b
WHERE r.server = b.server AND r.bucket = b.width AND r.captured_at = b.at;

-- The hour rows read index-only with it (0019's index without it).
CREATE INDEX IF NOT EXISTS sample_rollups_hours_idx ON telemetry.sample_rollups (server, captured_at)
    INCLUDE (samples, lock_samples, lock_max_waiters, lock_max_blocked) WHERE bucket = interval '1 hour';
DROP INDEX IF EXISTS telemetry.sample_rollups_hour_idx;
