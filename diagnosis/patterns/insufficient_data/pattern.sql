-- insufficient_data: too little recorded in the window to judge the snapshot-based patterns
-- (no snapshot at one of its ends) or the sample-based ones (fewer samples than min_samples).

INSERT INTO telemetry.diagnose_thresholds (name, value, unit, description) VALUES
    ('min_samples', 3, 'samples',
     'Fewer samples in the window: locks, waits and vacuum progress cannot be judged.')
ON CONFLICT (name) DO UPDATE SET unit = excluded.unit, description = excluded.description;

CREATE OR REPLACE FUNCTION telemetry._pattern_insufficient_data(p_start_time timestamptz, p_end_time timestamptz,
                                                                p_snapshot_start timestamptz, p_server text, p_shared jsonb)
RETURNS TABLE (pattern text, severity text, score numeric, summary text, evidence jsonb, recommendation text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH
    cmp AS (SELECT * FROM telemetry._shared_compare(p_shared)),
    before_start AS (SELECT max(captured_at) AS at FROM telemetry.snapshots
                     WHERE server = p_server AND captured_at <= p_snapshot_start),
    after_end AS (SELECT min(captured_at) AS at FROM telemetry.snapshots WHERE server = p_server AND captured_at >= p_end_time),
    nsmp AS (SELECT c.samples AS n FROM telemetry._shared_sample_counts(p_shared, p_start_time, p_end_time, p_server) c)
    SELECT 'insufficient_data' AS pattern, 'warning' AS severity, 100::numeric AS score,
           concat_ws(' ',
               CASE WHEN NOT EXISTS (SELECT FROM cmp) THEN
                   CASE WHEN (SELECT at FROM before_start) IS NULL
                        THEN format('No snapshot at or before %s, so checkpoints, WAL, buffers, temp files and table vacuums cannot be judged.', telemetry._ts(p_snapshot_start))
                        ELSE format('No snapshot at or after %s (the last is %s), so checkpoints, WAL, buffers, temp files and table vacuums cannot be judged.', telemetry._ts(p_end_time), coalesce(telemetry._ts((SELECT max(captured_at) FROM telemetry.snapshots WHERE server = p_server)), 'none')) END
               END,
               CASE WHEN (SELECT n FROM nsmp) < telemetry._threshold('min_samples') THEN
                   format('Only %s samples between %s and %s (at least %s needed), so locks, waits and vacuum progress cannot be judged.',
                          (SELECT n FROM nsmp), telemetry._ts(p_start_time), telemetry._ts(p_end_time), telemetry._threshold('min_samples'))
               END) AS summary,
           jsonb_build_object('start_snapshot_at', (SELECT at FROM before_start), 'end_snapshot_at', (SELECT at FROM after_end),
                              'samples', (SELECT n FROM nsmp), 'min_samples', telemetry._threshold('min_samples')) AS evidence,
           CASE WHEN (SELECT n FROM nsmp) < telemetry._threshold('min_samples') AND ((SELECT n FROM nsmp) > 0 OR EXISTS (SELECT FROM cmp)) THEN
               -- The recorder is recording: what is missing is sample-tier cadence for a window this short.
               format('The recorder is running, but this window (%s s) spans %s sample-tier collections and at least %s are needed: for runs this short, lower --tier.sample-interval to %s s or less (in pg_cron mode, schedule telemetry.sample() that often), or diagnose a longer window.',
                      round(extract(epoch FROM p_end_time - p_start_time)::numeric, 1), (SELECT n FROM nsmp), telemetry._threshold('min_samples'),
                      greatest(floor(extract(epoch FROM p_end_time - p_start_time) / telemetry._threshold('min_samples'))::int, 1))
           ELSE 'Is the recorder running for this server? Take a snapshot at the batch''s boundaries (telemetry.batch_begin/batch_end do), and sample more often than the batch is long.' END AS recommendation
    WHERE NOT EXISTS (SELECT FROM cmp) OR (SELECT n FROM nsmp) < telemetry._threshold('min_samples');
END
$$;
