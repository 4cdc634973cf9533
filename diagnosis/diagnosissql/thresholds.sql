-- The settings of diagnose and of the batch functions: telemetry.diagnose_thresholds (the table:
-- recorder/migrations/0002_batch_runs.sql) is diagnosis's; each owner's definitions insert
-- their defaults (ON CONFLICT keeps an operator's value), every reader goes through
-- _threshold. Applied before batch runs' definitions, which read their settings with it.

-- _threshold reads a setting within the range its unit allows, a value outside it (or NaN) as
-- the nearest bound: the table is the owner's, yet a negative baseline_runs or a min_samples
-- of 0 (a divisor) must never make a diagnosis fail. Every bound is above 0, as the patterns
-- divide by their thresholds.
CREATE OR REPLACE FUNCTION telemetry._threshold(p_name text) RETURNS numeric
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT greatest(b.low, least(b.high, CASE WHEN t.value = 'NaN' THEN b.low ELSE t.value END))
    FROM telemetry.diagnose_thresholds t,
    LATERAL (SELECT CASE WHEN t.unit LIKE 'percent%' OR t.unit IN ('seconds', 'ratio') THEN 0.001 ELSE 1 END AS low,
                    CASE WHEN t.unit LIKE 'percent%' THEN 100
                         WHEN t.unit = 'seconds' THEN 31622400 -- 366 days
                         WHEN t.unit IN ('ratio', 'runs', 'samples') THEN 1000
                         ELSE 1e15 END AS high) b
    WHERE t.name = p_name
$$;
