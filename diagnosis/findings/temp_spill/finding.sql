-- temp_spill: the batch's statements spilled to temporary files more than usual: their time
-- waiting on temporary file I/O (IO:BufFile*), and the whole time of a statement whose
-- temporary blocks written per call (pg_stat_statements, of an entry whose time is the
-- batch's own) reached temp_spill_ratio times its baseline median, or that wrote some where
-- its baseline runs wrote none: a sort or hash that no longer fits in work_mem.
INSERT INTO telemetry.diagnose_thresholds (name, value, unit, description) VALUES
    ('temp_spill_ratio', 2, 'ratio',
     'temp_spill: a statement spills more than usual when its temporary blocks written per call are at least this many times its baseline median (or it wrote some where its baseline wrote none).')
ON CONFLICT (name) DO UPDATE SET unit = excluded.unit, description = excluded.description;

CREATE OR REPLACE FUNCTION telemetry._finding_temp_spill(p_run_id bigint, p_account jsonb)
RETURNS TABLE (finding text, severity text, summary text, evidence jsonb, recommendation text, explained_seconds numeric, children jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH top AS (SELECT r.query, r.queryid, r.statistics AS s FROM telemetry._account_rows(p_account, 'temp_spill') r
                 WHERE r.statistics IS NOT NULL ORDER BY r.extra_seconds DESC LIMIT 1)
    SELECT f.* FROM telemetry._cause_finding(p_account, 'temp_spill', 'The batch''s statements spilled to temporary files',
        (SELECT format('"%s" wrote %s of temporary files per call (baseline %s), %s per call (baseline %s).',
                       telemetry._statement_label(top.query, top.queryid),
                       telemetry._pretty_bytes(((top.s->>'temp_per_call')::numeric * current_setting('block_size')::numeric)::bigint),
                       telemetry._pretty_bytes((coalesce((top.s->>'baseline_temp_per_call')::numeric, 0) * current_setting('block_size')::numeric)::bigint),
                       (telemetry._call_times(top.s))[1], (telemetry._call_times(top.s))[2])
         FROM top),
        (SELECT jsonb_build_object('temp_bytes_per_call', ((top.s->>'temp_per_call')::numeric * current_setting('block_size')::numeric)::bigint,
                                   'baseline_temp_bytes_per_call', (coalesce((top.s->>'baseline_temp_per_call')::numeric, 0) * current_setting('block_size')::numeric)::bigint)
         FROM top),
        'A sort or hash of the statement no longer fits in work_mem: check what its plan sorts or hashes (EXPLAIN (ANALYZE, BUFFERS): "external merge", "Batches"), whether its input grew or work_mem was lowered (SET in the batch, ALTER ROLE), and raise work_mem for the batch''s session alone if the input is expected.') f
$$;
