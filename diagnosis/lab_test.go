package diagnosis

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/internal/pgtest"
	"github.com/pg-batch-exporter/pg-batch-exporter/internal/postgres"
	"github.com/pg-batch-exporter/pg-batch-exporter/recorder"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// lab is a database with the exporter's runner and the recorder collecting into it, as in
// production but faster: a sample every 200ms, snapshots when batch_begin/batch_end ask.
type lab struct {
	t     *testing.T
	srv   *pgtest.Server
	dsn   string
	admin *pgxpool.Pool // writable; its sessions are left out of the samples like the exporter's
}

func newLab(t *testing.T, major int) *lab {
	t.Helper()
	srv := pgtest.Start(t, major)
	l := &lab{t: t, srv: srv, dsn: srv.NewDatabase(t)}
	l.admin = l.pool(false, "pg-batch-exporter test")
	ctx, cancel := context.WithCancel(context.Background())
	if err := recorder.Migrate(ctx, l.admin); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	runner := collectors.NewRunner(collectors.RunnerOptions{Pool: l.pool(true, ""), Selection: collectors.AllEnabled(),
		SampleEvery: 200 * time.Millisecond, SnapshotEvery: time.Hour, WaitSampleEvery: 100 * time.Millisecond})
	rec := recorder.New(recorder.Options{Pool: l.pool(false, "pg-batch-exporter recorder"), Retention: 24 * time.Hour,
		BufferRows: 1_000_000, Trigger: runner.Trigger})
	runner.Subscribe(rec.Consume)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); runner.Run(ctx) }()
	go func() { defer wg.Done(); rec.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	// The first snapshot and sample are written: the recorder knows the server.
	l.waitFor("the first snapshot and sample", `SELECT EXISTS (SELECT FROM telemetry.snapshots) AND EXISTS (SELECT FROM telemetry.samples)`)
	return l
}

// newSQLModeLab is the seed's deployment instead: telemetry.sample() called every 200ms, as
// pg_cron would call it, and no recorder listening, so the markers take their snapshots.
func newSQLModeLab(t *testing.T, major int) *lab {
	t.Helper()
	srv := pgtest.Start(t, major)
	l := &lab{t: t, srv: srv, dsn: srv.NewDatabase(t)}
	l.admin = l.pool(false, "pg-batch-exporter test")
	ctx, cancel := context.WithCancel(context.Background())
	if err := recorder.Migrate(ctx, l.admin); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	l.exec(`SELECT telemetry.snapshot()`)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if _, err := l.admin.Exec(ctx, `SELECT telemetry.sample()`); err != nil && ctx.Err() == nil {
				t.Errorf("sample(): %v", err)
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return l
}

func (l *lab) pool(readOnly bool, app string) *pgxpool.Pool {
	l.t.Helper()
	cfg, err := postgres.Config(postgres.Options{DSN: l.dsn, MaxConns: 4, StatementTimeout: time.Minute,
		LockTimeout: 30 * time.Second, ReadOnly: readOnly, ApplicationName: app})
	if err != nil {
		l.t.Fatal(err)
	}
	p, err := postgres.NewPool(context.Background(), cfg)
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(p.Close)
	return p
}

// conn opens a session as a batch or another job would, under an application_name of its own.
func (l *lab) conn(app string) *pgx.Conn {
	l.t.Helper()
	return pgtest.Connect(l.t, l.dsn, app)
}

func (l *lab) exec(sql string, args ...any) {
	l.t.Helper()
	if _, err := l.admin.Exec(context.Background(), sql, args...); err != nil {
		l.t.Fatalf("%s: %v", sql, err)
	}
}

// waitFor polls a boolean query until it is true (at most 15s).
func (l *lab) waitFor(what, sql string, args ...any) {
	l.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var ok bool
		if err := l.admin.QueryRow(context.Background(), sql, args...).Scan(&ok); err != nil {
			l.t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// run is one run of a batch through the markers: begin, the work on the batch's own session,
// end; it returns when the recorder holds the run's boundary snapshots and samples past its end.
func (l *lab) run(batch string, work func(c *pgx.Conn)) int64 {
	l.t.Helper()
	ctx := context.Background()
	c := l.conn("etl_" + batch)
	var runID int64
	if err := c.QueryRow(ctx, `SELECT telemetry.batch_begin($1)`, batch).Scan(&runID); err != nil {
		l.t.Fatal(err)
	}
	l.waitFor("the run's start snapshot", `SELECT EXISTS (SELECT FROM telemetry.snapshots s JOIN telemetry.batch_runs r ON s.captured_at >= r.started_at WHERE r.run_id = $1)`, runID)
	work(c)
	if _, err := c.Exec(ctx, `SELECT telemetry.batch_end($1)`, batch); err != nil {
		l.t.Fatal(err)
	}
	l.waitFor("the run's end snapshot and a later sample", `SELECT EXISTS (SELECT FROM telemetry.snapshots s JOIN telemetry.batch_runs r ON s.captured_at >= r.ended_at WHERE r.run_id = $1)
		AND EXISTS (SELECT FROM telemetry.samples s JOIN telemetry.batch_runs r ON s.captured_at >= r.ended_at WHERE r.run_id = $1)`, runID)
	// compare() over the run is exact: it starts and ends on the snapshots the markers asked for
	// (the schedule takes one an hour, so any later snapshot is a requested one). How promptly a
	// request is served is TestRequestSnapshot's business; here a loaded CI machine may take a
	// few seconds, so the bound only excludes some other, much later snapshot.
	var exact bool
	err := l.admin.QueryRow(ctx, `SELECT start_snapshot_at >= started_at AND end_snapshot_at >= ended_at
		AND (SELECT elapsed_seconds FROM telemetry.compare(start_snapshot_at, end_snapshot_at)) <= duration_seconds + 10
		FROM telemetry.recent_batch_runs WHERE run_id = $1`, runID).Scan(&exact)
	if err != nil || !exact {
		l.t.Fatalf("run %d does not start and end on its own snapshots (%v)", runID, err)
	}
	return runID
}

// cpu keeps the session busy for about d: the batch's ordinary work (a set-returning function
// in the select list streams its rows, so nothing spills to temporary files).
func cpu(t *testing.T, c *pgx.Conn, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); {
		if _, err := c.Exec(context.Background(), `SELECT count(*) FROM (SELECT generate_series(1, 100000)) s`); err != nil {
			t.Fatal(err)
		}
	}
}

// exec runs a statement on a session, failing the test on error.
func mustExec(t *testing.T, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(context.Background(), sql, args...); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("%s: %v", sql, err)
	}
}
