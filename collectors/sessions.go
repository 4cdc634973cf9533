package collectors

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

func init() {
	register("sessions", TierSample, true, "Sessions by backend type, state and wait event, and the longest-running active sessions, from pg_stat_activity",
		func(Config) Collector { return sessionsCollector{} })
}

var sessionsDesc = newDesc("sessions", "Sessions at the last sample, by backend type, state and wait event (NULL wait: Running/CPU); without pg_read_all_stats, only the sessions the role may see.",
	"backend_type", "state", "wait_event_type", "wait_event")

// sqlNotOwnSession leaves out the collecting session and every other session of the exporter.
const sqlNotOwnSession = `pid <> pg_backend_pid() AND coalesce(application_name, '') NOT LIKE 'pg-batch-exporter%'`

// SQLActiveState is the one rule for an active session wherever sessions are counted (the
// wait sampler, wait_summary, diagnose, the report): its state is not idle, idle in
// transaction or idle in transaction (aborted). column is the state column, qualified as the
// query needs; the recorder's SQL definitions spell it the same way (recorder
// TestOneDefinitionOfActiveSession).
func SQLActiveState(column string) string { return column + " NOT LIKE 'idle%'" }

// sqlVisibleSession leaves out sessions whose activity the role may not see (without
// pg_read_all_stats): backend_type, state and wait are all NULL there, which the fill-ins
// below would count as an active Running/CPU session.
const sqlVisibleSession = `backend_type IS NOT NULL`

// SQLSessionGroups groups pg_stat_activity as the seed's wait_samples table does.
const SQLSessionGroups = `SELECT backend_type, coalesce(wait_event_type, 'Running'),
	coalesce(wait_event, 'CPU'), coalesce(state, 'unknown'), count(*)::int
FROM pg_stat_activity WHERE ` + sqlNotOwnSession + ` AND ` + sqlVisibleSession + `
GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4`

// SQLActiveSessions lists the 25 active sessions with the oldest query_start (the blockers
// idle in a transaction are in the lock samples).
var SQLActiveSessions = `SELECT pid, datname::text, usename::text, application_name, backend_type, state,
	wait_event_type, wait_event, query_start, state_change, left(query, 200)
FROM pg_stat_activity WHERE ` + SQLActiveState("state") + ` AND ` + sqlNotOwnSession + ` AND ` + sqlVisibleSession + `
ORDER BY query_start NULLS LAST, pid LIMIT 25`

type sessionsCollector struct{}

func (sessionsCollector) Collect(ctx context.Context, tx pgx.Tx, c *Collection) error {
	groups, err := queryAll(ctx, tx, SQLSessionGroups, func(g *SessionGroup) []any {
		return []any{&g.BackendType, &g.WaitEventType, &g.WaitEvent, &g.State, &g.Count}
	})
	if err != nil {
		return err
	}
	active, err := queryAll(ctx, tx, SQLActiveSessions, func(a *ActiveSession) []any {
		return []any{&a.PID, &a.Datname, &a.Usename, &a.ApplicationName, &a.BackendType, &a.State,
			&a.WaitEventType, &a.WaitEvent, &a.QueryStart, &a.StateChange, &a.QueryPreview}
	})
	if err != nil {
		return err
	}
	c.Sessions, c.Activity = groups, active
	return nil
}

func (sessionsCollector) Emit(c *Collection, ch chan<- prometheus.Metric) {
	for _, g := range c.Sessions {
		gauge(ch, sessionsDesc, float64(g.Count), g.BackendType, g.State, g.WaitEventType, g.WaitEvent)
	}
}
