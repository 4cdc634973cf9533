-- Vacuum progress by hour and by day (issue 22): autovacuum_interference counted a window's
-- samples that saw a vacuum from the raw progress rows, 86,000 a month at a vacuum in every
-- sample (150 ms and more of diagnose over 30 days). A row here is, per bucket, one picture of
-- the vacuums a sample saw (its distinct [relid, relname, phase] rows, a jsonb array in jsonb's
-- order) and how many of the bucket's samples saw exactly that: a window's samples by table,
-- their phases, and its samples with a vacuum on a table tracked when it is read all follow
-- exactly. A busy hour has a handful of pictures. The picture's 64-bit hash is in the key in
-- its place (no unbounded values in keys, 0012). Written as each sample is
-- (telemetry._rollup_add), read by telemetry._window_vacuums.
CREATE TABLE IF NOT EXISTS telemetry.vacuum_rollups (
    server text NOT NULL,
    bucket interval NOT NULL,           -- 1 hour or 1 day
    captured_at timestamptz NOT NULL,   -- the bucket's start
    vacuums_hash bigint NOT NULL,
    vacuums jsonb NOT NULL,
    samples integer NOT NULL,
    PRIMARY KEY (server, bucket, captured_at, vacuums_hash)
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
        EXECUTE format('CREATE TABLE IF NOT EXISTS telemetry.%I PARTITION OF telemetry.vacuum_rollups FOR VALUES FROM (%L) TO (%L)',
            'vacuum_rollups_d' || to_char(v_day, 'YYYYMMDD'),
            v_day::timestamp AT TIME ZONE 'UTC', (v_day + 1)::timestamp AT TIME ZONE 'UTC');
    END LOOP;
END
$$;

-- The progress recorded where each server's rollups are complete, summed as the recorder now
-- does (sql/rollups.sql, not defined yet while migrations run: telemetry._raw_vacuums' picture
-- here too). Writers of progress rows wait until this commits, with the functions that add
-- their samples' vacuums: none is left out.
LOCK TABLE telemetry.progress_samples IN SHARE MODE;
INSERT INTO telemetry.vacuum_rollups (server, bucket, captured_at, vacuums_hash, vacuums, samples)
SELECT v.server, b.width, date_bin(b.width, v.captured_at, timestamptz '1970-01-01 00:00:00+00'),
       hashtextextended(v.vacuums::text, 0), v.vacuums, count(*)
FROM (SELECT p.server, p.captured_at, jsonb_agg(DISTINCT jsonb_build_array(p.relid, p.relname, p.phase)) AS vacuums
      FROM telemetry.progress_samples p JOIN telemetry.rollup_coverage c ON c.server = p.server AND p.captured_at >= c.since
      WHERE p.progress_type = 'vacuum'
      GROUP BY p.server, p.sample_id, p.captured_at) v,
     (VALUES (interval '1 hour'), (interval '1 day')) b (width)
GROUP BY 1, 2, 3, 4, 5;
