package batch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/diagnosis"
	"github.com/pg-batch-exporter/pg-batch-exporter/internal/postgres"
	"github.com/pg-batch-exporter/pg-batch-exporter/recorder"
	"github.com/pg-batch-exporter/pg-batch-exporter/schema"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// db is a migrated database and a pool to it as the exporter's tools open one.
func db(t *testing.T, major int, app string) (string, *pgxpool.Pool) {
	t.Helper()
	dsn := pgtest.Start(t, major).NewDatabase(t)
	cfg, err := postgres.Config(postgres.Options{DSN: dsn, MaxConns: 4, StatementTimeout: 30 * time.Second,
		LockTimeout: 5 * time.Second, ApplicationName: app})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := postgres.NewPool(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := schema.Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	return dsn, pool
}

type runRow struct {
	Batch, Status, Source string
	ExitCode              *int32
	Detail                *string
	Seconds               float64
}

func runs(t *testing.T, pool *pgxpool.Pool) []runRow {
	t.Helper()
	rows, _ := pool.Query(context.Background(), `SELECT batch, status, source, exit_code, detail,
		extract(epoch FROM coalesce(ended_at, now()) - started_at)::float8 FROM telemetry.batch_runs ORDER BY run_id`)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (runRow, error) {
		var x runRow
		err := r.Scan(&x.Batch, &x.Status, &x.Source, &x.ExitCode, &x.Detail, &x.Seconds)
		return x, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// metric returns the value of a family's series with these label values (in the order of
// the label names, sorted, as the registry keeps them), or nil.
func metric(t *testing.T, c prometheus.Collector, name string, labels ...string) *float64 {
	t.Helper()
	for _, mf := range gather(t, c) {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.Metric {
			for i, lp := range m.Label {
				if i >= len(labels) || lp.GetValue() != labels[i] {
					continue series
				}
			}
			return value(m)
		}
	}
	return nil
}

// gather is the collector's metric families as a registry serving it would gather them.
func gather(t *testing.T, c prometheus.Collector) []*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

func value(m *dto.Metric) *float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.Value
	case m.Counter != nil:
		return m.Counter.Value
	}
	return nil
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

func is(v *float64, want float64) bool { return v != nil && *v == want }

func TestMarkers(t *testing.T) {
	for _, major := range []int{15, 17} {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
			dsn, pool := db(t, major, "pg-batch-exporter test")
			ctx := context.Background()
			c := pgtest.Connect(t, dsn, "psql")
			listener := pgtest.Connect(t, dsn, "listener")
			if _, err := listener.Exec(ctx, "LISTEN "+recorder.SnapshotChannel); err != nil {
				t.Fatal(err)
			}
			exec := func(sql string) {
				t.Helper()
				if _, err := c.Exec(ctx, sql); err != nil {
					t.Fatalf("%s: %v", sql, err)
				}
			}
			snapshotAsked := func() {
				t.Helper()
				wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				if _, err := listener.WaitForNotification(wctx); err != nil {
					t.Fatalf("no snapshot request: %v", err)
				}
			}
			exec(`SELECT telemetry.batch_begin('nightly')`)
			snapshotAsked()
			exec(`SELECT telemetry.batch_end('nightly', 'failed')`)
			snapshotAsked()
			// A begin without an end: the next begin closes it as abandoned.
			exec(`SELECT telemetry.batch_begin('nightly')`)
			exec(`SELECT telemetry.batch_begin('nightly')`)
			exec(`SELECT telemetry.batch_end('nightly')`)
			// An end without a begin warns and changes nothing.
			exec(`SELECT telemetry.batch_end('nightly')`)
			// An exec wrapper killed with its session: the next marker closes its run.
			wrapper := pgtest.Connect(t, dsn, "pg-batch-exporter exec")
			if _, err := wrapper.Exec(ctx, `SELECT telemetry.batch_begin('weekly', 'exec')`); err != nil {
				t.Fatal(err)
			}
			wrapper.Close(ctx)
			// A run open longer than batch_max_run_seconds is closed too.
			exec(`SELECT telemetry.batch_begin('hourly', 'marker', now() - interval '2 days')`)
			eventually(t, "the wrapper's session to end", func() bool {
				var gone bool
				err := pool.QueryRow(ctx, `SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'pg-batch-exporter exec')`).Scan(&gone)
				return err == nil && gone
			})
			exec(`SELECT telemetry.batch_begin('monthly')`)

			got := runs(t, pool)
			want := []struct{ batch, status, source, detail string }{
				{"nightly", "failed", "marker", ""},
				{"nightly", "abandoned", "marker", "a new run began before batch_end"},
				{"nightly", "succeeded", "marker", ""},
				{"weekly", "abandoned", "exec", "the exec wrapper's session ended without batch_end"},
				{"hourly", "abandoned", "marker", "no batch_end within batch_max_run_seconds (86400 s)"},
				{"monthly", "running", "marker", ""},
			}
			if len(got) != len(want) {
				t.Fatalf("runs = %+v, want %d", got, len(want))
			}
			for i, w := range want {
				g := got[i]
				detail := ""
				if g.Detail != nil {
					detail = *g.Detail
				}
				if g.Batch != w.batch || g.Status != w.status || g.Source != w.source || detail != w.detail {
					t.Errorf("run %d = %s %s %s %q, want %s %s %s %q", i+1, g.Batch, g.Status, g.Source, detail, w.batch, w.status, w.source, w.detail)
				}
			}
			var recent int
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM telemetry.recent_batch_runs WHERE status = 'running'`).Scan(&recent); err != nil || recent != 1 {
				t.Errorf("recent_batch_runs shows %d open runs (%v), want 1", recent, err)
			}
			if _, err := c.Exec(ctx, `SELECT telemetry.batch_end('monthly', 'done')`); err == nil {
				t.Error("batch_end accepted the status 'done'")
			}
		})
	}
}

func TestExec(t *testing.T) {
	_, pool := db(t, 17, "pg-batch-exporter exec")
	check := `test "$PGAPPNAME" = nightly && test "$PGBATCH_BATCH" = nightly && test -n "$PGBATCH_RUN_ID"`
	for _, tc := range []struct {
		script string
		code   int
		status string
	}{
		{check, 0, "succeeded"},
		{check + " && exit 3", 3, "failed"},
		{"kill -TERM $$", 128 + 15, "cancelled"},
	} {
		var out, errOut testWriter
		code := Exec(ExecOptions{Pool: pool, Batch: "nightly", Command: []string{"sh", "-c", tc.script},
			Stdout: &out, Stderr: &errOut})
		if code != tc.code {
			t.Errorf("%s: exit status %d, want %d (stderr %q)", tc.script, code, tc.code, errOut)
		}
	}
	if code := Exec(ExecOptions{Pool: pool, Batch: "nightly", Command: []string{"/nonexistent/job"},
		Stdout: &testWriter{}, Stderr: &testWriter{}}); code != 127 {
		t.Errorf("a missing command: exit status %d, want 127", code)
	}
	got := runs(t, pool)
	wantStatus := []string{"succeeded", "failed", "cancelled", "failed"}
	wantCode := []int32{0, 3, 143, 127}
	if len(got) != len(wantStatus) {
		t.Fatalf("runs = %+v", got)
	}
	for i, g := range got {
		if g.Source != "exec" || g.Status != wantStatus[i] || g.ExitCode == nil || *g.ExitCode != wantCode[i] {
			t.Errorf("run %d = %+v, want exec %s with exit code %d", i+1, g, wantStatus[i], wantCode[i])
		}
	}
}

type testWriter []byte

func (w *testWriter) Write(p []byte) (int, error) { *w = append(*w, p...); return len(p), nil }

// Detection through the real wait sampler, markers read from the table, and the metrics of both.
func TestTracker(t *testing.T) {
	for _, major := range []int{15, 17} {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
			dsn, pool := db(t, major, "pg-batch-exporter batch")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			rules, err := ParseRules([]string{"nightly=application_name:^etl_nightly"})
			if err != nil {
				t.Fatal(err)
			}
			var triggers triggerCount
			tr := NewTracker(Options{Rules: rules, QuietPeriod: 400 * time.Millisecond, RunsDB: pool,
				RefreshEvery: 100 * time.Millisecond, RecorderDB: pool, Trigger: triggers.add})
			follow(ctx, tr, pool)

			if !is(metric(t, tr, "pgbatch_batch_running", "nightly"), 0) {
				t.Fatal("nightly should be known and not running before its first session")
			}
			job := pgtest.Connect(t, dsn, "etl_nightly_load")
			done := make(chan error, 1)
			// 3 s, so that a sampler reading 1 s late (a loaded machine) stays within the 30%
			// the run's duration and session-seconds may be off it.
			go func() { _, err := job.Exec(ctx, `SELECT pg_sleep(3)`); done <- err }()
			eventually(t, "the detected run", func() bool { return is(metric(t, tr, "pgbatch_batch_running", "nightly"), 1) })
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			eventually(t, "the detected run's end", func() bool { return is(metric(t, tr, "pgbatch_batch_runs_total", "nightly"), 1) })
			if n := triggers.get(collectors.TierSnapshot); n != 2 {
				t.Errorf("%d snapshots asked for by the detected run, want 2: at its start and end", n)
			}
			if v := metric(t, tr, "pgbatch_batch_running", "nightly"); !is(v, 0) {
				t.Errorf("running after the quiet period = %v", v)
			}
			if d := metric(t, tr, "pgbatch_batch_last_duration_seconds", "nightly"); d == nil || *d < 2.1 || *d > 3.9 {
				t.Errorf("last duration = %v, want about 3s", d)
			}
			if w := metric(t, tr, "pgbatch_batch_wait_event_seconds_total", "nightly", "PgSleep", "Timeout"); w == nil || *w < 2.1 || *w > 3.9 {
				t.Errorf("PgSleep session-seconds = %v, want about 3", w)
			}
			eventually(t, "the detected run in telemetry.batch_runs", func() bool {
				r := runs(t, pool)
				return len(r) == 1 && r[0].Source == "detected" && r[0].Status == "ended" && r[0].Seconds > 2.1
			})

			// A marker run of another batch: running while open, counted when ended; its
			// session, named after the batch (as exec names the child's), is attributed to it.
			c := pgtest.Connect(t, dsn, "weekly")
			if _, err := c.Exec(ctx, `SELECT telemetry.batch_begin('weekly')`); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the marker run", func() bool { return is(metric(t, tr, "pgbatch_batch_running", "weekly"), 1) })
			if _, err := c.Exec(ctx, `SELECT pg_sleep(0.3)`); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Exec(ctx, `SELECT telemetry.batch_end('weekly')`); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the marker run's end", func() bool { return is(metric(t, tr, "pgbatch_batch_runs_total", "weekly"), 1) })
			if v := metric(t, tr, "pgbatch_batch_running", "weekly"); !is(v, 0) {
				t.Errorf("weekly running after its end = %v", v)
			}
			if w := metric(t, tr, "pgbatch_batch_wait_event_seconds_total", "weekly", "PgSleep", "Timeout"); w == nil || *w < 0.1 {
				t.Errorf("weekly PgSleep session-seconds = %v", w)
			}
			if n := metric(t, tr, "pgbatch_batch_runs_total", "nightly"); !is(n, 1) {
				t.Errorf("nightly runs = %v, want 1: the tracker's own detected run must not count twice", n)
			}
		})
	}
}

// Without a recorder listening (pg_cron mode), the markers take the boundary snapshots themselves.
func TestMarkersSnapshotWithoutRecorder(t *testing.T) {
	_, pool := db(t, 15, "psql")
	ctx := context.Background()
	for _, sql := range []string{`SELECT telemetry.batch_begin('nightly')`, `SELECT telemetry.batch_end('nightly')`} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	var atBegin, atEnd bool
	err := pool.QueryRow(ctx, `SELECT
		EXISTS (SELECT FROM telemetry.snapshots s, telemetry.batch_runs r WHERE s.captured_at BETWEEN r.started_at AND r.ended_at),
		EXISTS (SELECT FROM telemetry.snapshots s, telemetry.batch_runs r WHERE s.captured_at >= r.ended_at)`).Scan(&atBegin, &atEnd)
	if err != nil || !atBegin || !atEnd {
		t.Errorf("snapshots at begin %v and end %v (%v), want both", atBegin, atEnd, err)
	}
}

// A marker run's sessions: the one that called batch_begin, and those sharing its
// application_name until batch_end; a session of another application is not the run's.
func TestTrackerMarkerSessions(t *testing.T) {
	dsn, pool := db(t, 17, "pg-batch-exporter batch")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pgtest.MustExec(t, pgtest.Connect(t, dsn, ""), `CREATE EXTENSION pg_stat_statements`)
	var triggers triggerCount
	tr := NewTracker(Options{QuietPeriod: time.Second, RunsDB: pool, RefreshEvery: 100 * time.Millisecond, Trigger: triggers.add})
	follow(ctx, tr, pool)
	sleepSeconds := func() float64 {
		v := metric(t, tr, "pgbatch_batch_wait_event_seconds_total", "monthly", "PgSleep", "Timeout")
		if v == nil {
			return 0
		}
		return *v
	}
	// A reading taken during a sleep may be booked after it returned (a loaded machine's
	// readings come late): a count is read once it has stopped moving.
	settled := func(read func() float64) float64 {
		before := read()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			time.Sleep(300 * time.Millisecond)
			now := read()
			if now == before {
				break
			}
			before = now
		}
		return before
	}
	marker := pgtest.Connect(t, dsn, "loader")
	pgtest.MustExec(t, marker, `SELECT telemetry.batch_begin('monthly')`)
	eventually(t, "the marker run", func() bool { return is(metric(t, tr, "pgbatch_batch_running", "monthly"), 1) })
	// While the run is in progress the sample tier follows the wait sampler.
	eventually(t, "sample-tier collections during the run", func() bool { return triggers.get(collectors.TierSample) >= 3 })
	// The run's sleeps are 2 s: read as they end, a sampler reading up to 0.8 s late (a loaded
	// machine) leaves them within 60% of their length.
	pgtest.MustExec(t, marker, `SELECT pg_sleep(2)`)
	own := settled(sleepSeconds)
	if own < 1.2 {
		t.Fatalf("the beginning session's sleep: %.2f session-seconds, want about 2", own)
	}
	worker := pgtest.Connect(t, dsn, "loader")
	pgtest.MustExec(t, worker, `SELECT pg_sleep(2)`)
	if got := settled(sleepSeconds) - own; got < 1.2 {
		t.Errorf("a session sharing the marker's application_name: %.2f session-seconds, want about 2", got)
	}
	before := settled(sleepSeconds)
	pgtest.MustExec(t, pgtest.Connect(t, dsn, "reporting"), `SELECT pg_sleep(0.5)`)
	if got := sleepSeconds() - before; got != 0 {
		t.Errorf("another application's session booked to the run: %.2f session-seconds", got)
	}
	if s := metric(t, tr, "pgbatch_batch_statement_seconds_total", "monthly"); s == nil || *s < 2.4 {
		t.Errorf("statement seconds of the run = %v, want about 4", s)
	}
	pgtest.MustExec(t, marker, `SELECT telemetry.batch_end('monthly')`)
	eventually(t, "the marker run's end", func() bool { return is(metric(t, tr, "pgbatch_batch_running", "monthly"), 0) })
	atEnd := triggers.get(collectors.TierSample)
	before = sleepSeconds()
	pgtest.MustExec(t, worker, `SELECT pg_sleep(0.5)`)
	if got := sleepSeconds() - before; got != 0 {
		t.Errorf("after batch_end, the application's sessions still booked: %.2f session-seconds", got)
	}
	if n := triggers.get(collectors.TierSample) - atEnd; n > 1 {
		t.Errorf("%d sample-tier collections asked for after the run ended", n)
	}

	// A run begun from psql: psql's own name is every psql session's, so only the beginning
	// session is the run's.
	adhoc := pgtest.Connect(t, dsn, "psql")
	pgtest.MustExec(t, adhoc, `SELECT telemetry.batch_begin('adhoc')`)
	eventually(t, "the psql run", func() bool { return is(metric(t, tr, "pgbatch_batch_running", "adhoc"), 1) })
	pgtest.MustExec(t, adhoc, `SELECT pg_sleep(2)`)
	pgtest.MustExec(t, pgtest.Connect(t, dsn, "psql"), `SELECT pg_sleep(2)`)
	adhocSleep := func() float64 {
		if v := metric(t, tr, "pgbatch_batch_wait_event_seconds_total", "adhoc", "PgSleep", "Timeout"); v != nil {
			return *v
		}
		return -1
	}
	if v := settled(adhocSleep); v < 1.2 || v > 3.2 {
		got := "none"
		if v >= 0 {
			got = fmt.Sprintf("%.2f", v)
		}
		t.Errorf("the psql run's sleep: %s session-seconds, want its own session's 2, not another psql session's too", got)
	}
	pgtest.MustExec(t, adhoc, `SELECT telemetry.batch_end('adhoc')`)
}

// A run in progress: its elapsed seconds and run_id with its report URL; the batch's usual
// duration from the run's baseline once it holds usual_duration_min_runs (3) normal runs,
// absent before.
func TestTrackerUsualDuration(t *testing.T) {
	for _, major := range pgtest.Versions() {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) { trackerUsualDuration(t, major) })
	}
}

func trackerUsualDuration(t *testing.T, major int) {
	dsn, pool := db(t, major, "pg-batch-exporter batch")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := NewTracker(Options{QuietPeriod: time.Second, RunsDB: pool, RefreshEvery: 100 * time.Millisecond,
		ReportURL: func(id int64) string { return fmt.Sprintf("https://exporter.example/report/run/%d", id) }})
	follow(ctx, tr, pool)
	c := pgtest.Connect(t, dsn, "daily")
	run := func(seconds float64) {
		pgtest.MustExec(t, c, `SELECT telemetry.batch_begin('daily')`)
		pgtest.MustExec(t, c, `SELECT pg_sleep($1)`, seconds)
		pgtest.MustExec(t, c, `SELECT telemetry.batch_end('daily')`)
	}
	run(0.2)
	run(0.4)
	var id int64
	if err := c.QueryRow(ctx, `SELECT telemetry.batch_begin('daily')`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("https://exporter.example/report/run/%d", id)
	eventually(t, "the third run with its run_id", func() bool {
		return is(metric(t, tr, "pgbatch_batch_run_info", "daily", url, fmt.Sprint(id)), 1)
	})
	time.Sleep(300 * time.Millisecond) // a few refreshes
	if v := metric(t, tr, "pgbatch_batch_usual_duration_seconds", "daily", "0.9"); v != nil {
		t.Errorf("usual duration %v after 2 normal runs, want none before 3", *v)
	}
	if e := metric(t, tr, "pgbatch_batch_run_elapsed_seconds", "daily"); e == nil || *e < 0.2 || *e > 5 {
		t.Errorf("elapsed seconds of the run = %v, want about 0.3", e)
	}
	pgtest.MustExec(t, c, `SELECT pg_sleep(0.3)`)
	pgtest.MustExec(t, c, `SELECT telemetry.batch_end('daily')`)
	eventually(t, "the run's end", func() bool { return metric(t, tr, "pgbatch_batch_run_elapsed_seconds", "daily") == nil })
	if v := metric(t, tr, "pgbatch_batch_run_info", "daily", url, fmt.Sprint(id)); v != nil {
		t.Errorf("run_info after the run ended: %v", *v)
	}

	if err := c.QueryRow(ctx, `SELECT telemetry.batch_begin('daily')`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	var runs int
	var median, p90 float64
	if err := c.QueryRow(ctx, `SELECT baseline_runs, median_seconds, p90_seconds FROM telemetry.run_usual_duration($1)`, id).
		Scan(&runs, &median, &p90); err != nil {
		t.Fatal(err)
	}
	if runs != 3 || median < 0.3 || median > 1 || p90 < median {
		t.Errorf("run_usual_duration = %d runs, median %.2f s, p90 %.2f s; want 3 runs, median about 0.4 s", runs, median, p90)
	}
	eventually(t, "the usual duration of the fourth run's batch", func() bool {
		return metric(t, tr, "pgbatch_batch_usual_duration_seconds", "daily", "0.9") != nil
	})
	for q, want := range map[string]float64{"0.5": median, "0.9": p90} {
		if v := metric(t, tr, "pgbatch_batch_usual_duration_seconds", "daily", q); v == nil || *v != want {
			t.Errorf("usual duration quantile %s = %v, want %v (run_usual_duration)", q, v, want)
		}
	}
	if v := metric(t, tr, "pgbatch_batch_usual_duration_runs", "daily"); !is(v, 3) {
		t.Errorf("usual duration runs = %v, want 3", v)
	}
	pgtest.MustExec(t, c, `SELECT telemetry.batch_end('daily')`)

	// A detected run: its run_id once the tracker has recorded it, the report URL with it.
	rules, err := ParseRules([]string{"hourly=application_name:^etl_hourly"})
	if err != nil {
		t.Fatal(err)
	}
	detecting := NewTracker(Options{Rules: rules, QuietPeriod: time.Second, RunsDB: pool, RecorderDB: pool, RefreshEvery: 100 * time.Millisecond,
		ReportURL: func(id int64) string { return fmt.Sprintf("https://exporter.example/report/run/%d", id) }})
	follow(ctx, detecting, pool)
	job := pgtest.Connect(t, dsn, "etl_hourly")
	done := make(chan error, 1)
	go func() { _, err := job.Exec(ctx, `SELECT pg_sleep(5)`); done <- err }()
	defer func() {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	eventually(t, "the detected run's run_id, once recorded", func() bool {
		if err := c.QueryRow(ctx, `SELECT max(run_id) FROM telemetry.batch_runs WHERE batch = 'hourly' AND status = 'running'`).Scan(&id); err != nil {
			return false
		}
		return is(metric(t, detecting, "pgbatch_batch_run_info", "hourly", fmt.Sprintf("https://exporter.example/report/run/%d", id), fmt.Sprint(id)), 1)
	})
}

// triggerCount counts the collections a tracker asks for, by tier.
type triggerCount struct {
	mu sync.Mutex
	n  map[collectors.Tier]int
}

func (c *triggerCount) add(t collectors.Tier) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[collectors.Tier]int{}
	}
	c.n[t]++
}

func (c *triggerCount) get(t collectors.Tier) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[t]
}

// follow runs the tracker with a wait sampler every 50ms until ctx ends.
func follow(ctx context.Context, tr *Tracker, pool *pgxpool.Pool) {
	sampler := collectors.NewWaitSampler(pool, 50*time.Millisecond, nil)
	tr.Follow(sampler)
	go tr.Run(ctx)
	go func() {
		for ctx.Err() == nil {
			_ = sampler.Sample(ctx)
			time.Sleep(50 * time.Millisecond)
		}
	}()
}

// TestExecRunClosedBeforeItsEnd (issue 17, finding 3): a run closed while its command still
// ran (as abandoned by another session's judgement, or by hand) is not ended again under
// another status: exec warns, naming how it was closed, and exits with the command's status.
func TestExecRunClosedBeforeItsEnd(t *testing.T) {
	_, pool := db(t, 17, "pg-batch-exporter exec")
	ctx := context.Background()
	closed := filepath.Join(t.TempDir(), "closed")
	go func() {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			tag, err := pool.Exec(ctx, `UPDATE telemetry.batch_runs SET status = 'abandoned', ended_at = now(), detail = 'closed by hand'
				WHERE batch = 'nightly' AND status = 'running'`)
			if err == nil && tag.RowsAffected() == 1 {
				_ = os.WriteFile(closed, nil, 0o600)
				return
			}
		}
	}()
	var logs bytes.Buffer
	code := Exec(ExecOptions{Pool: pool, Batch: "nightly", Stdout: &testWriter{}, Stderr: &testWriter{},
		Command: []string{"sh", "-c", `while [ ! -e "$0" ]; do sleep 0.05; done; exit 3`, closed},
		Logger:  slog.New(slog.NewTextHandler(&logs, nil))})
	if code != 3 {
		t.Errorf("exit status %d, want the command's 3", code)
	}
	if !strings.Contains(logs.String(), "the run was closed before its end was marked") || !strings.Contains(logs.String(), "status=abandoned") ||
		!strings.Contains(logs.String(), `detail="closed by hand"`) {
		t.Errorf("no warning naming how the run was closed:\n%s", logs.String())
	}
	if got := runs(t, pool); len(got) != 1 || got[0].Status != "abandoned" || got[0].ExitCode != nil {
		t.Errorf("runs = %+v, want the one run left abandoned", got)
	}
}

// TestRecordedRunsOutOfRange (issue 17, finding 2): runs whose times are out of range, stored
// before batch_begin refused them (or by hand), are skipped by every reader, which says so,
// and never stop the reading of the others: the tracker still sees a real run, the recent runs
// view and diagnose's run lookup leave them out, and diagnosing one says why it cannot be.
func TestRecordedRunsOutOfRange(t *testing.T) {
	for _, major := range []int{15, 17} {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
			_, pool := db(t, major, "pg-batch-exporter batch")
			ctx := context.Background()
			var good int64
			if err := pool.QueryRow(ctx, `SELECT telemetry.batch_begin('nightly', 'marker', now() - interval '10 minutes')`).Scan(&good); err != nil {
				t.Fatal(err)
			}
			if _, err := pool.Exec(ctx, `SELECT telemetry.batch_end('nightly')`); err != nil {
				t.Fatal(err)
			}
			if _, err := pool.Exec(ctx, `SELECT telemetry.batch_begin('weekly')`); err != nil {
				t.Fatal(err)
			}
			// Runs out of range, stored by hand: open, closed, and of another batch.
			var bad []int64
			for _, sql := range []string{
				`INSERT INTO telemetry.batch_runs (batch, started_at, source) VALUES ('nightly', 'infinity', 'marker') RETURNING run_id`,
				`INSERT INTO telemetry.batch_runs (batch, started_at, source) VALUES ('hourly', '-infinity', 'exec') RETURNING run_id`,
				`INSERT INTO telemetry.batch_runs (batch, started_at, ended_at, status, source)
					VALUES ('nightly', now() - interval '1 hour', '12000-01-01', 'succeeded', 'marker') RETURNING run_id`,
			} {
				var id int64
				if err := pool.QueryRow(ctx, sql).Scan(&id); err != nil {
					t.Fatalf("%s: %v", sql, err)
				}
				bad = append(bad, id)
			}

			var logs bytes.Buffer
			tr := NewTracker(Options{RunsDB: pool, RefreshEvery: time.Hour, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			for range 2 {
				if err := tr.Refresh(ctx); err != nil {
					t.Fatalf("refresh with runs out of range: %v", err)
				}
			}
			if v := metric(t, tr, "pgbatch_batch_running", "weekly"); !is(v, 1) {
				t.Errorf("weekly's open run not seen beside runs out of range: running = %v", v)
			}
			if v := metric(t, tr, "pgbatch_batch_running", "nightly"); v != nil && *v != 0 {
				t.Errorf("nightly running = %v, want 0 or none: its open run is out of range", *v)
			}
			if n := strings.Count(logs.String(), "skipping recorded runs whose times are out of range"); n != 1 ||
				!strings.Contains(logs.String(), fmt.Sprintf("runs=%d", len(bad))) {
				t.Errorf("%d log lines on the runs out of range over two reads, want one naming %d runs:\n%s", n, len(bad), logs.String())
			}

			var recent []int64
			rows, _ := pool.Query(ctx, `SELECT run_id FROM telemetry.recent_batch_runs`)
			recent, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil || len(recent) != 2 {
				t.Errorf("recent_batch_runs = %v (%v), want the two runs in range", recent, err)
			}
			if n, err := diagnosis.OutOfRangeRuns(ctx, pool, ""); err != nil || n != 3 {
				t.Errorf("OutOfRangeRuns = %d, %v; want 3", n, err)
			}
			if id, err := diagnosis.LastRun(ctx, pool, "nightly", 0); err != nil || id != good {
				t.Errorf("LastRun(nightly) = %d, %v; want %d, the last run in range", id, err, good)
			}
			for _, id := range bad {
				if _, err := diagnosis.ForRun(ctx, pool, id); !errors.Is(err, diagnosis.ErrOutOfRange) {
					t.Errorf("ForRun(%d): %v, want ErrOutOfRange", id, err)
				}
			}
			if _, err := diagnosis.ForRun(ctx, pool, good); err != nil {
				t.Errorf("ForRun of the run in range, with runs out of range before it: %v", err)
			}
			// A run that ends where it begins (its end marker's time before its begin) is diagnosed.
			var zero int64
			if err := pool.QueryRow(ctx, `SELECT telemetry.batch_begin('zero')`).Scan(&zero); err != nil {
				t.Fatal(err)
			}
			if _, err := pool.Exec(ctx, `SELECT telemetry.batch_end('zero', 'succeeded', 0, now() - interval '1 hour')`); err != nil {
				t.Fatal(err)
			}
			if _, err := diagnosis.ForRun(ctx, pool, zero); err != nil {
				t.Errorf("ForRun of a run of no length: %v", err)
			}
		})
	}
}
