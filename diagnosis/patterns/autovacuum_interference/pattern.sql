-- autovacuum_interference: vacuum in progress on the window's samples, autovacuums and
-- autoanalyzes that finished on a tracked table.

INSERT INTO telemetry.diagnose_thresholds (name, value, unit, description) VALUES
    ('vacuum_pct_warning', 1, 'percent of samples',
     'Samples with a vacuum running on a tracked table: warning (an autovacuum that finished on one also warns).'),
    ('vacuum_pct_critical', 25, 'percent of samples', 'Samples with a vacuum running on a tracked table: critical at this share.')
ON CONFLICT (name) DO UPDATE SET unit = excluded.unit, description = excluded.description;

CREATE OR REPLACE FUNCTION telemetry._pattern_autovacuum_interference(p_start_time timestamptz, p_end_time timestamptz,
                                                                      p_snapshot_start timestamptz, p_server text, p_shared jsonb)
RETURNS TABLE (pattern text, severity text, score numeric, summary text, evidence jsonb, recommendation text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH
    nsmp AS (SELECT c.samples AS n FROM telemetry._shared_sample_counts(p_shared, p_start_time, p_end_time, p_server) c),
    -- The window's pictures of vacuums (a sample's [relid, relname, phase] rows), each with the
    -- samples that saw it: from the rollups.
    vacuums AS (SELECT * FROM telemetry._window_vacuums(p_start_time, p_end_time, p_server)),
    -- By table: the samples whose picture has it (once a picture: its first phase there), the
    -- phases it was seen in; each picture's rows read once.
    vac AS (
        SELECT t.relid, t.relname, t.relid IN (SELECT relid FROM telemetry.tracked_tables) AS tracked,
               sum(v.samples) FILTER (WHERE p.n = 1)::bigint AS samples, array_agg(DISTINCT p.phase) AS phases
        FROM vacuums v
        CROSS JOIN LATERAL (SELECT (e->>0)::oid AS relid, e->>1 AS relname, array_agg(e->>2) AS phases
                            FROM jsonb_array_elements(v.vacuums) e GROUP BY 1, 2) t
        CROSS JOIN LATERAL unnest(t.phases) WITH ORDINALITY p (phase, n)
        GROUP BY 1, 2, 3),
    tables AS (
        SELECT tc.* FROM (SELECT array_agg(schemaname) AS schemas, array_agg(relname) AS tables FROM telemetry.tracked_tables) t,
             telemetry._tables_compare(t.schemas, t.tables, p_snapshot_start, p_end_time, p_server) tc)
    SELECT 'autovacuum_interference',
           CASE WHEN x.pct_tracked >= telemetry._threshold('vacuum_pct_critical') THEN 'critical'
                WHEN x.pct_tracked >= telemetry._threshold('vacuum_pct_warning') OR x.autovacuums > 0 THEN 'warning'
                ELSE 'info' END,
           greatest(x.pct_tracked / telemetry._threshold('vacuum_pct_warning'), CASE WHEN x.autovacuums > 0 THEN 1 ELSE 0.1 END),
           format('Vacuum ran on %s during %s%% of samples; on tracked tables %s autovacuum(s) finished and %s autoanalyze(s).',
                  coalesce((SELECT string_agg(DISTINCT coalesce(relname, relid::text), ', ') FROM vac), 'no table'),
                  x.pct_any, x.autovacuums, x.autoanalyzes),
           jsonb_build_object('samples', nsmp.n, 'pct_of_samples_tracked', x.pct_tracked, 'pct_of_samples_any', x.pct_any,
                              'vacuums', (SELECT jsonb_agg(to_jsonb(v) ORDER BY v.relid, v.relname) FROM vac v),
                              'tables', (SELECT jsonb_agg(jsonb_build_object('table_name', t.table_name, 'autovacuum_count_delta', t.autovacuum_count_delta,
                                                                             'autoanalyze_count_delta', t.autoanalyze_count_delta,
                                                                             'n_dead_tup_end', t.n_dead_tup_end, 'dead_tuple_ratio', t.dead_tuple_ratio))
                                         FROM tables t WHERE t.autovacuum_ran OR t.autoanalyze_ran)),
           'Keep autovacuum off the batch''s tables while it runs: vacuum them just before the batch (VACUUM (ANALYZE)), or tune their autovacuum thresholds or cost limits (ALTER TABLE ... SET (autovacuum_vacuum_cost_delay = ...)); never disable autovacuum for good.'
    -- Computed once (OFFSET 0 keeps the subquery: pulled up, each of its columns was computed
    -- again wherever the select list used it).
    FROM nsmp,
         LATERAL (SELECT coalesce(round(100.0 * v.tracked / nullif(nsmp.n, 0), 1), 0) AS pct_tracked,
                         coalesce(round(100.0 * v.any / nullif(nsmp.n, 0), 1), 0) AS pct_any,
                         coalesce((SELECT sum(autovacuum_count_delta) FROM tables), 0) AS autovacuums,
                         coalesce((SELECT sum(autoanalyze_count_delta) FROM tables), 0) AS autoanalyzes
                  FROM (SELECT coalesce(sum(s.samples) FILTER (WHERE s.tracked), 0) AS tracked, coalesce(sum(s.samples), 0) AS any
                        FROM vacuums s) v
                  OFFSET 0) x
    WHERE x.pct_any > 0 OR x.autovacuums > 0 OR x.autoanalyzes > 0;
END
$$;
