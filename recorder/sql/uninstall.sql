-- Removes pg_cron mode: the jobs, their run history and the telemetry schema with all data.
-- psql -f recorder/sql/uninstall.sql
\set ON_ERROR_STOP on
SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') AS has_cron \gset
\if :has_cron
DELETE FROM cron.job_run_details WHERE jobid IN
    (SELECT jobid FROM cron.job WHERE jobname IN ('telemetry_snapshot', 'telemetry_sample', 'telemetry_cleanup'));
SELECT count(cron.unschedule(jobid)) AS unscheduled_jobs FROM cron.job
WHERE jobname IN ('telemetry_snapshot', 'telemetry_sample', 'telemetry_cleanup');
\endif
DROP SCHEMA IF EXISTS telemetry CASCADE;
