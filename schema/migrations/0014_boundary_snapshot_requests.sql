-- A batch's boundary (batch_begin, batch_end) asks for a snapshot of its own: the recorder
-- takes it at once, never coalesced under --recorder.request-min-interval with a neighbouring
-- run's, so that back-to-back runs do not share a statement read (issue 19).
ALTER TABLE telemetry.snapshot_requests ADD COLUMN IF NOT EXISTS boundary boolean NOT NULL DEFAULT false;

