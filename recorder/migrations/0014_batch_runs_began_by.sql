-- A batch job's role marks its own runs and nothing else (docs/security.md).
--
-- The role whose session began each run (session_user): batch_end and a later batch_begin
-- close only runs their role began, unless it is the exporter's or the owner's
-- (batch/batchsql/runs.sql). NULL for runs begun before this column.
ALTER TABLE telemetry.batch_runs ADD COLUMN IF NOT EXISTS began_by name;

-- docs/roles.sql used to give telemetry_writer, the batch jobs' role, every table and
-- function of the schema (the thresholds, schema_migrations, partitions, other batches'
-- runs), and the same on whatever the owner created later: taken back here, so that an
-- upgrade closes it without waiting for roles.sql to be run again. The exporter's role is
-- now telemetry_recorder. Roles belong to the cluster: telemetry_writer may exist from
-- another database's setup, and batch_begin not yet on a first install.
DO $$
DECLARE
    v_owner text := (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'telemetry');
BEGIN
    IF to_regrole('telemetry_writer') IS NULL THEN
        RETURN;
    END IF;
    REVOKE ALL ON ALL TABLES IN SCHEMA telemetry FROM telemetry_writer;
    REVOKE ALL ON ALL SEQUENCES IN SCHEMA telemetry FROM telemetry_writer;
    REVOKE ALL ON ALL FUNCTIONS IN SCHEMA telemetry FROM telemetry_writer;
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %s IN SCHEMA telemetry REVOKE ALL ON TABLES FROM telemetry_writer', v_owner);
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %s IN SCHEMA telemetry REVOKE ALL ON SEQUENCES FROM telemetry_writer', v_owner);
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %s IN SCHEMA telemetry REVOKE ALL ON FUNCTIONS FROM telemetry_writer', v_owner);
    IF to_regproc('telemetry.batch_begin') IS NOT NULL AND to_regproc('telemetry.batch_end') IS NOT NULL THEN
        GRANT EXECUTE ON FUNCTION telemetry.batch_begin, telemetry.batch_end TO telemetry_writer;
    END IF;
END
$$;
