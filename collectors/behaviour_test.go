package collectors_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func metric(t *testing.T, r *collectors.Runner, tier collectors.Tier, name string, labels map[string]string) float64 {
	t.Helper()
	v := value(gather(t, r, tier), name, labels)
	if v == nil {
		t.Fatalf("no series %s%v", name, labels)
	}
	return *v
}

func TestCheckpointRaisesRequested(t *testing.T) {
	forEachVersion(t, func(t *testing.T, srv *pgtest.Server, dsn string) {
		r := newRunner(t, dsn)
		collect(t, r, collectors.TierSnapshot)
		before := metric(t, r, collectors.TierSnapshot, "pgbatch_checkpoints_requested_total", nil)
		lsnBefore := r.Latest(collectors.TierSnapshot).Control.LSN
		conn := pgtest.Connect(t, dsn, "")
		pgtest.MustExec(t, conn, `CREATE TABLE dirty AS SELECT g FROM generate_series(1, 10000) g`)
		pgtest.MustExec(t, conn, `CHECKPOINT`)
		// The checkpointer reports its statistics just after it wakes the CHECKPOINT's backend.
		var c *collectors.Collection
		waitUntil(t, 5*time.Second, func() bool {
			c = collect(t, r, collectors.TierSnapshot)
			return metric(t, r, collectors.TierSnapshot, "pgbatch_checkpoints_requested_total", nil) > before
		})
		// pg_control keeps whole seconds, and other databases' DROP DATABASE checkpoints too:
		// the location is what must move.
		if c.Control.LSN == lsnBefore {
			t.Errorf("checkpoint location did not move from %s", lsnBefore)
		}
	})
}

func TestTempSpillRaisesTempCounters(t *testing.T) {
	forEachVersion(t, func(t *testing.T, srv *pgtest.Server, dsn string) {
		r := newRunner(t, dsn)
		c := collect(t, r, collectors.TierSnapshot)
		db := map[string]string{"datname": c.Server.Database}
		files := metric(t, r, collectors.TierSnapshot, "pgbatch_database_temp_files_total", db)
		bytes := metric(t, r, collectors.TierSnapshot, "pgbatch_database_temp_bytes_total", db)
		conn := pgtest.Connect(t, dsn, "")
		pgtest.MustExec(t, conn, `SET work_mem = '64kB'`)
		pgtest.MustExec(t, conn, `SELECT g FROM generate_series(1, 200000) g ORDER BY g DESC`)
		// A backend flushes its statistics up to 10s after going idle; ask for it now.
		pgtest.MustExec(t, conn, `SELECT pg_stat_force_next_flush()`)
		pgtest.MustExec(t, conn, `SELECT 1`)
		waitUntil(t, 5*time.Second, func() bool {
			collect(t, r, collectors.TierSnapshot)
			return metric(t, r, collectors.TierSnapshot, "pgbatch_database_temp_files_total", db) > files
		})
		if b := metric(t, r, collectors.TierSnapshot, "pgbatch_database_temp_bytes_total", db); b <= bytes {
			t.Errorf("temp bytes %v -> %v after a spilling sort", bytes, b)
		}
	})
}

// TestWaitSamplerCountsSleepingSessions: three sessions in pg_sleep(2) add up to about six
// session-seconds of PgSleep; idle sessions, in a transaction or not, and the exporter's own
// sessions are never counted.
func TestWaitSamplerCountsSleepingSessions(t *testing.T) {
	forEachVersion(t, func(t *testing.T, srv *pgtest.Server, dsn string) {
		r := newRunner(t, dsn)
		const sessions, sleep, idle = 3, 2.0, 4
		for i := range idle {
			c := pgtest.Connect(t, dsn, "")
			if i%2 == 1 {
				pgtest.MustExec(t, c, `BEGIN`)
				pgtest.MustExec(t, c, `SELECT 1`)
			}
		}
		var wg sync.WaitGroup
		ready := make(chan struct{})
		for range sessions {
			conn := pgtest.Connect(t, dsn, "")
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-ready
				_, _ = conn.Exec(context.Background(), `SELECT pg_sleep(2)`)
			}()
		}
		close(ready)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		ctx := context.Background()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
	sampling:
		for {
			if err := r.Waits().Sample(ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case <-done:
				break sampling
			case <-tick.C:
			}
		}
		c := collect(t, r, collectors.TierSample)
		got := metric(t, r, collectors.TierSample, "pgbatch_wait_event_seconds_total", map[string]string{"wait_event": "PgSleep"})
		want := sessions * sleep
		if got < want*0.7 || got > want*1.3 {
			t.Errorf("PgSleep session-seconds = %.2f, want about %.1f", got, want)
		}
		// The same seconds reach the recorder's side of the model. An active session reads from
		// its client between the messages of one extended-protocol exchange (ClientRead, briefly):
		// a sample or two of that, never the idle sessions' idle*sleep session-seconds.
		var recorded float64
		for _, w := range c.WaitTime {
			if w.WaitEvent == "PgSleep" {
				recorded = w.Seconds
			}
			if w.WaitEvent == "ClientRead" && w.Seconds > 0.5 {
				t.Errorf("idle sessions counted: %+v", w)
			}
		}
		if recorded != got {
			t.Errorf("collection WaitTime PgSleep = %.2f, exporter = %.2f", recorded, got)
		}
	})
}

