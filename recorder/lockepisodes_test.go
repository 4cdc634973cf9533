package recorder

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/schema"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// lockWait is one wait the test causes: its waiter runs stmt while its blocker holds a lock,
// which the blocker releases d after the waiter began (or, for the second of two waits in a
// row, after the first ended).
type lockWait struct {
	stmt, lock string // the waiter's statement; what the blocker runs in its open transaction
	relation   string // the relation recorded, "" for a row lock (a wait on a transaction id)
	d          time.Duration
	blocker    *pgx.Conn
	blockerPID int32
	waited     time.Duration // as the waiter timed its statement
}

// TestLockWaitEpisodesAtDefaultIntervals: eight lock waits of 2 to 5 s (row locks and table
// locks; one session waits twice in a row, on two blockers; the longest 2 s longer than the
// others, so that it stays the longest recorded) at the default intervals, sample tier 30 s
// and wait sampler 1 s, under which the sample tier's lock_samples kept 1 of 8. Each is
// recorded as one episode with its blocker and a duration within a sampler interval of what
// its waiter timed. No lock sample is taken while nobody waits: pg_stat_statements counts the
// lock query, the sample tier's runs and the sampler's, which its counter reports (Migrate's
// CREATE FUNCTION of the pg_cron mode's copy is not one). A wait still going on at shutdown is
// recorded as still waiting, ended where a lock sample saw it as the exporter stopped.
// diagnose names the longest wait's blocker with its length.
func TestLockWaitEpisodesAtDefaultIntervals(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		ctx := context.Background()
		dsn := srv.NewDatabase(t)
		srv.Exec(t, dsn, `CREATE EXTENSION pg_stat_statements;
			CREATE TABLE accounts (id int PRIMARY KEY, balance int); INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 10) g;
			CREATE TABLE t1 (id int); CREATE TABLE t2 (id int); CREATE TABLE t3 (id int); CREATE TABLE t4 (id int)`)
		pool := newPool(t, dsn, false, "pg-batch-exporter recorder")
		if err := schema.Migrate(ctx, pool); err != nil {
			t.Fatal(err)
		}
		const sampleEvery, waitEvery = 30 * time.Second, time.Second // the exporter's defaults
		runner := collectors.NewRunner(collectors.RunnerOptions{Pool: newPool(t, dsn, true, ""), Selection: collectors.AllEnabled(),
			SampleEvery: sampleEvery, SnapshotEvery: time.Minute, WaitSampleEvery: waitEvery})
		rec := New(Options{Pool: pool, Retention: 24 * time.Hour, BufferRows: 100000, Trigger: runner.Trigger})
		runner.Subscribe(rec.Consume)
		var sampleTier atomic.Int64 // sample-tier collections done, each with one lock query
		runner.Subscribe(func(c *collectors.Collection) {
			if c.Tier == collectors.TierSample {
				sampleTier.Add(1)
			}
		})
		runCtx, stop := context.WithCancel(ctx)
		var running sync.WaitGroup
		running.Add(2)
		go func() { defer running.Done(); runner.Run(runCtx) }()
		go func() { defer running.Done(); rec.Run(runCtx) }()
		defer func() { stop(); running.Wait() }()

		watch := pgtest.Connect(t, dsn, "watch")
		lockQueries := func() int64 {
			t.Helper()
			var n int64
			if err := watch.QueryRow(ctx, `SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements
					WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
					AND query LIKE 'SELECT DISTINCT ON (a.pid, blocker.pid)%pg_blocking_pids%'`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		// quiet asserts that while nobody waits on a lock for 2.5 s, the lock query runs only in
		// the sample tier's collections (each consumed once its queries are done).
		quiet := func(when string) {
			t.Helper()
			calls, collections := lockQueries(), sampleTier.Load()
			time.Sleep(2500 * time.Millisecond)
			calls = lockQueries() - calls
			time.Sleep(time.Second) // a collection under way is consumed by now
			if collections = sampleTier.Load() - collections; calls > collections {
				t.Errorf("%s: %d lock queries in 2.5 s with nobody waiting, %d of them sample-tier collections", when, calls, collections)
			}
		}
		begin := time.Now()
		quiet("before the waits")

		pid := func(c *pgx.Conn) int32 {
			var p int32
			if err := c.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&p); err != nil {
				t.Fatal(err)
			}
			return p
		}
		waits := []*lockWait{
			{stmt: `UPDATE accounts SET balance = balance + 1 WHERE id = 1`, lock: `UPDATE accounts SET balance = 0 WHERE id = 1`, d: 2 * time.Second},
			{stmt: `UPDATE accounts SET balance = balance + 1 WHERE id = 2`, lock: `UPDATE accounts SET balance = 0 WHERE id = 2`, d: 2250 * time.Millisecond},
			{stmt: `UPDATE accounts SET balance = balance + 1 WHERE id = 3`, lock: `SELECT * FROM accounts WHERE id = 3 FOR UPDATE`, d: 2500 * time.Millisecond},
			{stmt: `SELECT count(*) FROM t1`, lock: `LOCK TABLE t1 IN ACCESS EXCLUSIVE MODE`, relation: "public.t1", d: 2750 * time.Millisecond},
			{stmt: `SELECT count(*) FROM t2`, lock: `LOCK TABLE t2 IN ACCESS EXCLUSIVE MODE`, relation: "public.t2", d: 3 * time.Second},
			{stmt: `INSERT INTO t3 VALUES (1)`, lock: `LOCK TABLE t3 IN SHARE MODE`, relation: "public.t3", d: 5 * time.Second},
			// One session, twice in a row: a row lock, then a table lock.
			{stmt: `UPDATE accounts SET balance = balance + 1 WHERE id = 4`, lock: `UPDATE accounts SET balance = 0 WHERE id = 4`, d: 2 * time.Second},
			{stmt: `SELECT count(*) FROM t4`, lock: `LOCK TABLE t4 IN ACCESS EXCLUSIVE MODE`, relation: "public.t4", d: 2500 * time.Millisecond},
		}
		var waiters []*pgx.Conn
		for i, w := range waits {
			w.blocker = pgtest.Connect(t, dsn, fmt.Sprintf("blocker-%d", i))
			w.blockerPID = pid(w.blocker)
			pgtest.MustExec(t, w.blocker, `BEGIN`)
			pgtest.MustExec(t, w.blocker, w.lock)
			if i < 7 {
				waiters = append(waiters, pgtest.Connect(t, dsn, fmt.Sprintf("waiter-%d", i)))
			}
		}
		// wait runs one wait on c: the blocker lets go d after the statement was sent.
		wait := func(c *pgx.Conn, w *lockWait) {
			start := time.Now()
			release := time.AfterFunc(w.d, func() { _, _ = w.blocker.Exec(ctx, `COMMIT`) })
			defer release.Stop()
			if _, err := c.Exec(ctx, w.stmt); err != nil {
				t.Errorf("%s: %v", w.stmt, err)
			}
			w.waited = time.Since(start)
		}
		var all sync.WaitGroup
		for i, c := range waiters {
			all.Add(1)
			go func() {
				defer all.Done()
				time.Sleep(time.Duration(i) * 150 * time.Millisecond) // not all on the same instant
				wait(c, waits[i])
				if i == 6 {
					wait(c, waits[7])
				}
			}()
		}
		all.Wait()
		wavesEnd := time.Now()
		time.Sleep(200 * time.Millisecond) // a reading that saw the last waiter has taken its lock sample
		quiet("after the waits")

		// A wait still going on when the exporter stops.
		openBlocker := pgtest.Connect(t, dsn, "blocker-open")
		pgtest.MustExec(t, openBlocker, `BEGIN; LOCK TABLE t1 IN ACCESS EXCLUSIVE MODE`)
		openWaiter := pgtest.Connect(t, dsn, "waiter-open")
		openPID := pid(openWaiter)
		openDone := make(chan error, 1)
		openStart := time.Now()
		go func() { _, err := openWaiter.Exec(ctx, `SELECT count(*) FROM t1`); openDone <- err }()
		time.Sleep(2500 * time.Millisecond)
		stopping := time.Now()
		stop()
		running.Wait()
		stopped := time.Now()
		flushed := rec.Flush(ctx)
		pgtest.MustExec(t, openBlocker, `COMMIT`)
		if err := <-openDone; err != nil {
			t.Fatal(err)
		}
		if flushed.LostCollections > 0 {
			t.Fatalf("flush: %+v", flushed)
		}

		// Every lock query was the sample tier's or a lock sample the sampler counted.
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(runner.LiveMetrics(collectors.TierSample))
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		counters := map[string]float64{}
		for _, mf := range mfs {
			if len(mf.GetMetric()) == 1 && mf.GetMetric()[0].GetCounter() != nil {
				counters[mf.GetName()] = mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		lockSamples, collections := counters["pgbatch_lock_samples_total"], sampleTier.Load()
		if calls := lockQueries(); float64(calls) != lockSamples+float64(collections) || lockSamples < 4 {
			t.Errorf("%d lock queries: %v lock samples and %d sample-tier collections, want their sum (and a lock sample a second while a wait lasted 5 s)",
				calls, lockSamples, collections)
		}
		if n := counters["pgbatch_lock_wait_episodes_total"]; n != 9 {
			t.Errorf("pgbatch_lock_wait_episodes_total = %v, want 9", n)
		}
		var meanMs float64
		if err := watch.QueryRow(ctx, `SELECT sum(total_exec_time) / sum(calls) FROM pg_stat_statements
				WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
				AND query LIKE 'SELECT DISTINCT ON (a.pid, blocker.pid)%pg_blocking_pids%'`).Scan(&meanMs); err != nil {
			t.Fatal(err)
		}
		t.Logf("%v lock samples, %d sample-tier collections; the lock query took %.2f ms on average", lockSamples, collections, meanMs)

		c := pgtest.Connect(t, dsn, "")
		rows := pgtest.Query(t, c, `SELECT blocked_pid, blocking_pid, blocking_app, blocked_app, lock_type, locked_relation,
				extract(epoch FROM ended_at - started_at)::float8 AS seconds, duration_seconds::float8 AS duration,
				still_waiting, ended_at = last_seen_at AS ended_last_seen, blocked_backend_start IS NOT NULL AS backend_start
			FROM telemetry.lock_episodes($1, now())`, begin)
		type pair struct{ waiter, blocker int32 }
		byPair := map[pair]map[string]any{}
		for _, r := range rows {
			byPair[pair{r["blocked_pid"].(int32), r["blocking_pid"].(int32)}] = r
		}
		tolerance := waitEvery + 250*time.Millisecond
		for i, w := range waits {
			waiter := waiters[min(i, 6)]
			r := byPair[pair{pid(waiter), w.blockerPID}]
			if r == nil {
				t.Errorf("wait %d (%s, %s) is not recorded: %v", i, w.stmt, w.waited, rows)
				continue
			}
			got := time.Duration(r["seconds"].(float64) * float64(time.Second))
			t.Logf("wait %d: %s waited %s, recorded %s (%v)", i, w.stmt, w.waited.Round(time.Millisecond), got.Round(time.Millisecond), r["duration"])
			if d := got - w.waited; d.Abs() > tolerance {
				t.Errorf("wait %d recorded as %s, its waiter timed %s: more than %s apart", i, got, w.waited, tolerance)
			}
			wantType := "relation"
			if w.relation == "" {
				wantType = "transactionid"
			}
			wantRelation := any(nil)
			if w.relation != "" {
				wantRelation = w.relation
			}
			if r["blocking_app"] != fmt.Sprintf("blocker-%d", i) || r["blocked_app"] != fmt.Sprintf("waiter-%d", min(i, 6)) ||
				r["lock_type"] != wantType || r["locked_relation"] != wantRelation || r["still_waiting"] != false || r["backend_start"] != true {
				t.Errorf("wait %d: %v", i, r)
			}
		}
		open := byPair[pair{openPID, pid(openBlocker)}]
		if open == nil || open["still_waiting"] != true || open["ended_last_seen"] != true {
			t.Fatalf("the wait going on at shutdown: %v", open)
		}
		// Ended where last seen: by a lock sample as the exporter stopped.
		got := time.Duration(open["seconds"].(float64) * float64(time.Second))
		t.Logf("the wait going on at shutdown: recorded %s, the exporter stopped %s to %s after it began", got.Round(time.Millisecond),
			stopping.Sub(openStart).Round(time.Millisecond), stopped.Sub(openStart).Round(time.Millisecond))
		if got < stopping.Sub(openStart)-100*time.Millisecond || got > stopped.Sub(openStart) {
			t.Errorf("the wait going on at shutdown recorded as %s; the exporter stopped %s to %s after it began", got, stopping.Sub(openStart), stopped.Sub(openStart))
		}
		sampled := pgtest.Query(t, c, `SELECT count(DISTINCT (blocked_pid, blocking_pid)) AS n FROM telemetry.lock_samples WHERE blocking_pid <> $1`, pid(openBlocker))
		t.Logf("the sample tier's lock_samples saw %v of the %d waits", sampled[0]["n"], len(waits))
		if len(rows) != len(waits)+1 {
			t.Errorf("%d episodes recorded, want %d: %v", len(rows), len(waits)+1, rows)
		}

		// diagnose names the longest wait's blocker, with the wait's length.
		var evidence []byte
		if err := c.QueryRow(ctx, `SELECT evidence FROM telemetry.diagnose($1, $2) WHERE pattern = 'lock_contention'`, begin, wavesEnd).Scan(&evidence); err != nil {
			t.Fatalf("lock_contention: %v", err)
		}
		var ev struct {
			Episodes int     `json:"lock_wait_episodes"`
			Longest  float64 `json:"longest_wait_seconds"`
			Blockers []struct {
				PID        int32   `json:"blocking_pid"`
				App        string  `json:"blocking_app"`
				MaxBlocked float64 `json:"max_blocked_seconds"`
			} `json:"blockers"`
		}
		if err := json.Unmarshal(evidence, &ev); err != nil {
			t.Fatal(err)
		}
		longest := waits[5]
		if ev.Episodes != len(waits) || len(ev.Blockers) == 0 || ev.Blockers[0].PID != longest.blockerPID || ev.Blockers[0].App != "blocker-5" ||
			math.Abs(ev.Blockers[0].MaxBlocked-longest.waited.Seconds()) > tolerance.Seconds() || ev.Longest != ev.Blockers[0].MaxBlocked {
			t.Errorf("lock_contention evidence %s, want %d episodes, first blocker pid %d (blocker-5) with its %s wait", evidence, len(waits), longest.blockerPID, longest.waited)
		}
	})
}
