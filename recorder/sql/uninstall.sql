-- Removes pg_cron mode: the jobs, their run history and the telemetry schema with all data.
-- psql -f recorder/sql/uninstall.sql
\set ON_ERROR_STOP on
SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') AS has_cron \gset
\if :has_cron
CREATE TEMPORARY TABLE telemetry_jobs AS
SELECT jobid FROM cron.job WHERE jobname IN ('telemetry_snapshot', 'telemetry_sample', 'telemetry_cleanup', 'telemetry_settle');
SELECT count(cron.unschedule(jobid)) AS unscheduled_jobs FROM telemetry_jobs;
\endif
-- A job still running holds locks on the tables: take them first, in the order the jobs do
-- (snapshots or samples, then tracked_tables), so that uninstall waits instead of deadlocking.
BEGIN;
SELECT to_regclass('telemetry.snapshots') IS NOT NULL AS has_schema \gset
\if :has_schema
LOCK TABLE telemetry.snapshots, telemetry.samples, telemetry.tracked_tables IN ACCESS EXCLUSIVE MODE;
\endif
DROP SCHEMA IF EXISTS telemetry CASCADE;
COMMIT;
\if :has_cron
-- After the drop: a job that was running has finished and logged its run by now.
DELETE FROM cron.job_run_details WHERE jobid IN (SELECT jobid FROM telemetry_jobs);
\endif