// TestRowLockShowsBlockedSession: a session blocked on a row lock shows in
// pgbatch_lock_blocked_sessions, paired with the session holding the lock.
func TestRowLockShowsBlockedSession(t *testing.T) {
	forEachVersion(t, func(t *testing.T, srv *pgtest.Server, dsn string) {
		holder := pgtest.Connect(t, dsn, "")
		pgtest.MustExec(t, holder, `CREATE TABLE accounts (id int PRIMARY KEY, balance int)`)
		pgtest.MustExec(t, holder, `INSERT INTO accounts VALUES (1, 100)`)
		pgtest.MustExec(t, holder, `BEGIN`)
		pgtest.MustExec(t, holder, `UPDATE accounts SET balance = balance + 1 WHERE id = 1`)
		var holderPID uint32
		if err := holder.QueryRow(context.Background(), `SELECT pg_backend_pid()`).Scan(&holderPID); err != nil {
			t.Fatal(err)
		}
		r, l, release := blockedBehind(t, dsn, holder, `UPDATE accounts SET balance = balance - 1 WHERE id = 1`, `COMMIT`)
		if n := metric(t, r, collectors.TierSample, "pgbatch_lock_blocked_sessions", nil); n != 1 {
			t.Errorf("lock_blocked_sessions = %v, want 1", n)
		}
		if uint32(l.BlockingPID) != holderPID || l.LockType == nil || *l.LockType != "transactionid" || l.BlockedDuration == nil {
			t.Errorf("lock pair = %+v, want blocked by %d on a transactionid with a wait duration", l, holderPID)
		}
		// The holder sits between statements, its transaction open: not running its update.
		if text(l.BlockingState) != "idle in transaction" || !strings.HasPrefix(text(l.LockedObject), "transaction ") {
			t.Errorf("lock pair's holder state %s and object %s, want idle in transaction and the transaction waited for", text(l.BlockingState), text(l.LockedObject))
		}
		release()
	})
}

// TestAdvisoryLockKeys: a wait on an advisory lock names its key as the caller gave it, a
// bigint or two integers (negative ones too), its holder idle where it holds the lock for its
// session between statements.
func TestAdvisoryLockKeys(t *testing.T) {
	forEachVersion(t, func(t *testing.T, srv *pgtest.Server, dsn string) {
		for _, c := range []struct{ args, want string }{
			{"42", "key 42"}, {"-5000000000", "key -5000000000"}, {"7, -3", "key (7, -3)"},
		} {
			holder := pgtest.Connect(t, dsn, "")
			pgtest.MustExec(t, holder, `SELECT pg_advisory_lock(`+c.args+`)`)
			_, l, release := blockedBehind(t, dsn, holder, `SELECT pg_advisory_lock(`+c.args+`)`, `SELECT pg_advisory_unlock(`+c.args+`)`)
			if text(l.LockType) != "advisory" || text(l.LockedObject) != c.want || text(l.BlockingState) != "idle" || l.LockedRelation != nil {
				t.Errorf("pg_advisory_lock(%s): type %s, object %s, holder %s, relation %v; want advisory, %s, idle and none",
					c.args, text(l.LockType), text(l.LockedObject), text(l.BlockingState), l.LockedRelation, c.want)
			}
			release()
		}
	})
}

