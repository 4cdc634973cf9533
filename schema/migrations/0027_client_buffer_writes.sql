-- The shared buffers client backends wrote themselves on 17 and later (pg_stat_io's relation
-- rows): what bgw_buffers_backend was before 17. io_client_writes sums every client-backend row
-- as the contract says, and on 18 those count the WAL's writes too (object wal): a batch's
-- commits looked like buffers written by backends (buffer_pressure). NULL before 17.
ALTER TABLE telemetry.snapshots ADD COLUMN IF NOT EXISTS io_client_buffer_writes bigint;
-- 17's snapshots recorded so far keep buffer_pressure's figure as it was: io_client_writes,
-- which on 17 differs only by temporary tables' local buffers. 18's mix in the WAL's writes,
-- and stay NULL.
UPDATE telemetry.snapshots SET io_client_buffer_writes = io_client_writes WHERE pg_version = 17;
