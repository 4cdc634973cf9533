-- Lock waits as episodes: each wait of a session on a heavyweight lock, from pg_locks.waitstart
-- until the exporter's wait sampler (every second; it takes a lock sample whenever it sees a
-- client session waiting on a lock) no longer saw it waiting, with the session that blocked
-- it. Stored with the sample after its end. lock_samples keeps the sample tier's view (each
-- blocked/blocking pair at the sample's instant, the wait so far). Its function:
-- telemetry.lock_episodes (sql/api.sql).
CREATE TABLE IF NOT EXISTS telemetry.lock_wait_episodes (
    sample_id integer,
    blocked_pid integer NOT NULL,
    blocked_backend_start timestamptz,  -- with the pid, tells a reused pid apart
    blocked_user text,
    blocked_app text,
    blocked_query_preview text,
    blocking_pid integer NOT NULL,      -- the first session seen blocking it
    blocking_user text,
    blocking_app text,
    blocking_query_preview text,
    blocking_pids integer[] NOT NULL,   -- every session seen blocking it, in the order seen
    lock_type text,
    locked_relation text,
    datname text,
    started_at timestamptz NOT NULL,    -- pg_locks.waitstart
    last_seen_at timestamptz NOT NULL,  -- the last lock sample that saw it waiting
    -- Midway between last_seen_at and the first wait sample that no longer saw it waiting
    -- (off by at most half the time between them); last_seen_at where still_waiting.
    ended_at timestamptz NOT NULL,
    duration interval NOT NULL,         -- ended_at - started_at
    still_waiting boolean NOT NULL,     -- the exporter stopped while the session still waited
    server text NOT NULL,
    captured_at timestamptz NOT NULL,
    PRIMARY KEY (sample_id, blocked_pid, started_at, captured_at)
) PARTITION BY RANGE (captured_at);
