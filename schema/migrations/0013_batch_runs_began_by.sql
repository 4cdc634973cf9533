-- A batch job's role marks its own runs and nothing else (docs/security.md).
--
-- The role whose session began each run (session_user): batch_end and a later batch_begin
-- close only runs their role began, unless it is the exporter's or the owner's
-- (batch/batchsql/runs.sql). NULL for runs begun before this column.
ALTER TABLE telemetry.batch_runs ADD COLUMN IF NOT EXISTS began_by name;

-- docs/roles.sql used to give telemetry_writer, the batch jobs' role, every table and
-- function of the schema (the thresholds, schema_migrations, partitions, other batches'
-- runs), and the same on whatever the owner created later: taken back here, so that an
-- upgrade closes it without waiting for roles.sql to be run again; it keeps batch_begin and
-- batch_end. The exporter's role is now telemetry_recorder. Only what was granted is
-- revoked (a REVOKE would write out the default privileges of every other object too):
-- roles belong to the cluster, telemetry_writer may exist from another database's setup.
DO $$
DECLARE
    v_owner text := (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'telemetry');
    v_object record;
BEGIN
    IF to_regrole('telemetry_writer') IS NULL THEN
        RETURN;
    END IF;
    FOR v_object IN
        SELECT CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind, c.oid::regclass::text AS name
        FROM pg_class c, aclexplode(c.relacl) a
        WHERE c.relnamespace = 'telemetry'::regnamespace AND a.grantee = 'telemetry_writer'::regrole
        UNION
        SELECT 'FUNCTION', p.oid::regprocedure::text
        FROM pg_proc p, aclexplode(p.proacl) a
        WHERE p.pronamespace = 'telemetry'::regnamespace AND a.grantee = 'telemetry_writer'::regrole
          AND p.proname NOT IN ('batch_begin', 'batch_end')
    LOOP
        EXECUTE format('REVOKE ALL ON %s %s FROM telemetry_writer', v_object.kind, v_object.name);
    END LOOP;
    IF EXISTS (SELECT FROM pg_default_acl d, aclexplode(d.defaclacl) a
               WHERE d.defaclnamespace = 'telemetry'::regnamespace AND d.defaclrole = v_owner::regrole
                 AND a.grantee = 'telemetry_writer'::regrole) THEN
        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %s IN SCHEMA telemetry REVOKE ALL ON TABLES FROM telemetry_writer', v_owner);
        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %s IN SCHEMA telemetry REVOKE ALL ON SEQUENCES FROM telemetry_writer', v_owner);
        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %s IN SCHEMA telemetry REVOKE ALL ON FUNCTIONS FROM telemetry_writer', v_owner);
    END IF;
END
$$;
