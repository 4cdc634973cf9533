-- autovacuum_interference's measures for diagnose_run: autovacuums finished on the tracked
-- tables (where the window has compare()'s row), and the time a vacuum ran on one (where it
-- has samples: those seeing one, times their spacing).

CREATE OR REPLACE FUNCTION telemetry._measures_autovacuum_interference(p_start_time timestamptz, p_end_time timestamptz,
    p_snapshot_start timestamptz, p_server text, p_shared jsonb)
RETURNS TABLE (measure text, unit text, value numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH n AS (SELECT c.samples AS n, extract(epoch FROM p_end_time - p_start_time) / nullif(c.samples, 0) AS spacing
               FROM telemetry._shared_sample_counts(p_shared, p_start_time, p_end_time, p_server) c)
    SELECT 'autovacuums', 'count',
           coalesce((SELECT sum(tc.autovacuum_count_delta) FROM (SELECT array_agg(schemaname) AS schemas, array_agg(relname) AS tables FROM telemetry.tracked_tables) t,
                            telemetry._tables_compare(t.schemas, t.tables, p_snapshot_start, p_end_time, p_server) tc), 0)
    FROM telemetry._shared_compare(p_shared) c
    UNION ALL
    SELECT 'vacuum_seconds', 'seconds',
           round(coalesce((SELECT sum(v.samples) FROM telemetry._window_vacuums(p_start_time, p_end_time, p_server) v
                           WHERE v.tracked), 0) * n.spacing, 2)
    FROM n WHERE n.n > 0
$$;