// blockedBehind runs wait on a session of its own, blocked behind holder's lock, until a
// sample-tier collection pairs them: the runner, the first pair, and release, which runs
// unlock on holder and waits for wait to finish.
func blockedBehind(t *testing.T, dsn string, holder *pgx.Conn, wait, unlock string) (*collectors.Runner, collectors.LockWait, func()) {
	t.Helper()
	waiter := pgtest.Connect(t, dsn, "")
	blocked := make(chan error, 1)
	go func() {
		_, err := waiter.Exec(context.Background(), wait)
		blocked <- err
	}()
	r := newRunner(t, dsn)
	var c *collectors.Collection
	waitUntil(t, 5*time.Second, func() bool {
		c = collect(t, r, collectors.TierSample)
		return len(c.Locks) > 0
	})
	return r, c.Locks[0], func() {
		pgtest.MustExec(t, holder, unlock)
		if err := <-blocked; err != nil {
			t.Fatal(err)
		}
	}
}

func text(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// TestSlowVacuumShowsInProgress: a throttled VACUUM appears in pgbatch_progress_operations,
// on every version including 17, whose vacuum progress columns were renamed.
func TestSlowVacuumShowsInProgress(t *testing.T) {
	forEachVersion(t, func(t *testing.T, srv *pgtest.Server, dsn string) {
		conn := pgtest.Connect(t, dsn, "")
		pgtest.MustExec(t, conn, `CREATE TABLE churn (id int, pad text) WITH (autovacuum_enabled = off)`)
		pgtest.MustExec(t, conn, `INSERT INTO churn SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g`)
		pgtest.MustExec(t, conn, `DELETE FROM churn WHERE id % 2 = 0`)
		var pid uint32
		if err := conn.QueryRow(context.Background(), `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
			t.Fatal(err)
		}
		pgtest.MustExec(t, conn, `SET vacuum_cost_delay = '20ms'`)
		pgtest.MustExec(t, conn, `SET vacuum_cost_limit = 1`)
		vacuumDone := make(chan error, 1)
		go func() { _, err := conn.Exec(context.Background(), `VACUUM churn`); vacuumDone <- err }()

		r := newRunner(t, dsn)
		var c *collectors.Collection
		waitUntil(t, 10*time.Second, func() bool {
			c = collect(t, r, collectors.TierSample)
			return len(c.Progress) > 0
		})
		if n := metric(t, r, collectors.TierSample, "pgbatch_progress_operations", map[string]string{"command": "vacuum"}); n != 1 {
			t.Errorf("progress_operations{command=vacuum} = %v, want 1", n)
		}
		op := c.Progress[0]
		if op.Type != "vacuum" || uint32(op.PID) != pid || op.Relname == nil || *op.Relname != "churn" || op.BlocksTotal == nil || op.Phase == nil {
			t.Errorf("progress = %+v", op)
		}
		admin := pgtest.Connect(t, dsn, "")
		pgtest.MustExec(t, admin, `SELECT pg_cancel_backend($1)`, pid)
		<-vacuumDone
	})
}

// TestExclusiveLockDoesNotStallExporter: a tracked table under ACCESS EXCLUSIVE (ALTER TABLE
// in an open transaction) neither stalls a collection nor queues the exporter behind the lock.
func TestExclusiveLockDoesNotStallExporter(t *testing.T) {
	forEachVersion(t, func(t *testing.T, srv *pgtest.Server, dsn string) {
		holder := pgtest.Connect(t, dsn, "")
		pgtest.MustExec(t, holder, `CREATE TABLE orders (id int)`)
		pgtest.MustExec(t, holder, `BEGIN`)
		pgtest.MustExec(t, holder, `ALTER TABLE orders ADD COLUMN note text`)
		r := newRunner(t, dsn, "public.orders")
		start := time.Now()
		c := collect(t, r, collectors.TierSnapshot)
		if took := time.Since(start); took > testOptions.LockTimeout {
			t.Errorf("snapshot took %s with the table locked; lock_timeout is %s", took, testOptions.LockTimeout)
		}
		if len(c.Tables) != 1 || c.Tables[0].RelationSize != nil {
			t.Errorf("tables = %+v, want orders without sizes while locked", c.Tables)
		}
		pgtest.MustExec(t, holder, `COMMIT`)
		c = collect(t, r, collectors.TierSnapshot)
		if len(c.Tables) != 1 || c.Tables[0].RelationSize == nil {
			t.Errorf("tables = %+v, want orders with sizes once unlocked", c.Tables)
		}
	})
}

// TestRelationStatesWhileLocked: at a batch's boundary, a table another session holds ACCESS
// EXCLUSIVE on keeps its row, without what cannot be read without opening it (its size, its
// indexes' and triggers' definitions: unknown, never an empty list), within lock_timeout; its
// foreign keys are read from the catalog. Once unlocked, all of it.
func TestRelationStatesWhileLocked(t *testing.T) {
	forEachVersion(t, func(t *testing.T, srv *pgtest.Server, dsn string) {
		holder := pgtest.Connect(t, dsn, "")
		pgtest.MustExec(t, holder, `CREATE TABLE orders (id int PRIMARY KEY, note text)`)
		pgtest.MustExec(t, holder, `CREATE TABLE lines (order_id int REFERENCES orders)`)
		pgtest.MustExec(t, holder, `CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$`)
		pgtest.MustExec(t, holder, `CREATE TRIGGER orders_note BEFORE UPDATE ON orders FOR EACH ROW
			WHEN (OLD.note IS DISTINCT FROM NEW.note) EXECUTE FUNCTION noop()`)
		pgtest.MustExec(t, holder, `BEGIN`)
		pgtest.MustExec(t, holder, `ALTER TABLE orders ADD COLUMN total numeric`)
		r := newRunner(t, dsn, "public.orders")
		states := func() []collectors.RelationState {
			r.Trigger(collectors.TierSnapshot)
			return collect(t, r, collectors.TierSnapshot).RelationStates
		}
		start := time.Now()
		s := states()
		if took := time.Since(start); took > testOptions.LockTimeout {
			t.Errorf("snapshot took %s with the table locked; lock_timeout is %s", took, testOptions.LockTimeout)
		}
		if len(s) != 1 || s[0].TotalSize != nil || s[0].Indexes != nil || s[0].Triggers != nil ||
			!strings.Contains(s[0].ForeignKeys, `"lines_order_id_fkey"`) {
			t.Errorf("states = %+v, want orders without size, indexes and triggers while locked, with its key", s)
		}
		pgtest.MustExec(t, holder, `COMMIT`)
		s = states()
		if len(s) != 1 || s[0].TotalSize == nil || s[0].Indexes == nil || !strings.Contains(*s[0].Indexes, `"orders_pkey"`) ||
			s[0].Triggers == nil || !strings.Contains(*s[0].Triggers, `"orders_note"`) {
			t.Errorf("states = %+v, want orders with its size, index and trigger once unlocked", s)
		}
	})
}

// TestSettingsFingerprintFunctions: the settings document of a requested snapshot (a batch's
// boundary) holds an md5 of each function and procedure of the database's own, changed by
// CREATE OR REPLACE with another body (a SQL-standard one's too) and not by the same one again;
// an extension's functions (pg_stat_statements', in public) are not there, and a snapshot not
// requested reads none.
func TestSettingsFingerprintFunctions(t *testing.T) {
	forEachVersion(t, func(t *testing.T, srv *pgtest.Server, dsn string) {
		c := pgtest.Connect(t, dsn, "")
		pgtest.MustExec(t, c, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`)
		define := func(body string) {
			pgtest.MustExec(t, c, `CREATE OR REPLACE FUNCTION public.apply_payment(p_id int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN `+body+` END $$`)
		}
		r := newRunner(t, dsn)
		functions := func() map[string]string {
			t.Helper()
			r.Trigger(collectors.TierSnapshot)
			var doc struct{ Functions map[string]string }
			if err := json.Unmarshal([]byte(*collect(t, r, collectors.TierSnapshot).Settings), &doc); err != nil {
				t.Fatal(err)
			}
			return doc.Functions
		}
		define(`RETURN p_id;`)
		pgtest.MustExec(t, c, `CREATE PROCEDURE public.purge() LANGUAGE sql AS $$ SELECT 1 $$`)
		pgtest.MustExec(t, c, `CREATE FUNCTION public.fee(p int) RETURNS int LANGUAGE sql RETURN p * 2`)
		before := functions()
		if len(before) != 3 || before["public.apply_payment(integer)"] == "" || before["public.purge()"] == "" || before["public.fee(integer)"] == "" {
			t.Errorf("functions %v, want public.apply_payment(integer), public.purge() and public.fee(integer) only", before)
		}
		if !strings.Contains(*collect(t, r, collectors.TierSnapshot).Settings, `"extensions"`) ||
			strings.Contains(*collect(t, r, collectors.TierSnapshot).Settings, `"functions"`) {
			t.Errorf("a snapshot not requested: want the settings without the functions")
		}
		pgtest.MustExec(t, c, `CREATE OR REPLACE FUNCTION public.fee(p int) RETURNS int LANGUAGE sql RETURN p * 3`)
		if fee := functions()["public.fee(integer)"]; fee == before["public.fee(integer)"] {
			t.Errorf("a SQL-standard body replaced: md5 %s unchanged", fee)
		}
		define(`RETURN p_id;`)
		if same := functions()["public.apply_payment(integer)"]; same != before["public.apply_payment(integer)"] {
			t.Errorf("the same body again: md5 %s, was %s", same, before["public.apply_payment(integer)"])
		}
		define(`PERFORM pg_sleep(0); RETURN p_id;`)
		if changed := functions()["public.apply_payment(integer)"]; changed == before["public.apply_payment(integer)"] {
			t.Errorf("another body: md5 %s unchanged", changed)
		}
	})
}

// TestReplicationLag: a connected replica (a logical subscription, which streams through a
// walsender like a physical standby) shows in pg_stat_replication and in the lag families.
func TestReplicationLag(t *testing.T) {
	for _, v := range pgtest.Versions() {
		t.Run(fmt.Sprintf("pg%d", v), func(t *testing.T) {
			t.Parallel()
			srv := pgtest.StartWith(t, v, pgtest.Options{Settings: map[string]string{"wal_level": "logical"}})
			pubDSN, subDSN := srv.NewDatabase(t), srv.NewDatabase(t)
			pub, sub := pgtest.Connect(t, pubDSN, ""), pgtest.Connect(t, subDSN, "")
			slot := fmt.Sprintf("lag_%d", v)
			for _, c := range []*pgx.Conn{pub, sub} {
				pgtest.MustExec(t, c, `CREATE TABLE items (id int PRIMARY KEY)`)
			}
			pgtest.MustExec(t, pub, `CREATE PUBLICATION lagpub FOR TABLE items`)
			// A subscription to the same server cannot create its slot itself (it would wait on its own transaction).
			pgtest.MustExec(t, pub, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot)
			// copy_data = false: no table-sync worker, whose slot creation on this same server
			// would wait on our own DROP SUBSCRIPTION at cleanup.
			pgtest.MustExec(t, sub, fmt.Sprintf(`CREATE SUBSCRIPTION %s CONNECTION '%s' PUBLICATION lagpub WITH (create_slot = false, slot_name = '%s', copy_data = false)`,
				slot, pubDSN, slot))
			t.Cleanup(func() { dropSubscription(t, subDSN, pubDSN, slot) })
			pgtest.MustExec(t, pub, `INSERT INTO items SELECT generate_series(1, 100)`)

			r := newRunner(t, pubDSN)
			// Wait for the subscription's own walsender (table-sync workers come and go beside it).
			waitUntil(t, 15*time.Second, func() bool {
				for _, s := range collect(t, r, collectors.TierSample).Replication {
					if s.ApplicationName == slot && s.ReplayLagBytes != nil {
						return true
					}
				}
				return false
			})
			labels := map[string]string{"application_name": slot, "stage": "replay"}
			if v := value(gather(t, r, collectors.TierSample), "pgbatch_replication_lag_bytes", labels); v == nil || *v < 0 {
				t.Errorf("replication_lag_bytes%v = %v, want a non-negative value", labels, v)
			}
			snap := collect(t, r, collectors.TierSnapshot)
			var found bool
			for _, s := range snap.ReplicationSlots {
				found = found || (s.SlotName == slot && s.SlotType == "logical" && s.RetainedWALBytes != nil)
			}
			if !found {
				t.Errorf("slot %s not reported: %+v", slot, snap.ReplicationSlots)
			}
		})
	}
}

// dropSubscription detaches the subscription from its slot before dropping it (so the drop does
// not call back into this server), then drops the slot once its walsender has gone.
func dropSubscription(t *testing.T, subDSN, pubDSN, name string) {
	sub, pub := pgtest.Connect(t, subDSN, ""), pgtest.Connect(t, pubDSN, "")
	pgtest.MustExec(t, sub, `SET statement_timeout = '10s'`)
	pgtest.MustExec(t, sub, fmt.Sprintf(`ALTER SUBSCRIPTION %s DISABLE`, name))
	pgtest.MustExec(t, sub, fmt.Sprintf(`ALTER SUBSCRIPTION %s SET (slot_name = NONE)`, name))
	pgtest.MustExec(t, sub, fmt.Sprintf(`DROP SUBSCRIPTION %s`, name))
	waitUntil(t, 10*time.Second, func() bool {
		var active bool
		err := pub.QueryRow(context.Background(), `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, name).Scan(&active)
		return err == nil && !active
	})
	pgtest.MustExec(t, pub, `SELECT pg_drop_replication_slot($1)`, name)
}
