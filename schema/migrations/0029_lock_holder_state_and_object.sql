-- What a lock wait's holder was doing and what the lock was on, where no relation says it: a
-- holder idle in a transaction (or idle, holding a session-level advisory lock) showed its
-- last statement as if it were running it, and an advisory lock was "a lock on an object",
-- its key lost. blocking_state is the holder's pg_stat_activity.state; locked_object an
-- advisory lock's key, the transaction a row lock waits for, a row's or a page's place. NULL
-- in the rows recorded before.
ALTER TABLE telemetry.lock_samples ADD COLUMN IF NOT EXISTS blocking_state text,
    ADD COLUMN IF NOT EXISTS locked_object text;
ALTER TABLE telemetry.lock_wait_episodes ADD COLUMN IF NOT EXISTS blocking_state text,
    ADD COLUMN IF NOT EXISTS locked_object text;
