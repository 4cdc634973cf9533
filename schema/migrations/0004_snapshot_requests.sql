-- Snapshot requests. Any role that can connect may notify any channel, so the recorder
-- takes a requested snapshot only when it finds (and consumes) a row here, which only
-- request_snapshot, closed to PUBLIC, inserts.
CREATE TABLE IF NOT EXISTS telemetry.snapshot_requests (
    requested_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    requested_by name NOT NULL DEFAULT session_user
);
