-- xmin_horizon: the cleanup (xmin) horizon of the batch's database was held back through the
-- run, and not through its baseline runs (_runs_xmin_horizon): by a long transaction of
-- another session, a standby's hot_standby_feedback, a forgotten prepared transaction or a
-- replication slot. No row version the batch updated or deleted could be removed, by pruning
-- or vacuum, while it was held: its statements read through them, more blocks per call
-- (xmin_horizon_blocks_ratio) for the same work.
INSERT INTO telemetry.diagnose_thresholds (name, value, unit, description) VALUES
    ('xmin_horizon_held_pct', 50, 'percent',
     'xmin_horizon: the cleanup horizon was held back during a run when, for this share of its time at least, something other than the batch''s own sessions held it (from before the run''s start, or for xmin_horizon_min_seconds already); and not in its baseline runs when their median share is below it.'),
    ('xmin_horizon_min_seconds', 60, 'seconds',
     'xmin_horizon: a holder that began during a run holds the horizon back once it has held it this long.'),
    ('xmin_horizon_blocks_ratio', 1.5, 'ratio',
     'xmin_horizon: a statement''s extra time is the held horizon''s where its blocks per call (pg_stat_statements) reached this many times its baseline median.')
ON CONFLICT (name) DO UPDATE SET unit = excluded.unit, description = excluded.description;

CREATE OR REPLACE FUNCTION telemetry._finding_xmin_horizon(p_run_id bigint, p_account jsonb)
RETURNS TABLE (finding text, severity text, summary text, evidence jsonb, recommendation text, explained_seconds numeric, children jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH hz AS (SELECT p_account->'xmin_horizon' AS j, p_account->'xmin_horizon'->'holder' AS h),
    top AS (SELECT r.query, r.queryid, r.statistics AS s FROM telemetry._account_rows(p_account, 'xmin_horizon') r
            WHERE r.statistics->>'baseline_blocks_per_call' IS NOT NULL ORDER BY r.extra_seconds DESC LIMIT 1)
    SELECT f.* FROM hz, telemetry._cause_finding(p_account, 'xmin_horizon', 'Row versions the batch replaced could not be cleaned up',
        format('The cleanup (xmin) horizon of its database was held back for %s%% of the run (its baseline runs: %s%%), %s by %s, %s transactions old: no row version updated or deleted since could be removed, and the batch''s statements read through them.%s',
               hz.j->>'held_pct', hz.j->>'baseline_held_pct', CASE WHEN hz.h IS NULL THEN 'nothing named' ELSE 'longest' END,
               telemetry._xmin_holder_text(hz.h), coalesce(hz.h->>'xmin_age', '?'),
               (SELECT format(' "%s" read %s blocks per call instead of %s.', telemetry._statement_label(top.query, top.queryid),
                              round((top.s->>'blocks_per_call')::numeric), round((top.s->>'baseline_blocks_per_call')::numeric)) FROM top)),
        jsonb_build_object('held_pct', hz.j->'held_pct', 'baseline_held_pct', hz.j->'baseline_held_pct', 'holder', hz.h),
        CASE hz.h->>'kind'
            WHEN 'session' THEN format('End the long transaction if it may go (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = %s AND xact_start <= %L: the pid may since be another session''s) and find why the application keeps it open; set idle_in_transaction_session_timeout (and transaction_timeout on 17+) for its role so that it cannot again. Then VACUUM the batch''s tables: what piled up stays until vacuumed.',
                                       hz.h->>'pid', hz.h->>'held_since')
            WHEN 'standby_feedback' THEN 'A long query on a standby with hot_standby_feedback = on holds the primary''s horizon: end it, move such queries off the batch''s hours, or let the standby cancel them instead (hot_standby_feedback = off, max_standby_streaming_delay). Then VACUUM the batch''s tables.'
            WHEN 'prepared_transaction' THEN format('Finish the forgotten prepared transaction as its transaction manager would: connected to database %s as its owner or a superuser, COMMIT PREPARED %L or ROLLBACK PREPARED %L. Then VACUUM the batch''s tables.',
                                                    hz.h->>'datname', hz.h->>'name', hz.h->>'name')
            WHEN 'replication_slot' THEN format('The slot %s keeps old rows for a consumer that does not advance it: bring the consumer back, or drop the slot (SELECT pg_drop_replication_slot(%L), once no consumer is connected) if nothing uses it.', hz.h->>'name', hz.h->>'name')
            ELSE 'Find what holds the horizon back: SELECT pid, state, xact_start, backend_xmin, backend_xid, query FROM pg_stat_activity ORDER BY greatest(age(backend_xmin), age(backend_xid)) DESC NULLS LAST; pg_prepared_xacts; pg_replication_slots (xmin).' END) f
$$;
