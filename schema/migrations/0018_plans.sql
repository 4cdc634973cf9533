-- Plans: what auto_explain logged of the batch's sessions (--plans.source; off by default),
-- each shape once per server, and every logged execution with its rows and settings. Their
-- functions: diagnosis/diagnosissql/plans.sql (run_plans, the plan findings of a run).

-- A plan's shape: node types, relations, indexes and join order, without the numbers. Its
-- hash tells two plans of a statement apart.
CREATE TABLE IF NOT EXISTS telemetry.plan_shapes (
    server text NOT NULL,
    plan_hash bigint NOT NULL,
    -- Depth-first, each node before its children: {depth, node, join, strategy, relation,
    -- index, parent}. An execution's node_rows follow this order.
    nodes jsonb NOT NULL,
    first_seen timestamptz NOT NULL,
    PRIMARY KEY (server, plan_hash)
);

-- Each plan auto_explain logged, stored with the snapshot that read it from the log.
CREATE TABLE IF NOT EXISTS telemetry.plan_executions (
    server text NOT NULL,
    snapshot_id integer,
    captured_at timestamptz NOT NULL,
    logged_at timestamptz NOT NULL,   -- the log line's time: when the statement ended
    pid integer NOT NULL,
    application_name text NOT NULL,
    username text NOT NULL,           -- '' where the log does not say (stderr without %u)
    datname text NOT NULL,
    queryid bigint,                   -- the session's top-level statement (jsonlog query_id, %Q)
    plan_queryid bigint,              -- the planned statement's own (auto_explain.log_verbose)
    plan_hash bigint NOT NULL,
    duration_ms double precision NOT NULL,
    -- Per node of the shape: [estimated rows, actual rows, loops], rows per loop as EXPLAIN
    -- shows them; actual NULL where the node never ran.
    node_rows jsonb NOT NULL,
    settings jsonb NOT NULL,          -- the planner settings not at their default (log_settings)
    workers_planned integer NOT NULL,  -- summed over the plan's Gather nodes
    workers_launched integer NOT NULL,
    query_text text NOT NULL
) PARTITION BY RANGE (captured_at);
CREATE INDEX IF NOT EXISTS plan_executions_logged ON telemetry.plan_executions (server, logged_at);

-- pg_stat_statements 1.12 (PostgreSQL 18): the parallel workers a statement's plans asked for
-- and those it got, so that workers planned but not launched are seen without auto_explain.
ALTER TABLE telemetry.statement_snapshots ADD COLUMN IF NOT EXISTS parallel_workers_to_launch bigint;
ALTER TABLE telemetry.statement_snapshots ADD COLUMN IF NOT EXISTS parallel_workers_launched bigint;
