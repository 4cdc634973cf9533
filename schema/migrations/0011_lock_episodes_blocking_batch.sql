-- The batch whose own session held a lock another waited for ('' for none), as the batch
-- tracker's rule names it when the wait sampler first saw the wait: a batch's sessions waiting
-- for each other (diagnosis/diagnosissql/statements.sql, diagnose_run_findings).
ALTER TABLE telemetry.lock_wait_episodes ADD COLUMN IF NOT EXISTS blocking_batch text NOT NULL DEFAULT '';
