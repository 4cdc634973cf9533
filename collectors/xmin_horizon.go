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
	xminHeldDesc = newDesc("xmin_horizon_held_seconds", "How long the oldest holder of this kind in the database has held its xmin: since its transaction began, or its running statement's snapshot was taken (a session), or it was prepared; absent for slots and standbys, whose start the server does not keep.",
		"datname", "kind")
)

// Kinds of xmin horizon holder (XminHolder.Kind).
const (
	XminSession  = "session"
	XminStandby  = "standby_feedback"
	XminPrepared = "prepared_transaction"
	XminSlot     = "replication_slot"
)

// SQLXminHolders lists what holds the xmin horizon back, the oldest first: sessions with a
// snapshot or a transaction ID; prepared transactions; standbys' hot_standby_feedback, through
// their physical slot or their walsender; other replication slots with an xmin (a slot's
// catalog_xmin holds back only the catalogs). Vacuum and pruning of a table keep what any
// holder of its own database, or a slot or standby (datname NULL: every database), may still
// see: the three oldest of each database and kind are kept, 50 at most. Left out: our own
// sessions; a lazy VACUUM (pg_stat_progress_vacuum) and a logical walsender, whose xmin the
// server leaves out of every horizon; a parallel worker, which shows its leader's. held_since
// is since when the holder has held it, as far as the server tells: a transaction ID's or a
// snapshot's transaction start, a running statement's start (its snapshot, under READ
// COMMITTED), the prepare; NULL for slots and standbys.
var SQLXminHolders = `SELECT row_number() OVER (ORDER BY xmin_age DESC, kind, pid, name)::int AS rank, kind, pid, datname, usename, name, state,
	held_since, horizon_xid, xmin_age, query_preview
FROM (SELECT h.*, row_number() OVER (PARTITION BY h.datname, h.kind ORDER BY h.xmin_age DESC, h.pid, h.name) AS in_database
      FROM (SELECT CASE WHEN backend_type = 'walsender' THEN '` + XminStandby + `' ELSE '` + XminSession + `' END AS kind,
                   pid, datname::text, usename::text, application_name AS name, state,
                   CASE WHEN backend_xid IS NOT NULL AND (backend_xmin IS NULL OR pg_catalog.age(backend_xid) >= pg_catalog.age(backend_xmin))
                             OR state IS DISTINCT FROM 'active' THEN xact_start
                        ELSE query_start END AS held_since,
                   (CASE WHEN backend_xmin IS NULL OR pg_catalog.age(backend_xid) > pg_catalog.age(backend_xmin)
                         THEN backend_xid ELSE backend_xmin END)::text::bigint AS horizon_xid,
                   greatest(pg_catalog.age(backend_xmin), pg_catalog.age(backend_xid))::bigint AS xmin_age,
                   pg_catalog.left(query, 200) AS query_preview
            FROM pg_stat_activity
            WHERE (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL)
              AND backend_type IS DISTINCT FROM 'parallel worker'
              AND NOT (backend_type = 'walsender' AND datname IS NOT NULL)
              AND pid NOT IN (SELECT v.pid FROM pg_stat_progress_vacuum v)
              AND ` + sqlNotOwnSession + `
            UNION ALL
            SELECT '` + XminPrepared + `', NULL, database::text, owner::text, gid, NULL, prepared, transaction::text::bigint,
                   pg_catalog.age(transaction)::bigint, NULL
            FROM pg_prepared_xacts
            UNION ALL
            SELECT CASE WHEN slot_type = 'physical' THEN '` + XminStandby + `' ELSE '` + XminSlot + `' END, active_pid, NULL,
                   NULL, slot_name::text, CASE WHEN active THEN 'active' ELSE 'inactive' END,
                   NULL, xmin::text::bigint, pg_catalog.age(xmin)::bigint, NULL
            FROM pg_replication_slots WHERE xmin IS NOT NULL) h) r
WHERE in_database <= 3
ORDER BY 1 LIMIT 50`

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
