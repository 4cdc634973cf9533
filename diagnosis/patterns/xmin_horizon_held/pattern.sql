-- xmin_horizon_held: the longest anything held a database's cleanup (xmin) horizon back in the
-- window, as the samples saw (_xmin_holders): how long it had held it when last seen there,
-- since it began as the server tells where the window's first sample saw it already, else
-- since its first sighting. Every session counts, a batch's own too: the window does not
-- know them (a run's cause leaves them out).
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
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH first AS (SELECT min(s.captured_at) AS at FROM telemetry.samples s
                   WHERE s.server = p_server AND s.captured_at BETWEEN p_start_time AND p_end_time),
    h AS (
        SELECT x.kind, x.datname, x.name, (array_agg(x.pid ORDER BY x.seen_at DESC))[1] AS pid,
               (array_agg(x.usename ORDER BY x.seen_at DESC))[1] AS usename, (array_agg(x.state ORDER BY x.seen_at DESC))[1] AS state,
               (array_agg(x.query ORDER BY x.seen_at DESC))[1] AS query, min(x.held_since) AS held_since, max(x.xmin_age) AS xmin_age,
               max(x.last_seen) AS last_seen,
               -- since when: as the server told where the window's first sample saw it already
               -- (a slot's, a standby's: that sample), else from its first sighting
               extract(epoch FROM max(x.last_seen) - CASE WHEN min(x.first_seen) = (SELECT at FROM first)
                                                          THEN least(min(x.held_since), min(x.first_seen)) ELSE min(x.first_seen) END) AS held
        FROM telemetry._xmin_holders(p_server, p_start_time, p_end_time, NULL, NULL) x
        GROUP BY x.kind, CASE WHEN x.kind = 'session' THEN x.pid END, x.datname, x.name, x.horizon_xid
        ORDER BY held DESC, xmin_age DESC LIMIT 1)
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
    WHERE h.held >= telemetry._threshold('xmin_horizon_min_seconds');
END
$$;
