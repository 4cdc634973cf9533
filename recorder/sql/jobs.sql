-- pg_cron mode, included by install.sql: takes a first snapshot and sample, then schedules
-- the seed's three jobs and telemetry_settle (settled runs) where pg_cron is available. Re-running it is safe (jobs are named).
SELECT telemetry.snapshot() AS first_snapshot \gset
SELECT telemetry.sample() AS first_sample \gset

-- pg_cron can be created only where it is preloaded and in its cron.database_name.
SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron')
    OR (current_setting('shared_preload_libraries') ~ '(^|[ ,])pg_cron($|[ ,])'
        AND current_database() = current_setting('cron.database_name', true)) AS has_cron \gset
\if :has_cron
CREATE EXTENSION IF NOT EXISTS pg_cron;
DO $$
DECLARE
    v_version text := (SELECT extversion FROM pg_extension WHERE extname = 'pg_cron');
    v_sample_schedule text := '30 seconds';
BEGIN
    -- Interval schedules ('30 seconds') came with pg_cron 1.5; before, sample every minute.
    IF string_to_array(split_part(v_version, '-', 1), '.')::int[] < '{1,5}' THEN
        v_sample_schedule := '* * * * *';
        RAISE NOTICE 'pg_cron % has no sub-minute schedules (1.5 and later have): telemetry_sample runs every minute', v_version;
    END IF;
    PERFORM cron.schedule('telemetry_snapshot', '*/5 * * * *', 'SELECT telemetry.snapshot()');
    PERFORM cron.schedule('telemetry_sample', v_sample_schedule, 'SELECT telemetry.sample()');
    PERFORM cron.schedule('telemetry_cleanup', '0 3 * * *', $job$SELECT telemetry.cleanup('7 days')$job$);
    PERFORM cron.schedule('telemetry_settle', '* * * * *', 'SELECT telemetry.settle_runs()');
END
$$;
\else
DO $$ BEGIN
    RAISE NOTICE 'pg_cron is not available in this database: the telemetry schema is installed without its jobs; schedule telemetry.snapshot(), telemetry.sample() and telemetry.settle_runs() yourself, or run pg-batch-exporter --recorder.enabled';
END $$;
\endif
