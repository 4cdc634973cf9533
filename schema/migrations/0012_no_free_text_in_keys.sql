-- No key holds free text: a lock-waiting query's text of 1024 characters of 4-byte UTF-8 made
-- statement_wait_samples' primary key entry larger than a btree allows, and the database refused
-- the whole sample. Its rows are written once per sample (the samples row's UNIQUE (server,
-- captured_at) keeps a retried write from writing them twice), and since its texts are stored
-- normalized, two of a sample's texts may become one: no key is needed on its rows.
ALTER TABLE telemetry.statement_wait_samples DROP CONSTRAINT IF EXISTS statement_wait_samples_pkey;
