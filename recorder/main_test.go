package recorder

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pg-batch-exporter/pg-batch-exporter/batch"
	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/schema"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// env is one test's monitored database with the schema installed and a recorder writing
// into it from a runner reading it.
type env struct {
	t      *testing.T
	srv    *pgtest.Server
	dsn    string
	pool   *pgxpool.Pool // writable, for the recorder
	runner *collectors.Runner
	rec    *Recorder
	// tracker, once withTracker is called, splits the sampler's seconds between a run's own
	// sessions and the others, as the exporter does.
	tracker *batch.Tracker
}

// withTracker follows the recorded runs with a batch tracker, as the exporter does.
func (e *env) withTracker() {
	e.tracker = batch.NewTracker(batch.Options{RunsDB: e.pool, QuietPeriod: time.Second, RefreshEvery: time.Hour})
	e.tracker.Follow(e.runner.Waits())
	e.runner.SetBatchWaits(e.tracker.TakeRunWaits)
}

func newEnv(t *testing.T, srv *pgtest.Server) *env {
	t.Helper()
	return newEnvOn(t, srv, srv.NewDatabase(t))
}

func newEnvOn(t *testing.T, srv *pgtest.Server, dsn string) *env {
	t.Helper()
	return newEnvWith(t, srv, dsn, 0)
}

// newEnvWith is newEnvOn with the recorder storing pg_stat_statements between batches'
// boundaries at most every statementsEvery (0: the exporter's default, 1h; NoInterval: at
// every snapshot).
func newEnvWith(t *testing.T, srv *pgtest.Server, dsn string, statementsEvery time.Duration) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, srv: srv, dsn: dsn}
	e.pool = newPool(t, dsn, false, "pg-batch-exporter recorder")
	if err := schema.Migrate(ctx, e.pool); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	readPool := newPool(t, dsn, true, "")
	// The tests take the wait sampler's samples themselves (batchRun: every 200 ms, then a
	// sample-tier collection), and a sample stands for the time since the previous one up to
	// two intervals: 250 ms keeps a loaded machine's longer gaps (up to 500 ms) whole.
	e.runner = collectors.NewRunner(collectors.RunnerOptions{Pool: readPool, Selection: collectors.AllEnabled(),
		SampleEvery: time.Hour, SnapshotEvery: time.Hour, WaitSampleEvery: 250 * time.Millisecond})
	e.rec = New(Options{Pool: e.pool, Retention: 7 * 24 * time.Hour, BufferRows: 100000, Trigger: e.runner.Trigger,
		StatementsEvery: statementsEvery})
	e.runner.Subscribe(e.rec.Consume)
	return e
}

func newPool(t *testing.T, dsn string, readOnly bool, app string) *pgxpool.Pool {
	pool := pgtest.Pool(t, dsn, readOnly, app)
	t.Cleanup(pool.Close)
	return pool
}

// record collects a tier and writes it; it returns the collection's captured_at.
func (e *env) record(tier collectors.Tier) time.Time {
	e.t.Helper()
	ctx := context.Background()
	c, err := e.runner.Collect(ctx, tier)
	if err != nil {
		e.t.Fatalf("collect %s: %v", tier, err)
	}
	for _, r := range c.Results {
		if r.Err != nil {
			e.t.Fatalf("collector %s: %v", r.Collector, r.Err)
		}
	}
	if err := e.rec.drain(ctx); err != nil {
		e.t.Fatalf("write %s: %v", tier, err)
	}
	return c.CapturedAt
}

// boundary records the snapshot a batch's boundary asks for (telemetry.request_snapshot()):
// one that stores every statement.
func (e *env) boundary() time.Time {
	e.t.Helper()
	e.rec.mu.Lock()
	e.rec.statements.fullFrom = time.Now()
	e.rec.mu.Unlock()
	return e.record(collectors.TierSnapshot)
}

// exec runs statements in the test database as the superuser.
func (e *env) exec(sql string) { e.t.Helper(); e.srv.Exec(e.t, e.dsn, sql) }

// conn is a superuser connection to the test database, closed at the end of the test.
func (e *env) conn() *pgx.Conn {
	e.t.Helper()
	return pgtest.Connect(e.t, e.dsn, "")
}

// eventually polls a query returning one boolean (with fresh statistics each time) until it
// is true, for statistics that backends flush asynchronously. NULL counts as not yet (a
// session that has not started waiting has no wait_event_type).
func eventually(t *testing.T, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	// Three minutes: an autovacuum waited for may queue behind the workers busy in the package's
	// other databases on the shared server (once on CI's loaded 2-core machine, PostgreSQL 15,
	// a minute was not enough).
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var ok *bool
		if _, err := c.Exec(ctx, `SELECT pg_stat_clear_snapshot()`); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRow(ctx, sql, args...).Scan(&ok); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		if ok != nil && *ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still false after three minutes: %s", sql)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
