-- Plans' analysis: the plans auto_explain logged of a run's own sessions (--plans.source)
-- against those of its baseline runs: run_plans and the plan findings of diagnose_run_findings
-- (the tables: schema/migrations/0018_plans.sql).

-- _run_plan_executions: the plans a run's own sessions logged during it: a session the wait
-- sampler saw as the batch's own (batch_wait_samples), the one that began the run, or one named
-- after the batch (exec's application_name). Another application's plans in the same window
-- are never the run's.
CREATE OR REPLACE FUNCTION telemetry._run_plan_executions(p_run_id bigint)
RETURNS SETOF telemetry.plan_executions
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT e.*
    FROM telemetry._run_window(p_run_id) w
    CROSS JOIN LATERAL (SELECT telemetry._resolve_server(w.server) AS server) srv
    JOIN telemetry.batch_runs r ON r.run_id = w.run_id
    -- A plan is read from the log after it was logged: its snapshot is not before the run.
    JOIN telemetry.plan_executions e ON e.server = srv.server AND e.captured_at >= w.start_time
                                    AND e.logged_at BETWEEN w.start_time AND w.end_time
    WHERE e.pid = r.backend_pid OR e.application_name = w.batch
       OR EXISTS (SELECT FROM telemetry.batch_wait_samples b
                  WHERE b.server = srv.server AND b.batch = w.batch AND b.own AND b.pid = e.pid
                    AND b.captured_at BETWEEN w.start_time AND w.end_time + interval '1 minute')
$$;

-- _plan_node_label names a node of a plan's shape as EXPLAIN does, briefly: its type, join
-- type (other than inner), strategy, index and relation.
CREATE OR REPLACE FUNCTION telemetry._plan_node_label(p_node jsonb)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT (p_node->>'node')
           || coalesce(' ' || nullif(nullif(p_node->>'join', ''), 'Inner'), '')
           || coalesce(' (' || nullif(nullif(p_node->>'strategy', ''), 'Plain') || ')', '')
           || coalesce(' using ' || nullif(p_node->>'index', ''), '')
           || coalesce(' on ' || nullif(p_node->>'relation', ''), '')
$$;

-- _plan_shape_line writes a plan's shape on one line, each node's children in brackets after
-- it: Aggregate(Hash Join(Seq Scan on b, Hash(Index Only Scan using a_pkey on a))).
CREATE OR REPLACE FUNCTION telemetry._plan_shape_line(p_nodes jsonb)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT string_agg(CASE WHEN n.prev IS NULL THEN '' WHEN n.depth > n.prev THEN '(' ELSE repeat(')', n.prev - n.depth) || ', ' END
                      || n.label, '' ORDER BY n.i)
           || repeat(')', coalesce((p_nodes->-1->>'depth')::int, 0))
    FROM (SELECT a.i, (a.x->>'depth')::int AS depth, lag((a.x->>'depth')::int) OVER (ORDER BY a.i) AS prev,
                 telemetry._plan_node_label(a.x) AS label
          FROM jsonb_array_elements(p_nodes) WITH ORDINALITY a(x, i)) n
$$;

-- _plan_outline is a plan's nodes as an outline: [{depth, label}], depth-first.
CREATE OR REPLACE FUNCTION telemetry._plan_outline(p_nodes jsonb)
RETURNS jsonb LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_agg(jsonb_build_object('depth', (a.x->>'depth')::int, 'label', telemetry._plan_node_label(a.x)) ORDER BY a.i)
    FROM jsonb_array_elements(p_nodes) WITH ORDINALITY a(x, i)
$$;

-- _plan_statements: a set of plan executions by statement and plan: the statement is the
-- session's top-level one (queryid, as pg_stat_statements and run_statements name it), the
-- planned one within it (a nested statement's own queryid, or its text's hash); for each
-- plan its executions, their time, the node whose estimate was furthest from its actual rows
-- (its position in the shape, both rows per loop), the settings it last ran with and its
-- parallel workers.
CREATE OR REPLACE FUNCTION telemetry._plan_statements(p_executions telemetry.plan_executions[])
RETURNS TABLE (queryid bigint, planned bigint, query_text text, plan_hash bigint, executions bigint, duration_ms numeric,
               worst_node integer, worst_estimated numeric, worst_actual numeric, settings jsonb,
               workers_planned bigint, workers_launched bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH e AS (
        SELECT x.*, coalesce(x.queryid, x.plan_queryid, hashtext(x.query_text)) AS stmt,
               coalesce(x.plan_queryid, hashtext(x.query_text)) AS planned
        FROM unnest(p_executions) x),
    worst AS (
        SELECT DISTINCT ON (e.stmt, e.planned, e.plan_hash) e.stmt, e.planned, e.plan_hash, n.i::int AS node,
               (n.r->>0)::numeric AS estimated, (n.r->>1)::numeric AS actual
        FROM e, LATERAL jsonb_array_elements(e.node_rows) WITH ORDINALITY n(r, i)
        WHERE n.r->>1 IS NOT NULL
        ORDER BY e.stmt, e.planned, e.plan_hash,
                 (greatest((n.r->>0)::numeric, (n.r->>1)::numeric) + 1) / (least((n.r->>0)::numeric, (n.r->>1)::numeric) + 1) DESC, n.i)
    SELECT e.stmt, e.planned, (array_agg(e.query_text ORDER BY e.logged_at DESC))[1], e.plan_hash, count(*),
           round(sum(e.duration_ms)::numeric, 3), w.node, w.estimated, w.actual,
           (array_agg(e.settings ORDER BY e.logged_at DESC))[1], sum(e.workers_planned), sum(e.workers_launched)
    FROM e LEFT JOIN worst w USING (stmt, planned, plan_hash)
    GROUP BY e.stmt, e.planned, e.plan_hash, w.node, w.estimated, w.actual
$$;

-- run_plans: each plan a run's own sessions logged (auto_explain, --plans.source) against its
-- baseline runs': the plan the baseline runs used most for the same statement, in how many of
-- them, and whether this run's shape is new to them (changed). Empty without plans captured.
CREATE OR REPLACE FUNCTION telemetry.run_plans(p_run_id bigint)
RETURNS TABLE (queryid bigint, planned bigint, query_text text, plan_hash bigint, executions bigint, duration_ms numeric,
               shape text, nodes jsonb, worst_node integer, worst_node_label text, worst_estimated numeric, worst_actual numeric,
               settings jsonb, workers_planned bigint, workers_launched bigint,
               baseline_runs integer, baseline_runs_with_plans integer, baseline_runs_with_shape integer,
               baseline_plan_hash bigint, baseline_shape text, baseline_nodes jsonb, baseline_settings jsonb, baseline_workers_launched numeric,
               changed boolean)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH w AS (SELECT telemetry._resolve_server(x.server) AS server FROM telemetry._run_window(p_run_id) x),
    cur AS (SELECT * FROM telemetry._plan_statements(ARRAY(SELECT e FROM telemetry._run_plan_executions(p_run_id) e))),
    base AS (SELECT b.run_id, s.* FROM telemetry._baseline_runs(p_run_id) b,
             LATERAL telemetry._plan_statements(ARRAY(SELECT e FROM telemetry._run_plan_executions(b.run_id) e)) s),
    -- The baseline's plan of each statement: the one most baseline runs used, then the most run.
    usual AS (
        SELECT DISTINCT ON (x.queryid, x.planned) x.queryid, x.planned, x.plan_hash, x.settings, x.launched
        FROM (SELECT b.queryid, b.planned, b.plan_hash, count(DISTINCT b.run_id) AS runs, sum(b.executions) AS executions,
                     (array_agg(b.settings ORDER BY b.run_id DESC))[1] AS settings,
                     percentile_cont(0.5) WITHIN GROUP (ORDER BY b.workers_launched::numeric / b.executions) AS launched
              FROM base b GROUP BY 1, 2, 3) x
        ORDER BY x.queryid, x.planned, x.runs DESC, x.executions DESC, x.plan_hash)
    SELECT c.queryid, c.planned, c.query_text, c.plan_hash, c.executions, c.duration_ms,
           telemetry._plan_shape_line(s.nodes), s.nodes, c.worst_node, telemetry._plan_node_label(s.nodes->(c.worst_node - 1)),
           c.worst_estimated, c.worst_actual, c.settings, c.workers_planned, c.workers_launched,
           (SELECT count(*)::int FROM telemetry._baseline_runs(p_run_id)),
           (SELECT count(DISTINCT b.run_id)::int FROM base b WHERE b.queryid = c.queryid AND b.planned = c.planned),
           (SELECT count(DISTINCT b.run_id)::int FROM base b WHERE b.queryid = c.queryid AND b.planned = c.planned AND b.plan_hash = c.plan_hash),
           u.plan_hash, telemetry._plan_shape_line(us.nodes), us.nodes, u.settings, u.launched,
           u.plan_hash IS NOT NULL AND NOT EXISTS (SELECT FROM base b WHERE b.queryid = c.queryid AND b.planned = c.planned AND b.plan_hash = c.plan_hash)
    FROM cur c CROSS JOIN w
    LEFT JOIN telemetry.plan_shapes s ON s.server = w.server AND s.plan_hash = c.plan_hash
    LEFT JOIN usual u ON u.queryid = c.queryid AND u.planned = c.planned
    LEFT JOIN telemetry.plan_shapes us ON us.server = w.server AND us.plan_hash = u.plan_hash
    ORDER BY c.duration_ms DESC, c.queryid, c.planned, c.plan_hash
$$;

-- _plan_change says how a statement's plan changed in a run (its plan that took longest among
-- those new to the baseline runs): both shapes, the node whose estimate was furthest from its
-- actual rows, the planner settings that differ from the baseline plan's; the plan_changed
-- and planner_setting causes' story and evidence (the report draws both plans from it).
CREATE OR REPLACE FUNCTION telemetry._plan_change(p_run_id bigint, p_queryid bigint)
RETURNS TABLE (story text, evidence jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH p AS (SELECT p.* FROM telemetry.run_plans(p_run_id) p WHERE p.queryid = p_queryid AND p.changed ORDER BY p.duration_ms DESC LIMIT 1)
    SELECT format('"%s" ran as %s, where %s of its %s baseline run(s) with plans ran %s; the node furthest from its estimate: %s, %s rows estimated and %s actual (per loop)%s.',
                  telemetry._statement_label(p.query_text, p.queryid), p.shape, p.baseline_runs_with_plans, p.baseline_runs, p.baseline_shape,
                  p.worst_node_label, round(p.worst_estimated), round(p.worst_actual),
                  coalesce((SELECT '; it planned with ' || string_agg(format('%s = %s (baseline %s)', k.key, k.value, coalesce(p.baseline_settings->>k.key, 'the default')), ', ')
                            FROM jsonb_each_text(p.settings) k WHERE (p.baseline_settings->>k.key) IS DISTINCT FROM k.value), '')),
           jsonb_build_object('queryid', p.queryid, 'query', p.query_text, 'plan_hash', p.plan_hash, 'shape', p.shape, 'nodes', p.nodes,
                              'baseline_plan_hash', p.baseline_plan_hash, 'baseline_shape', p.baseline_shape, 'baseline_nodes', p.baseline_nodes,
                              'worst_node', p.worst_node, 'worst_node_label', p.worst_node_label,
                              'worst_estimated_rows', p.worst_estimated, 'worst_actual_rows', p.worst_actual,
                              'settings', p.settings, 'baseline_settings', p.baseline_settings,
                              -- Both plans as the report draws them side by side: each node's depth and label.
                              'plan', telemetry._plan_outline(p.nodes), 'baseline_plan', telemetry._plan_outline(p.baseline_nodes))
    FROM p
$$;

-- _run_parallel_workers: the run's top-level statements that got fewer parallel workers than
-- their plans asked for, as pg_stat_statements 1.12 (PostgreSQL 18) counts them between the
-- run's snapshots: no auto_explain needed. Empty before 18.
CREATE OR REPLACE FUNCTION telemetry._run_parallel_workers(p_run_id bigint)
RETURNS TABLE (queryid bigint, to_launch bigint, launched bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    -- The run's ends as statement_compare takes them: the statement reads at or before its
    -- start snapshot and at or after its end.
    WITH w AS (SELECT telemetry._resolve_server(x.server) AS srv,
                      (SELECT max(i.captured_at) FROM telemetry.statement_info_snapshots i
                       WHERE i.server = telemetry._resolve_server(x.server) AND i.captured_at <= x.snapshot_start) AS start_at,
                      (SELECT min(i.captured_at) FROM telemetry.statement_info_snapshots i
                       WHERE i.server = telemetry._resolve_server(x.server) AND i.captured_at >= x.end_time) AS end_at
               FROM telemetry._run_window(p_run_id) x),
    e AS (SELECT s.queryid, sum(s.parallel_workers_to_launch) AS to_launch, sum(s.parallel_workers_launched) AS launched
          FROM w, LATERAL telemetry._statements_at(w.end_at, w.srv) s
          WHERE s.toplevel AND s.parallel_workers_to_launch IS NOT NULL GROUP BY 1),
    b AS (SELECT s.queryid, sum(s.parallel_workers_to_launch) AS to_launch, sum(s.parallel_workers_launched) AS launched
          FROM w, LATERAL telemetry._statements_at(w.start_at, w.srv) s
          WHERE s.toplevel AND s.parallel_workers_to_launch IS NOT NULL GROUP BY 1)
    SELECT e.queryid, (e.to_launch - coalesce(b.to_launch, 0))::bigint, (e.launched - coalesce(b.launched, 0))::bigint
    FROM e LEFT JOIN b USING (queryid)
    WHERE e.to_launch - coalesce(b.to_launch, 0) > e.launched - coalesce(b.launched, 0)
      AND e.launched >= coalesce(b.launched, 0)  -- not reset meanwhile
$$;
