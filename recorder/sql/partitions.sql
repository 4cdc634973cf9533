-- Day partitions: which tables are partitioned, creating a day's partitions, dropping old days.

-- The partitioned tables, parents before their children, as the catalog has them: every
-- partitioned table of the schema; one with a snapshot_id or sample_id column is a child of
-- snapshots or samples. A table added by a migration gets day partitions and retention with
-- nothing more to list. (Migrate and the readers trust the schema only when its owner is.)
CREATE OR REPLACE FUNCTION telemetry._partitioned_tables()
RETURNS TABLE (table_name text, parent text, parent_key text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT c.relname::text, k.parent, k.key
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN LATERAL (
        SELECT CASE a.attname WHEN 'snapshot_id' THEN 'snapshots' ELSE 'samples' END AS parent, a.attname::text AS key
        FROM pg_attribute a
        WHERE a.attrelid = c.oid AND a.attname IN ('snapshot_id', 'sample_id') AND a.attnum > 0 AND NOT a.attisdropped) k ON true
    WHERE n.nspname = 'telemetry' AND c.relkind = 'p' AND NOT c.relispartition
    -- The order partitions are made in, as the tables were (snapshots and its children before
    -- samples and theirs): each day's CREATE ... PARTITION OF locks its parent exclusively,
    -- and readers lock snapshots before samples, so another order could deadlock with them.
    ORDER BY k.parent IS NOT NULL, k.parent DESC, c.oid
$$;

-- _ensure_partitions creates the day partitions (UTC days) holding p_at, each child with a
-- foreign key to its parent's partition of the same day (ON DELETE CASCADE, as in the seed).
-- SECURITY DEFINER: only the schema's owner may add partitions; a recorder role needs no more
-- than INSERT on the tables. Whoever calls, days after tomorrow (UTC, by this server's clock)
-- are refused: retention drops only past days, so partitions made ahead would stay, every
-- query planning over them.
CREATE OR REPLACE FUNCTION telemetry._ensure_partitions(p_at timestamptz)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_day date := (p_at AT TIME ZONE 'UTC')::date;
    v_suffix text := '_d' || to_char(v_day, 'YYYYMMDD');
    t record;
BEGIN
    IF v_day > (now() AT TIME ZONE 'UTC')::date + 1 THEN
        RAISE EXCEPTION 'no partitions for %: at most one day (UTC) ahead of this server''s clock', v_day
            USING ERRCODE = 'datetime_field_overflow';
    END IF;
    IF NOT EXISTS (SELECT FROM telemetry._partitioned_tables() p
                   WHERE to_regclass('telemetry.' || p.table_name || v_suffix) IS NULL) THEN
        RETURN; -- the day is complete
    END IF;
    -- Serialises recorders and pg_cron jobs creating the same day.
    PERFORM pg_advisory_xact_lock(hashtext('telemetry._ensure_partitions'));
    FOR t IN SELECT * FROM telemetry._partitioned_tables() LOOP
        IF to_regclass('telemetry.' || t.table_name || v_suffix) IS NULL THEN
            -- An advisory lock does not make this session read the catalog afresh: a partition
            -- another session just committed may still look absent. Caught, it leaves no ERROR
            -- in the server log.
            BEGIN
                EXECUTE format('CREATE TABLE telemetry.%I PARTITION OF telemetry.%I FOR VALUES FROM (%L) TO (%L)',
                    t.table_name || v_suffix, t.table_name,
                    v_day::timestamp AT TIME ZONE 'UTC', (v_day + 1)::timestamp AT TIME ZONE 'UTC');
                IF t.parent IS NOT NULL THEN
                    EXECUTE format('ALTER TABLE telemetry.%I ADD FOREIGN KEY (%I, captured_at) REFERENCES telemetry.%I (id, captured_at) ON DELETE CASCADE',
                        t.table_name || v_suffix, t.parent_key, t.parent || v_suffix);
                END IF;
            EXCEPTION WHEN duplicate_table THEN
                NULL; -- made meanwhile, with its key
            END;
        END IF;
    END LOOP;
END
$$;
REVOKE EXECUTE ON FUNCTION telemetry._ensure_partitions(timestamptz) FROM PUBLIC;

-- _retention_lock is taken by what deletes recorded data (retention), for its transaction:
-- it waits for runs being settled (settle_run, which takes it shared), so that the stored
-- results it deletes with the data are all committed, and no run is settled meanwhile. It
-- writes nothing (any role may take an advisory lock): open to the reader like the rest.
CREATE OR REPLACE FUNCTION telemetry._retention_lock()
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_advisory_xact_lock(hashtext('telemetry.retention'), 0)
$$;

-- _drop_partitions_before drops the day partitions that end at or before p_cutoff, children
-- first, and returns how many days went. Dropping costs the same at any data size.
CREATE OR REPLACE FUNCTION telemetry._drop_partitions_before(p_cutoff timestamptz)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_day date;
    v_days integer := 0;
    v_dropped_until timestamptz; -- the end of the last day dropped
    t record;
BEGIN
    -- A cutoff in the past only drops less; one in the future is checked (not 'infinity').
    IF p_cutoff > now() THEN
        PERFORM telemetry._check_time(p_cutoff, 'the cutoff');
    END IF;
    PERFORM telemetry._retention_lock();
    FOR v_day IN
        SELECT DISTINCT to_date(substring(c.relname from '_d([0-9]{8})$'), 'YYYYMMDD') AS day
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent IN ('telemetry.snapshots'::regclass, 'telemetry.samples'::regclass)
        ORDER BY 1
    LOOP
        EXIT WHEN (v_day + 1)::timestamp AT TIME ZONE 'UTC' > p_cutoff;
        FOR t IN SELECT * FROM telemetry._partitioned_tables() ORDER BY parent IS NULL, table_name LOOP
            EXECUTE format('DROP TABLE IF EXISTS telemetry.%I', t.table_name || '_d' || to_char(v_day, 'YYYYMMDD'));
        END LOOP;
        v_days := v_days + 1;
        v_dropped_until := (v_day + 1)::timestamp AT TIME ZONE 'UTC';
    END LOOP;
    -- Stored results read from a day gone no longer hold (the run is read from what is left):
    -- those read from before the end of the last day dropped (none if no day was).
    IF v_dropped_until IS NOT NULL THEN
        DELETE FROM telemetry.run_results WHERE data_from < v_dropped_until;
    END IF;
    RETURN v_days;
END
$$;
REVOKE EXECUTE ON FUNCTION telemetry._drop_partitions_before(timestamptz) FROM PUBLIC;

-- _note_server records that a server was seen (the analysis functions' list of servers).
CREATE OR REPLACE FUNCTION telemetry._note_server(p_server text, p_system_identifier text, p_pg_version integer, p_at timestamptz)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO telemetry.servers (server, system_identifier, pg_version, last_seen)
    VALUES (p_server, p_system_identifier, p_pg_version, telemetry._check_time(p_at, 'the server''s last_seen'))
    ON CONFLICT (server) DO UPDATE SET system_identifier = excluded.system_identifier,
        pg_version = excluded.pg_version, last_seen = greatest(telemetry.servers.last_seen, excluded.last_seen)
$$;
REVOKE EXECUTE ON FUNCTION telemetry._note_server(text, text, integer, timestamptz) FROM PUBLIC;

-- _note_settings keeps the server's settings (collectors.SQLServerSettings) where they differ
-- from the latest kept at or before p_at: a row a change, not a snapshot. The catalogs
-- (functions, indexes: the Go exporter reads them at a batch's boundaries only) of the latest
-- kept hold for a document without them, which is compared without them (a minute's document
-- is small; the catalogs of a database of thousands of objects are not).
CREATE OR REPLACE FUNCTION telemetry._note_settings(p_server text, p_at timestamptz, p_settings jsonb)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    WITH last AS (SELECT s.settings FROM telemetry.server_settings s WHERE s.server = p_server AND s.captured_at <= p_at
                  ORDER BY s.captured_at DESC LIMIT 1)
    INSERT INTO telemetry.server_settings (server, captured_at, settings)
    SELECT p_server, telemetry._check_time(p_at, 'the settings'' time'),
           CASE WHEN p_settings ? 'functions' OR l.settings IS NULL THEN p_settings
                ELSE p_settings || jsonb_strip_nulls(jsonb_build_object('functions', l.settings -> 'functions', 'indexes', l.settings -> 'indexes')) END
    FROM (SELECT (SELECT settings FROM last) AS settings) l
    WHERE CASE WHEN p_settings ? 'functions' THEN l.settings IS DISTINCT FROM p_settings
               ELSE l.settings - 'functions' - 'indexes' IS DISTINCT FROM p_settings END
    ON CONFLICT DO NOTHING
$$;
REVOKE EXECUTE ON FUNCTION telemetry._note_settings(text, timestamptz, jsonb) FROM PUBLIC;
