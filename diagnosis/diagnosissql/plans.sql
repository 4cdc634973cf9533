-- Plans' analysis: the plans auto_explain logged of a run's own sessions (--plans.source)
-- against those of its baseline runs: run_plans and the plan findings of diagnose_run_findings
-- (the tables: recorder/migrations/0021_plans.sql).

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

-- _statement_label names a statement in a finding's summary (the plans' and the statements'): its text on one line, truncated.
CREATE OR REPLACE FUNCTION telemetry._statement_label(p_query text, p_queryid bigint)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT left(regexp_replace(coalesce(p_query, 'queryid ' || p_queryid), '\s+', ' ', 'g'), 80)
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

-- _plan_findings: what the run's plans say changed, each linked to the statement it slowed
-- (p_slowed: the run's statement findings, {queryid, severity, extra_seconds, label}), so it
-- ranks with that statement's seconds: the plan's shape changed against the baseline's; a
-- planner setting the batch's sessions planned with that the baseline's plans did not have;
-- parallel workers planned but not launched. Where none slowed a statement: info.
CREATE OR REPLACE FUNCTION telemetry._plan_findings(p_run_id bigint, p_slowed jsonb)
RETURNS TABLE (pattern text, severity text, summary text, evidence jsonb, recommendation text, explained_seconds numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH p AS (SELECT * FROM telemetry.run_plans(p_run_id)),
    slowed AS (SELECT (x->>'queryid')::bigint AS queryid, x->>'severity' AS severity, (x->>'extra_seconds')::numeric AS extra_seconds,
                      x->>'label' AS label
               FROM jsonb_array_elements(coalesce(p_slowed, '[]')) x),
    changed AS (
        SELECT DISTINCT ON (p.queryid, p.planned) p.*, s.severity AS slowed_severity, s.extra_seconds, s.label
        FROM p LEFT JOIN slowed s ON s.queryid = p.queryid
        WHERE p.changed
        ORDER BY p.queryid, p.planned, p.duration_ms DESC),
    -- Settings the run's plans had that none of the baseline's plans of the statement had.
    set_now AS (
        SELECT k.key AS name, k.value, p.queryid, p.baseline_settings->>k.key AS baseline_value, s.severity AS slowed_severity,
               s.extra_seconds, s.label
        FROM p CROSS JOIN LATERAL jsonb_each_text(p.settings) k LEFT JOIN slowed s ON s.queryid = p.queryid
        WHERE p.baseline_runs_with_plans > 0 AND (p.baseline_settings->>k.key) IS DISTINCT FROM k.value),
    settings AS (
        SELECT s.name, s.value, (array_agg(s.baseline_value ORDER BY s.extra_seconds DESC NULLS LAST))[1] AS baseline_value,
               (array_agg(s.slowed_severity ORDER BY s.extra_seconds DESC NULLS LAST))[1] AS slowed_severity,
               max(s.extra_seconds) AS extra_seconds, (array_agg(s.label ORDER BY s.extra_seconds DESC NULLS LAST))[1] AS label,
               count(DISTINCT s.queryid) AS statements
        FROM set_now s GROUP BY s.name, s.value),
    parallel AS (
        SELECT p.*, s.severity AS slowed_severity, s.extra_seconds, s.label
        FROM p LEFT JOIN slowed s ON s.queryid = p.queryid
        WHERE p.workers_launched < p.workers_planned)
    SELECT 'plan_changed', coalesce(c.slowed_severity, 'info'),
           format('The plan of "%s" changed: %s, where its %s baseline run(s) with plans used %s. The node furthest from its estimate: %s, %s rows estimated and %s actual (per loop).%s',
                  coalesce(c.label, telemetry._statement_label(c.query_text, c.queryid)), c.shape, c.baseline_runs_with_plans, c.baseline_shape,
                  c.worst_node_label, round(c.worst_estimated), round(c.worst_actual),
                  coalesce(format(' With it the statement took %s s more than its baseline median.', round(c.extra_seconds, 1)), '')),
           jsonb_build_object('queryid', c.queryid, 'query', c.query_text, 'plan_hash', c.plan_hash, 'shape', c.shape, 'nodes', c.nodes,
                              'baseline_plan_hash', c.baseline_plan_hash, 'baseline_shape', c.baseline_shape, 'baseline_nodes', c.baseline_nodes,
                              'worst_node', c.worst_node, 'worst_node_label', c.worst_node_label,
                              'worst_estimated_rows', c.worst_estimated, 'worst_actual_rows', c.worst_actual,
                              'settings', c.settings, 'baseline_settings', c.baseline_settings,
                              'baseline_runs_with_plans', c.baseline_runs_with_plans, 'extra_seconds', c.extra_seconds),
           'What made the planner choose another plan: an index dropped or invalid, statistics stale (ANALYZE the tables of the node furthest from its estimate), a planner setting changed (the plan''s settings against the baseline''s). telemetry.run_plans(run_id) shows both plans node by node; the report shows them side by side.',
           c.extra_seconds
    FROM changed c
    UNION ALL
    SELECT 'planner_setting', coalesce(s.slowed_severity, 'info'),
           format('The batch''s sessions planned %s statement(s) with %s = %s, where the baseline runs'' plans had %s (auto_explain''s settings of the plan)%s.',
                  s.statements, s.name, s.value, coalesce(s.baseline_value, 'its default'),
                  coalesce(format(', among them "%s", which took %s s more than its baseline median', s.label, round(s.extra_seconds, 1)), '')),
           jsonb_build_object('setting', s.name, 'value', s.value, 'baseline_value', s.baseline_value, 'statements', s.statements,
                              'extra_seconds', s.extra_seconds),
           format('The batch''s session, its role or its database set %s (SET in the batch''s code, ALTER ROLE/DATABASE ... SET; pg_db_role_setting): undo it where it was not meant for this batch, or keep it and expect its plans.', s.name),
           s.extra_seconds
    FROM settings s
    UNION ALL
    SELECT 'parallel_workers_not_launched', coalesce(x.slowed_severity, 'info'),
           format('"%s" planned %s parallel worker(s) in %s execution(s) and got %s: the server had none free (max_parallel_workers, max_worker_processes)%s.',
                  coalesce(x.label, telemetry._statement_label(x.query_text, x.queryid)), x.workers_planned, x.executions, x.workers_launched,
                  coalesce(format('; it took %s s more than its baseline median', round(x.extra_seconds, 1)), '')),
           jsonb_build_object('queryid', x.queryid, 'query', x.query_text, 'workers_planned', x.workers_planned, 'workers_launched', x.workers_launched,
                              'executions', x.executions, 'baseline_workers_launched_per_execution', x.baseline_workers_launched, 'extra_seconds', x.extra_seconds),
           'Other parallel queries (or the batch''s own sessions, at once) used the workers up: raise max_parallel_workers (and max_worker_processes, a restart), or run fewer parallel statements together.',
           x.extra_seconds
    FROM parallel x
$$;
