-- Before migrations and definitions were split, functions lived in migrations of other
-- names (0001_schema.sql ... 0070_statements.sql, collect.sql); their tables are those of
-- 0001 and 0002, and the definitions replace their functions. Their records would only
-- mislead.
DELETE FROM telemetry.schema_migrations
WHERE name IN ('0001_schema.sql', '0002_api.sql', '0003_sql_collection.sql', '0050_batch_runs.sql',
               '0060_diagnose.sql', '0070_statements.sql', 'collect.sql');
