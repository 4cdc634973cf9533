-- throwaway: a pattern that exists for recorder.TestThrowawayPatternThroughItsFolder, added to
-- diagnose by this folder alone (a pattern's folder holds its thresholds and its rule).

INSERT INTO telemetry.diagnose_thresholds (name, value, unit, description) VALUES
    ('throwaway_samples_warning', 1, 'samples', 'A test pattern: warning from this many samples in the window.')
ON CONFLICT (name) DO UPDATE SET unit = excluded.unit, description = excluded.description;

CREATE OR REPLACE FUNCTION telemetry._pattern_throwaway(p_start_time timestamptz, p_end_time timestamptz,
                                                        p_snapshot_start timestamptz, p_server text, p_shared jsonb)
RETURNS TABLE (pattern text, severity text, score numeric, summary text, evidence jsonb, recommendation text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT 'throwaway', telemetry._severity(c.samples, telemetry._threshold('throwaway_samples_warning'), 1e9),
           c.samples / telemetry._threshold('throwaway_samples_warning'),
           format('%s samples in the window.', c.samples),
           jsonb_build_object('samples', c.samples, 'waits', jsonb_array_length(p_shared->'waits')),
           'Nothing to do: a test pattern.'
    FROM telemetry._window_sample_counts(p_start_time, p_end_time, p_server) c
    WHERE c.samples > 0
$$;
