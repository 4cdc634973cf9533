package collectors

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

func init() {
	register("xmin_horizon", TierSample, true, "What holds back the cleanup (xmin) horizon: the oldest snapshots and transactions of sessions, prepared transactions and replication slots",
		func(Config) Collector { return xminHorizonCollector{} })
}

var (
	xminAgeDesc = newDesc("xmin_horizon_age_transactions", "Age, in transaction IDs, of the oldest xmin that holders of this kind keep in the database (datname \"\": every database's: a replication slot, a standby's feedback): row versions deleted or updated since cannot be removed.",
		"datname", "kind")
	xminHeldDesc = newDesc("xmin_horizon_held_seconds", "How long the oldest holder of this kind in the database has held its xmin: since its transaction began (a session) or was prepared; absent for slots and standbys, whose start the server does not keep.",
		"datname", "kind")
)

// Kinds of xmin horizon holder (XminHolder.Kind).
const (
	XminSession  = "session"
	XminStandby  = "standby feedback"
	XminPrepared = "prepared transaction"
	XminSlot     = "replication slot"
)

// SQLXminHolders lists what holds the xmin horizon back, the oldest first: every session with a
// snapshot or a transaction ID (a walsender's is a standby's hot_standby_feedback), prepared
// transaction and replication slot with an xmin (a slot's catalog_xmin holds back only the
// catalogs). Vacuum and pruning of a table keep what any holder of its own database, or a
// slot or standby, may still see: the three oldest of each database are kept (and of none, the
// slots and standbys), 50 at most. Our own sessions are left out.
var SQLXminHolders = `SELECT rank::int, kind, pid, datname, usename, name, state, held_since, horizon_xid, xmin_age, query_preview
FROM (SELECT h.*, row_number() OVER (ORDER BY h.xmin_age DESC, h.kind, h.pid, h.name) AS rank,
             row_number() OVER (PARTITION BY h.datname ORDER BY h.xmin_age DESC, h.kind, h.pid, h.name) AS in_database
      FROM (SELECT CASE WHEN backend_type = 'walsender' THEN '` + XminStandby + `' ELSE '` + XminSession + `' END AS kind,
                   pid, datname::text, usename::text, application_name AS name, state, xact_start AS held_since,
                   (CASE WHEN backend_xmin IS NULL OR pg_catalog.age(backend_xid) > pg_catalog.age(backend_xmin)
                         THEN backend_xid ELSE backend_xmin END)::text::bigint AS horizon_xid,
                   greatest(pg_catalog.age(backend_xmin), pg_catalog.age(backend_xid))::bigint AS xmin_age,
                   pg_catalog.left(query, 200) AS query_preview
            FROM pg_stat_activity
            -- (a vacuum's own xmin holds back no other vacuum)
            WHERE (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL) AND backend_type <> 'autovacuum worker' AND ` + sqlNotOwnSession + `
            UNION ALL
            SELECT '` + XminPrepared + `', NULL, database::text, owner::text, gid, NULL, prepared, transaction::text::bigint,
                   pg_catalog.age(transaction)::bigint, NULL
            FROM pg_prepared_xacts
            UNION ALL
            SELECT '` + XminSlot + `', active_pid, database::text, NULL, slot_name::text, CASE WHEN active THEN 'active' ELSE 'inactive' END,
                   NULL, xmin::text::bigint, pg_catalog.age(xmin)::bigint, NULL
            FROM pg_replication_slots WHERE xmin IS NOT NULL) h) r
WHERE in_database <= 3 AND rank <= 50
ORDER BY rank`

type xminHorizonCollector struct{}

func (xminHorizonCollector) Collect(ctx context.Context, tx pgx.Tx, c *Collection) error {
	var err error
	c.XminHolders, err = queryAll(ctx, tx, SQLXminHolders, func(h *XminHolder) []any {
		return []any{&h.Rank, &h.Kind, &h.PID, &h.Datname, &h.Usename, &h.Name, &h.State, &h.HeldSince, &h.Xmin, &h.XminAge, &h.QueryPreview}
	})
	return err
}

// Emit gives, per database and kind, the oldest holder's age and how long it has held it.
func (xminHorizonCollector) Emit(c *Collection, ch chan<- prometheus.Metric) {
	type key struct{ datname, kind string }
	seen := map[key]bool{}
	for _, h := range c.XminHolders { // the oldest first
		k := key{kind: h.Kind}
		if h.Datname != nil {
			k.datname = *h.Datname
		}
		if seen[k] {
			continue
		}
		seen[k] = true
		gauge(ch, xminAgeDesc, float64(h.XminAge), k.datname, k.kind)
		if h.HeldSince != nil {
			gauge(ch, xminHeldDesc, c.CapturedAt.Sub(*h.HeldSince).Seconds(), k.datname, k.kind)
		}
	}
}
