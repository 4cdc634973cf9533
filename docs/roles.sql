-- The telemetry schema's roles (docs/security.md): run with psql as a superuser (or a role
-- with CREATEROLE that owns the schema) in the recorder's database, after the schema is
-- installed (the exporter's first start with --recorder.enabled, or sql/install.sql), and
-- again after an upgrade that brings new migrations. Re-running it is safe.
--
--   telemetry_recorder  the exporter's role, where it does not own the schema: writes
--                       collections (SELECT/INSERT/UPDATE/DELETE on the tables), runs every
--                       function (partitions, retention, track_table, cleanup, every run).
--                       The thresholds and schema_migrations it only reads: they are the owner's.
--   telemetry_writer    a batch job's role: batch_begin and batch_end (pg-batch-exporter
--                       exec calls them), which close only the runs this role began. Nothing
--                       else: no table, no other function that writes.
--   telemetry_reader    reads: Grafana, analysts. USAGE on the schema, SELECT on its tables and
--                       views, and the read functions (compare, table_compare, wait_summary,
--                       client_wait_summary, diagnose, diagnose_run, list_tracked_tables, ...),
--                       which PUBLIC may execute. It cannot write, create or drop anything.
--
-- Then give them to login roles, e.g.:
--   CREATE ROLE pgbatch LOGIN PASSWORD '...'; GRANT pg_monitor, telemetry_recorder TO pgbatch;
--   CREATE ROLE nightly LOGIN PASSWORD '...'; GRANT telemetry_writer TO nightly;
--   CREATE ROLE grafana LOGIN PASSWORD '...'; GRANT telemetry_reader TO grafana;
\set ON_ERROR_STOP on
SET search_path = pg_catalog, pg_temp;

-- A role that exists already is used only if it is what this script makes: NOLOGIN, no
-- attributes, a member of no role, and administered by no role but the one running this (a
-- CREATEROLE role that created it keeps ADMIN OPTION on it, PostgreSQL 16 on, and could hand
-- the writer's rights to anyone, or take them). Anything else stops here, saying what. (Its
-- members are not judged: after the first run they are the login roles given it. On
-- PostgreSQL 15 any CREATEROLE role may administer every role that is not a superuser.)
DO $$
DECLARE
    v_role text;
    v_wrong text;
BEGIN
    FOREACH v_role IN ARRAY ARRAY['telemetry_writer', 'telemetry_reader', 'telemetry_recorder'] LOOP
        IF to_regrole(v_role) IS NULL THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', v_role);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL; -- created meanwhile by another session running this file: checked below
            END;
        END IF;
        SELECT concat_ws('; ',
                   'it has ' || nullif(concat_ws(' ', CASE WHEN r.rolsuper THEN 'SUPERUSER' END, CASE WHEN r.rolcanlogin THEN 'LOGIN' END,
                                    CASE WHEN r.rolcreaterole THEN 'CREATEROLE' END, CASE WHEN r.rolcreatedb THEN 'CREATEDB' END,
                                    CASE WHEN r.rolreplication THEN 'REPLICATION' END, CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END), ''),
                   (SELECT 'it is a member of ' || string_agg(m.roleid::regrole::text, ', ')
                    FROM pg_auth_members m WHERE m.member = r.oid),
                   (SELECT string_agg(m.member::regrole::text, ', ') || ' may administer it (ADMIN OPTION)'
                    FROM pg_auth_members m WHERE m.roleid = r.oid AND m.admin_option AND m.member <> current_user::regrole))
        INTO v_wrong
        FROM pg_roles r WHERE r.rolname = v_role;
        IF v_wrong <> '' THEN
            RAISE EXCEPTION 'role % exists and is not what docs/roles.sql makes: %', v_role, v_wrong
                USING HINT = format('If it is yours, fix it (ALTER ROLE %1$s NOLOGIN ...; REVOKE %1$s FROM <the role that administers it>) or drop it (DROP ROLE %1$s), then run this again.', v_role);
        END IF;
    END LOOP;
END
$$;

GRANT USAGE ON SCHEMA telemetry TO telemetry_recorder, telemetry_writer, telemetry_reader;

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA telemetry TO telemetry_recorder;
REVOKE INSERT, UPDATE, DELETE ON telemetry.diagnose_thresholds, telemetry.schema_migrations FROM telemetry_recorder;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA telemetry TO telemetry_recorder;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA telemetry TO telemetry_recorder;

-- Exactly its two functions (what earlier versions of this file gave it, migration 0013 took back).
GRANT EXECUTE ON FUNCTION telemetry.batch_begin, telemetry.batch_end TO telemetry_writer;

GRANT SELECT ON ALL TABLES IN SCHEMA telemetry TO telemetry_reader;

-- Tables and functions that later migrations create, as the schema's owner, get the same.
DO $$
DECLARE
    v_owner text := (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'telemetry');
BEGIN
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %s IN SCHEMA telemetry GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO telemetry_recorder', v_owner);
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %s IN SCHEMA telemetry GRANT USAGE ON SEQUENCES TO telemetry_recorder', v_owner);
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %s IN SCHEMA telemetry GRANT EXECUTE ON FUNCTIONS TO telemetry_recorder', v_owner);
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %s IN SCHEMA telemetry GRANT SELECT ON TABLES TO telemetry_reader', v_owner);
END
$$;
