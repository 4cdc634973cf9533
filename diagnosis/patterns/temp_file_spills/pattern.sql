-- temp_file_spills: temporary file bytes written in the window, and the statements seen
-- waiting on them.

INSERT INTO telemetry.diagnose_thresholds (name, value, unit, description) VALUES
    ('temp_bytes_warning', 67108864, 'bytes', 'Temporary file bytes written in the window: warning.'),
    ('temp_bytes_critical', 1073741824, 'bytes', 'Temporary file bytes: critical.')
ON CONFLICT (name) DO UPDATE SET unit = excluded.unit, description = excluded.description;

CREATE OR REPLACE FUNCTION telemetry._pattern_temp_file_spills(p_start_time timestamptz, p_end_time timestamptz,
                                                               p_snapshot_start timestamptz, p_server text, p_shared jsonb)
RETURNS TABLE (pattern text, severity text, score numeric, summary text, evidence jsonb, recommendation text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH
    cmp AS (SELECT * FROM telemetry._shared_compare(p_shared)),
    -- Few rows, read by their partial index.
    spillers AS (
        SELECT a.query_preview, count(*) AS samples
        FROM telemetry.activity_samples a
        WHERE a.server = p_server AND a.captured_at BETWEEN p_start_time AND p_end_time
          AND a.wait_event IN ('BufFileWrite', 'BufFileRead') GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 3)
    SELECT 'temp_file_spills',
           telemetry._severity(c.temp_bytes_delta, telemetry._threshold('temp_bytes_warning'), telemetry._threshold('temp_bytes_critical')),
           c.temp_bytes_delta / telemetry._threshold('temp_bytes_warning'),
           format('%s temporary file(s), %s written: sorts or hashes did not fit in work_mem.', c.temp_files_delta, c.temp_bytes_pretty),
           jsonb_build_object('temp_files_delta', c.temp_files_delta, 'temp_bytes_delta', c.temp_bytes_delta,
                              'temp_bytes_pretty', c.temp_bytes_pretty,
                              'spilling_queries', (SELECT jsonb_agg(to_jsonb(s) ORDER BY s.samples DESC, s.query_preview) FROM spillers s)),
           'Raise work_mem for the batch''s session (SET work_mem, or ALTER ROLE ... SET work_mem), or hash_mem_multiplier for hash joins and aggregates; log_temp_files = 0 names the statements that spill.'
    FROM cmp c WHERE c.temp_bytes_delta > 0;
END
$$;
