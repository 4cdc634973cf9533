package collectors

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

func init() {
	register("locks", TierSample, true, "Sessions blocked on locks, per pg_blocking_pids() and pg_locks.waitstart",
		func(Config) Collector { return locksCollector{} })
}

var (
	lockBlockedDesc = newDesc("lock_blocked_sessions", "Sessions waiting on a heavyweight lock held or requested first by another session.")
	lockWaitMaxDesc = newDesc("lock_wait_max_seconds", "Longest current lock wait, from pg_locks.waitstart.")
)

// SQLLockWaits pairs each blocked session with each session blocking it. pg_blocking_pids()
// knows lock modes and queue order; only sessions waiting on a lock are asked, which keeps it cheap.
// The sample tier runs it, and the wait sampler whenever it sees a session waiting on a lock.
// A prepared transaction (two-phase commit) holds its locks with no session: pg_blocking_pids()
// names it pid 0, and it is the blocker, state 'prepared transaction', its gid for a query,
// where the wait is for its transaction ID (a row it changed) or a relation it locked.
const SQLLockWaits = `SELECT DISTINCT ON (a.pid, blocker.pid)
	a.pid, a.usename::text, a.application_name, left(a.query, 200),
	extract(epoch FROM clock_timestamp() - l.waitstart)::float8,
	blocker.pid, coalesce(b.usename::text, p.owner::text), coalesce(b.application_name, ''), coalesce(left(b.query, 200), p.gid),
	CASE WHEN b.pid IS NULL THEN 'prepared transaction' ELSE b.state END,
	l.locktype,
	CASE WHEN l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		THEN l.relation::regclass::text ELSE l.relation::text END,
	CASE l.locktype
		-- pg_advisory_lock(bigint): the key's high and low halves, objsubid 1; (int, int): 2
		WHEN 'advisory' THEN 'key ' || CASE WHEN l.objsubid = 1 THEN (l.classid::int8 << 32 | l.objid::int8)::text
			ELSE format('(%s, %s)', l.classid::int8 << 32 >> 32, l.objid::int8 << 32 >> 32) END
		WHEN 'transactionid' THEN 'transaction ' || l.transactionid
		WHEN 'spectoken' THEN 'transaction ' || l.transactionid
		WHEN 'virtualxid' THEN 'virtual transaction ' || l.virtualxid
		WHEN 'tuple' THEN format('row (%s,%s)', l.page, l.tuple)
		WHEN 'page' THEN 'page ' || l.page
		WHEN 'object' THEN format('object %s/%s/%s', l.classid, l.objid, l.objsubid)
	END,
	a.datname::text, l.waitstart, a.backend_start
FROM pg_stat_activity a
CROSS JOIN LATERAL unnest(pg_blocking_pids(a.pid)) AS blocker(pid)
LEFT JOIN pg_stat_activity b ON b.pid = blocker.pid
LEFT JOIN LATERAL (
	SELECT locktype, database, relation, page, tuple, virtualxid, transactionid, classid, objid, objsubid, waitstart
	FROM pg_locks
	WHERE pid = a.pid AND NOT granted ORDER BY waitstart NULLS LAST LIMIT 1
) l ON true
-- (a prepared transaction's locks are shown with no pid: its lock on its own transaction ID
-- tells which virtual transaction holds them, a row's changed in a subtransaction included)
LEFT JOIN pg_prepared_xacts p ON blocker.pid = 0
	AND (p.transaction = l.transactionid
	     OR EXISTS (
	        SELECT FROM pg_locks h JOIN pg_locks x ON x.virtualtransaction = h.virtualtransaction AND x.pid IS NULL AND x.locktype = 'transactionid'
	        WHERE h.pid IS NULL AND h.granted AND x.transactionid = p.transaction
	          AND (l.locktype = 'transactionid' AND h.locktype = 'transactionid' AND h.transactionid = l.transactionid
	               OR l.locktype = 'relation' AND h.locktype = 'relation' AND h.database = l.database AND h.relation = l.relation)))
WHERE a.wait_event_type = 'Lock' AND (b.pid IS NOT NULL OR p.gid IS NOT NULL)
ORDER BY a.pid, blocker.pid, p.prepared`

type locksCollector struct{}

func (locksCollector) Collect(ctx context.Context, tx pgx.Tx, c *Collection) error {
	waits, err := readLockWaits(ctx, tx)
	if err != nil {
		return err
	}
	c.Locks = waits
	return nil
}

// querier is a transaction (the sample tier's) or the pool (the wait sampler's).
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// readLockWaits runs SQLLockWaits.
func readLockWaits(ctx context.Context, q querier) ([]LockWait, error) {
	rows, _ := q.Query(ctx, SQLLockWaits)
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (LockWait, error) {
		var w LockWait
		var waited *float64
		err := r.Scan(&w.BlockedPID, &w.BlockedUser, &w.BlockedApp, &w.BlockedQueryPreview, &waited,
			&w.BlockingPID, &w.BlockingUser, &w.BlockingApp, &w.BlockingQueryPreview, &w.BlockingState, &w.LockType, &w.LockedRelation,
			&w.LockedObject, &w.Datname,
			&w.WaitStart, &w.BlockedBackendStart)
		w.BlockedDuration = secondsToDuration(waited)
		return w, err
	})
}

func (locksCollector) Emit(c *Collection, ch chan<- prometheus.Metric) {
	blocked := map[int32]bool{}
	var longest time.Duration
	for _, w := range c.Locks {
		blocked[w.BlockedPID] = true
		if w.BlockedDuration != nil {
			longest = max(longest, *w.BlockedDuration)
		}
	}
	gauge(ch, lockBlockedDesc, float64(len(blocked)))
	gauge(ch, lockWaitMaxDesc, longest.Seconds())
}

func secondsToDuration(s *float64) *time.Duration {
	if s == nil {
		return nil
	}
	d := time.Duration(*s * float64(time.Second))
	return &d
}

func durationSeconds(d *time.Duration) *float64 {
	if d == nil {
		return nil
	}
	s := d.Seconds()
	return &s
}
