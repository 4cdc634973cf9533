-- Standbys' replay lag by hour (issue 22): replication_lag read every replication snapshot of a
-- window, 43,000 a month for one standby (30-40 ms of diagnose over 30 days). A row is, per
-- hour, a standby's (application_name and client_addr, either NULL) largest lag in bytes (sent
-- minus replayed) and in replay time: a window's largest per standby follow exactly. Its 64-bit
-- hash is in the key in their place (no unbounded values in keys, 0012). Written with the rows
-- (a trigger, telemetry._rollup_replication_rows), read by telemetry._window_replication.
CREATE TABLE IF NOT EXISTS telemetry.replication_rollups (
    server text NOT NULL,
    captured_at timestamptz NOT NULL,   -- the hour's start
    standby_hash bigint NOT NULL,
    application_name text,
    client_addr inet,
    max_lag_bytes numeric,
    max_replay_lag interval,
    PRIMARY KEY (server, captured_at, standby_hash)
) PARTITION BY RANGE (captured_at);

-- The days recorded so far get their partition now: the recorder makes a day's partitions
-- once, with its first collection of the day.
DO $$
DECLARE
    v_day date;
BEGIN
    FOR v_day IN
        SELECT to_date(substring(c.relname from '_d([0-9]{8})$'), 'YYYYMMDD')
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'telemetry.samples'::regclass
    LOOP
        EXECUTE format('CREATE TABLE IF NOT EXISTS telemetry.%I PARTITION OF telemetry.replication_rollups FOR VALUES FROM (%L) TO (%L)',
            'replication_rollups_d' || to_char(v_day, 'YYYYMMDD'),
            v_day::timestamp AT TIME ZONE 'UTC', (v_day + 1)::timestamp AT TIME ZONE 'UTC');
    END LOOP;
END
$$;

-- The snapshots recorded so far, rolled up as the trigger now does for every server (sql/rollups.sql,
-- not defined yet while migrations run: the standby's hash here too), whether its rollups are
-- complete or not: a server's coverage may later reach back over them (rollup_rebuild).
-- Writers of replication rows wait until this commits, with the trigger: none is left out.
LOCK TABLE telemetry.replication_snapshots IN SHARE MODE;
INSERT INTO telemetry.replication_rollups (server, captured_at, standby_hash, application_name, client_addr, max_lag_bytes, max_replay_lag)
SELECT r.server, date_bin('1 hour', r.captured_at, timestamptz '1970-01-01 00:00:00+00'),
       hashtextextended(jsonb_build_array(r.application_name, r.client_addr)::text, 0), r.application_name, r.client_addr,
       max(pg_wal_lsn_diff(r.sent_lsn, r.replay_lsn)), max(r.replay_lag)
FROM telemetry.replication_snapshots r
GROUP BY 1, 2, 3, 4, 5;
