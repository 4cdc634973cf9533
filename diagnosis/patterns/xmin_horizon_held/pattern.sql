-- xmin_horizon_held: the longest anything held a database's cleanup (xmin) horizon back in the
-- window, as the samples saw (_xmin_holders): how long it had held it when last seen there.
-- No row version deleted or updated meanwhile in that database (in every one, for a slot or a
-- standby) could be removed; a run's own account blames it where its statements read more
-- for it (the cause xmin_horizon).

INSERT INTO telemetry.diagnose_thresholds (name, value, unit, description) VALUES
    ('xmin_horizon_held_seconds_warning', 900, 'seconds', 'The longest a holder held a database''s cleanup horizon back in the window: warning.'),
    ('xmin_horizon_held_seconds_critical', 3600, 'seconds', 'The longest a holder held the cleanup horizon back: critical.')
ON CONFLICT (name) DO UPDATE SET unit = excluded.unit, description = excluded.description;

CREATE OR REPLACE FUNCTION telemetry._pattern_xmin_horizon_held(p_start_time timestamptz, p_end_time timestamptz,
                                                                p_snapshot_start timestamptz, p_server text, p_shared jsonb)
RETURNS TABLE (pattern text, severity text, score numeric, summary text, evidence jsonb, recommendation text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH h AS (
        SELECT x.*, extract(epoch FROM x.last_seen - coalesce(x.held_since, x.first_seen)) AS held
        FROM telemetry._xmin_holders(p_server, p_start_time, p_end_time, NULL, NULL) x
        ORDER BY 13 DESC, x.xmin_age DESC LIMIT 1)
    SELECT 'xmin_horizon_held',
           CASE WHEN h.held >= telemetry._threshold('xmin_horizon_held_seconds_critical') THEN 'critical'
                WHEN h.held >= telemetry._threshold('xmin_horizon_held_seconds_warning') THEN 'warning' ELSE 'info' END,
           round(h.held / telemetry._threshold('xmin_horizon_held_seconds_warning'), 2),
           format('The cleanup (xmin) horizon of %s was held back for up to %s s (at %s) by %s: no row version deleted or updated meanwhile could be removed there.',
                  coalesce('database ' || h.datname, 'every database'), round(h.held), telemetry._ts(h.last_seen),
                  telemetry._xmin_holder_text(telemetry._xmin_holder_json(to_jsonb(h)))),
           telemetry._xmin_holder_json(to_jsonb(h)) || jsonb_build_object('held_seconds', round(h.held, 1), 'last_seen', h.last_seen),
           'A batch that updates or deletes rows in that database while it is held reads through every version it leaves (the cause xmin_horizon of its run names it). End such transactions (idle_in_transaction_session_timeout; transaction_timeout on 17+), finish forgotten prepared transactions, drop unused slots; then VACUUM the tables that grew.'
    FROM h
    WHERE h.held >= telemetry._threshold('xmin_horizon_min_seconds')
$$;
