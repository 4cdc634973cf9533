-- Running totals of the statement rollups by day (issue 22): a month of statement_compare
-- summed a row per statement, wait and day (300,000 in the bench's 30 days), 115 ms at the
-- least, alone. A key's total at a day's start less its total at another day's start is what
-- its day rollups between them sum: two days' rows, whatever the window's length.
-- captured_at is the day's start: the row holds the key's day rollups before it (from
-- whatever the server's first were: only differences are read), and days, how many day
-- rollups that is (a key with none between two days did not run between them, whatever its
-- seconds). The recorder writes a day's totals with its first sample (_statement_wait_totals_add);
-- what changes day rollups already summed deletes the totals that summed them
-- (telemetry._rollup_delete, and a sample of a day after the next day's totals), and the
-- readers fall back to the day rollups where there are none.
CREATE TABLE IF NOT EXISTS telemetry.statement_wait_totals (
    server text NOT NULL,
    captured_at timestamptz NOT NULL,
    batch text NOT NULL,
    queryid bigint NOT NULL,
    wait_event_type text NOT NULL,
    wait_event text NOT NULL,
    before_query_id boolean NOT NULL,
    query_text_hash bigint NOT NULL,
    query_text text NOT NULL,
    seconds numeric NOT NULL,
    days bigint NOT NULL,
    PRIMARY KEY (server, captured_at, batch, queryid, wait_event_type, wait_event, before_query_id, query_text_hash)
) PARTITION BY RANGE (captured_at);

-- The days recorded so far get their partition now: the recorder makes a day's partitions
-- once, with its first collection of the day.
DO $$
DECLARE
    v_day date;
BEGIN
    FOR v_day IN
        SELECT to_date(substring(c.relname from '_d([0-9]{8})$'), 'YYYYMMDD')
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'telemetry.samples'::regclass
    LOOP
        EXECUTE format('CREATE TABLE IF NOT EXISTS telemetry.%I PARTITION OF telemetry.statement_wait_totals FOR VALUES FROM (%L) TO (%L)',
            'statement_wait_totals_d' || to_char(v_day, 'YYYYMMDD'),
            v_day::timestamp AT TIME ZONE 'UTC', (v_day + 1)::timestamp AT TIME ZONE 'UTC');
    END LOOP;
END
$$;
