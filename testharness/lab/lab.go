// Package lab is the diagnosis tests' database: the exporter's runner, batch tracker and
// recorder collecting into it at the binary's default flags, batch runs through the markers, and the
// scenario of a pattern (diagnosis/patterns/<name>/scenario_test.go): a batch with one cause
// injected, whose run's diagnosis must name that cause first.
package lab

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pg-batch-exporter/pg-batch-exporter/batch"
	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/internal/postgres"
	"github.com/pg-batch-exporter/pg-batch-exporter/recorder"
	"github.com/pg-batch-exporter/pg-batch-exporter/schema"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// Lab is a database with the exporter's runner, batch tracker and recorder collecting into it
// as in production, at the binary's default flags.
type Lab struct {
	t   *testing.T
	srv *pgtest.Server
	dsn string
	// batchDSN is where the batch's sessions connect (Options.BatchRole); "": as dsn.
	batchDSN string
	// plans: the exporter reads the plans auto_explain logs (Options.Plans).
	plans bool
	// Admin is writable; its sessions are left out of the samples like the exporter's.
	Admin *pgxpool.Pool
}

// migrated is a new database of srv with the schema installed.
func migrated(t *testing.T, srv *pgtest.Server) *Lab {
	t.Helper()
	l := &Lab{t: t, srv: srv, dsn: srv.NewDatabase(t)}
	l.Admin = l.pool(false, "pg-batch-exporter test")
	if err := schema.Migrate(context.Background(), l.Admin); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return l
}

// Options are what the exporter's flags and the batch's setup add to a lab's defaults.
type Options struct {
	Plans collectors.PlansConfig
	// BatchRole is the role the batch's sessions log in as (a superuser, as the markers need
	// nothing granted), with auto_explain set up for it as docs/plans.md says; "": the lab's.
	BatchRole string
}

// New starts a lab on a new database of the shared server of that major, with the exporter
// wired as the binary wires it at its default flags: the runner, the batch tracker following
// the wait sampler (1 s, 250 ms while a batch runs) and the recorder told of the boundaries.
func New(t *testing.T, major int) *Lab {
	t.Helper()
	return NewOn(t, pgtest.Start(t, major))
}

// NewOn starts a lab on a new database of srv (a server with settings of its own).
func NewOn(t *testing.T, srv *pgtest.Server) *Lab {
	t.Helper()
	return NewWith(t, srv, Options{})
}

// NewWith starts a lab on a new database of srv, the exporter run with o.
func NewWith(t *testing.T, srv *pgtest.Server, o Options) *Lab {
	t.Helper()
	l := migrated(t, srv)
	l.plans = o.Plans.Source != ""
	if o.BatchRole != "" {
		l.Exec(fmt.Sprintf(`DO $$ BEGIN CREATE ROLE %[1]s LOGIN SUPERUSER; EXCEPTION WHEN duplicate_object THEN NULL; END $$`, o.BatchRole))
		for _, stmt := range strings.Split(pgtest.AutoExplainSQL(o.BatchRole), ";") {
			if strings.TrimSpace(stmt) != "" {
				l.Exec(stmt)
			}
		}
		l.batchDSN = strings.Replace(l.dsn, "postgres@", o.BatchRole+"@", 1)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runner := collectors.NewRunner(collectors.RunnerOptions{Pool: l.pool(true, ""), Config: collectors.Config{Plans: o.Plans}})
	runs := l.pool(false, "pg-batch-exporter batch")
	tracker := batch.NewTracker(batch.Options{RunsDB: runs, RecorderDB: runs, Trigger: runner.Trigger})
	tracker.Follow(runner.Waits())
	runner.SetBatchWaits(tracker.TakeRunWaits)
	rec := recorder.New(recorder.Options{Pool: l.pool(false, "pg-batch-exporter recorder"), Trigger: runner.Trigger, Boundary: tracker.RefreshNow})
	runner.Subscribe(rec.Consume)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); runner.Run(ctx) }()
	go func() { defer wg.Done(); tracker.Run(ctx) }()
	go func() { defer wg.Done(); rec.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	// The first snapshot is written (the runner takes it at its start; the first sample comes
	// at a random instant of the first --tier.sample-interval): the recorder knows the server.
	l.WaitFor("the first snapshot", `SELECT EXISTS (SELECT FROM telemetry.snapshots)`)
	return l
}

// NewSQLMode is the seed's deployment instead: telemetry.sample() called every 200ms, as
// pg_cron would call it, and no recorder listening, so the markers take their snapshots.
func NewSQLMode(t *testing.T, major int) *Lab {
	t.Helper()
	l := migrated(t, pgtest.Start(t, major))
	ctx, cancel := context.WithCancel(context.Background())
	l.Exec(`SELECT telemetry.snapshot()`)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if _, err := l.Admin.Exec(ctx, `SELECT telemetry.sample()`); err != nil && ctx.Err() == nil {
				t.Errorf("sample(): %v", err)
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return l
}

func (l *Lab) pool(readOnly bool, app string) *pgxpool.Pool {
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

// Conn opens a session as a batch or another job would, under an application_name of its own.
func (l *Lab) Conn(app string) *pgx.Conn {
	l.t.Helper()
	return pgtest.Connect(l.t, cmp.Or(l.batchDSN, l.dsn), app)
}

// ConnAs opens a session of another job under an application_name of its own, logged in as
// a role of its own (name_<this database>: roles belong to the shared server) with SELECT on
// public.work, dropped at the end.
func (l *Lab) ConnAs(name, app string) *pgx.Conn {
	l.t.Helper()
	u, err := url.Parse(l.dsn)
	if err != nil {
		l.t.Fatal(err)
	}
	u.User = url.User(name + "_" + strings.TrimPrefix(u.Path, "/"))
	role := pgx.Identifier{u.User.Username()}.Sanitize()
	l.Exec(`CREATE ROLE ` + role + ` LOGIN`)
	l.t.Cleanup(func() { l.Exec(`DROP OWNED BY ` + role); l.Exec(`DROP ROLE ` + role) })
	l.Exec(`GRANT SELECT ON public.work TO ` + role)
	return pgtest.Connect(l.t, u.String(), app)
}

// Exec runs a statement as Admin, failing the test on error.
func (l *Lab) Exec(sql string, args ...any) {
	l.t.Helper()
	if _, err := l.Admin.Exec(context.Background(), sql, args...); err != nil {
		l.t.Fatalf("%s: %v", sql, err)
	}
}

// WaitFor polls a boolean query until it is true (at most a minute: a shared test machine under
// load takes a requested snapshot many seconds late).
func (l *Lab) WaitFor(what, sql string, args ...any) {
	l.t.Helper()
	l.waitAsking(what, "", sql, args...)
}

// waitAsking is WaitFor running ask first, and again each time the recorder would take a new
// requested snapshot (recorder.DefaultRequestMinInterval) while it waits ("": never).
func (l *Lab) waitAsking(what, ask, sql string, args ...any) {
	l.t.Helper()
	deadline := time.Now().Add(time.Minute)
	var asked time.Time
	for {
		if ask != "" && time.Since(asked) > recorder.DefaultRequestMinInterval+time.Second {
			l.Exec(ask)
			asked = time.Now()
		}
		var ok bool
		if err := l.Admin.QueryRow(context.Background(), sql, args...).Scan(&ok); err != nil {
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

// Run is one run of a batch through the markers: begin, the work on the batch's own session,
// end; it returns when the recorder holds the run's boundary snapshots and samples past its end.
func (l *Lab) Run(batch string, work func(c *pgx.Conn)) int64 {
	l.t.Helper()
	ctx := context.Background()
	c := l.Conn("etl_" + batch)
	var runID int64
	if err := c.QueryRow(ctx, `SELECT telemetry.batch_begin($1)`, batch).Scan(&runID); err != nil {
		l.t.Fatal(err)
	}
	l.WaitFor("the run's start snapshot", `SELECT EXISTS (SELECT FROM telemetry.snapshots s JOIN telemetry.batch_runs r ON s.captured_at >= r.started_at WHERE r.run_id = $1)`, runID)
	work(c)
	if _, err := c.Exec(ctx, `SELECT telemetry.batch_end($1)`, batch); err != nil {
		l.t.Fatal(err)
	}
	// The batch's session goes with its run: left open, it would be an idle session of the
	// batch's name in the next runs, time between statements of theirs.
	if err := c.Close(ctx); err != nil {
		l.t.Fatal(err)
	}
	l.WaitFor("the run's end snapshot and a later sample", `SELECT EXISTS (SELECT FROM telemetry.snapshots s JOIN telemetry.batch_runs r ON s.captured_at >= r.ended_at WHERE r.run_id = $1)
		AND EXISTS (SELECT FROM telemetry.samples s JOIN telemetry.batch_runs r ON s.captured_at >= r.ended_at WHERE r.run_id = $1)`, runID)
	// compare() over the run is exact: it starts and ends on the snapshots the markers asked for
	// (the schedule takes one an hour, so any later snapshot is a requested one). How promptly a
	// request is served is TestRequestSnapshot's business; here a loaded CI machine may take a
	// few seconds, so the bound only excludes some other, much later snapshot.
	var exact bool
	var times string
	err := l.Admin.QueryRow(ctx, `SELECT start_snapshot_at >= started_at AND end_snapshot_at >= ended_at
		AND (SELECT elapsed_seconds FROM telemetry.compare(start_snapshot_at, end_snapshot_at)) <= duration_seconds + 10,
		format('began %s, ended %s, snapshots %s and %s', started_at, ended_at, start_snapshot_at, end_snapshot_at)
		FROM telemetry.recent_batch_runs WHERE run_id = $1`, runID).Scan(&exact, &times)
	if err != nil || !exact {
		l.t.Fatalf("run %d does not start and end on its own snapshots: %s (%v)", runID, times, err)
	}
	if l.plans {
		// Its plans are read, batch_end's the last: the end's snapshot may have come before the
		// server's log writer wrote them. A snapshot asked for now is taken before the next run.
		// The log's times are to the millisecond: batch_end's plan may be logged in the
		// millisecond its end was taken in, before it by the log's clock.
		query := `SELECT EXISTS (SELECT FROM telemetry.plan_executions e JOIN telemetry.batch_runs r
			ON e.logged_at >= date_trunc('milliseconds', r.ended_at) AND e.pid = r.backend_pid WHERE r.run_id = $1)`
		var read bool
		if err := l.Admin.QueryRow(ctx, query, runID).Scan(&read); err != nil {
			l.t.Fatal(err)
		}
		if !read {
			// The server's log writer may write them after the snapshot asked for has read the
			// log, too: asked for again until they are read.
			l.waitAsking("the run's plans", `SELECT telemetry.request_snapshot()`, query, runID)
		}
	}
	return runID
}

// PrepareWork creates the batch's table, public.work, tracked, with autovacuum off: only a
// scenario that wants autovacuum lets it run.
func (l *Lab) PrepareWork() {
	l.Exec(`CREATE TABLE public.work (id int, payload text) WITH (autovacuum_enabled = false)`)
	l.Exec(`SELECT telemetry.track_table('work')`)
}

// PrepareStatementsAndWork is PrepareWork in a database with pg_stat_statements: the runs'
// statements are recorded.
func (l *Lab) PrepareStatementsAndWork() {
	l.Exec(`CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA public`)
	l.PrepareWork()
}

// CPU keeps the session busy for about d: the batch's ordinary work (a set-returning function
// in the select list streams its rows, so nothing spills to temporary files).
func CPU(t *testing.T, c *pgx.Conn, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); {
		if _, err := c.Exec(context.Background(), `SELECT count(*) FROM (SELECT generate_series(1, 100000)) s`); err != nil {
			t.Fatal(err)
		}
	}
}

// MustExec runs a statement on a session, failing the test on error.
func MustExec(t *testing.T, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(context.Background(), sql, args...); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("%s: %v", sql, err)
	}
}

// Scenario is a batch with one cause injected: the diagnosis of its run must name Want first,
// above info (Want "": nothing above info, a clean run).
type Scenario struct {
	Want  string
	Setup func(l *Lab) // after PrepareWork, before the run
	Work  func(t *testing.T, l *Lab, c *pgx.Conn)
}

// Majors are the versions a scenario runs on.
var Majors = []int{15, 17}

// RunScenario runs s on each of Majors, one after the other (each pattern's scenario is a
// package of its own, and go test runs packages side by side), on a Lab (New) of its own.
func RunScenario(t *testing.T, s Scenario) {
	for _, major := range Majors {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
			l := New(t, major)
			l.PrepareWork()
			if s.Setup != nil {
				s.Setup(l)
			}
			runID := l.Run("nightly", func(c *pgx.Conn) { s.Work(t, l, c) })
			l.CheckFirstFinding(runID, s.Want)
		})
	}
}

// CheckFirstFinding checks the run's findings (diagnose_run_findings, as the report and the
// CLI show them): want first and above info, or, for want "", nothing above info.
func (l *Lab) CheckFirstFinding(runID int64, want string) {
	l.t.Helper()
	rows, err := l.Admin.Query(context.Background(), `SELECT pattern, severity, summary FROM telemetry.diagnose_run_findings($1)`, runID)
	if err != nil {
		l.t.Fatal(err)
	}
	type finding struct{ Pattern, Severity, Summary string }
	found, err := pgx.CollectRows(rows, pgx.RowToStructByPos[finding])
	if err != nil {
		l.t.Fatal(err)
	}
	var text strings.Builder
	for _, f := range found {
		fmt.Fprintf(&text, "%-24s %-8s %s\n", f.Pattern, f.Severity, f.Summary)
	}
	l.t.Logf("findings of run %d:\n%s", runID, text.String())
	if len(found) == 0 {
		l.t.Fatalf("run %d: no findings, not even the window row", runID)
	}
	if want == "" {
		for _, f := range found {
			if f.Severity != "info" {
				l.t.Errorf("clean run: %s is %s, want nothing above info", f.Pattern, f.Severity)
			}
		}
		return
	}
	if first := found[0]; first.Pattern != want || first.Severity == "info" {
		l.t.Errorf("first finding is %s (%s), want %s above info", first.Pattern, first.Severity, want)
	}
}

// SlowRun is a batch whose usual work (Usual) ran BaselineRuns times (3 if 0) before a run
// with a cause injected (Slow; nil: the usual work again, a clean run): the run's diagnosis
// must name Want first, above info (Want "": nothing above info).
type SlowRun struct {
	Want         string
	BaselineRuns int
	Server       func(t *testing.T, major int) *pgtest.Server // nil: the shared server of the major
	Options      Options                                      // the exporter's flags beyond its defaults
	Setup        func(l *Lab)                                 // after PrepareWork, before the runs
	Usual        func(t *testing.T, l *Lab, c *pgx.Conn)
	// Between, where set, runs between the baseline runs and the slow one (a change between runs).
	Between func(t *testing.T, l *Lab)
	Slow    func(t *testing.T, l *Lab, c *pgx.Conn)
	// After, where set, changes what was recorded of the run before it is diagnosed.
	After func(l *Lab, runID int64)
	// Check, where set, looks further at the run's diagnosis.
	Check func(t *testing.T, l *Lab, runID int64, d *RunDiagnosis)
	// CheckAlone: Check alone judges the run, not Want's first finding: where whether the run
	// counts as slow at all is the machine's load's (a loaded machine's runs vary more than what
	// the scenario changes), and the scenario is about one statement's cause.
	CheckAlone bool
}

// RunDiagnosis is what telemetry.run_diagnosis says of a run, as far as the scenarios look.
type RunDiagnosis struct {
	ExtraSeconds       *float64 `json:"extra_seconds"`
	UnexplainedSeconds *float64 `json:"unexplained_seconds"`
	Findings           []struct {
		Pattern          string   `json:"pattern"`
		Severity         string   `json:"severity"`
		Summary          string   `json:"summary"`
		ExplainedSeconds *float64 `json:"explained_seconds"`
		ShareOfExtraPct  *float64 `json:"share_of_extra_pct"`
		Children         []struct {
			QueryID      int64   `json:"queryid"`
			Query        *string `json:"query"`
			ExtraSeconds float64 `json:"extra_seconds"`
			Shared       bool    `json:"shared"`
		} `json:"children"`
	} `json:"findings"`
}

// RunSlow runs s on every version under test, one after the other (each cause's scenarios are
// a package of their own, and go test runs packages side by side).
func RunSlow(t *testing.T, s SlowRun) {
	for _, major := range pgtest.Versions() {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
			var srv *pgtest.Server
			if s.Server != nil {
				srv = s.Server(t, major)
			} else {
				srv = pgtest.Start(t, major)
			}
			l := NewWith(t, srv, s.Options)
			l.PrepareStatementsAndWork()
			if s.Setup != nil {
				s.Setup(l)
			}
			for range cmp.Or(s.BaselineRuns, 3) {
				l.Run("nightly", func(c *pgx.Conn) { s.Usual(t, l, c) })
			}
			if s.Between != nil {
				s.Between(t, l)
			}
			slow := s.Slow
			if slow == nil {
				slow = s.Usual
			}
			runID := l.Run("nightly", func(c *pgx.Conn) { slow(t, l, c) })
			if s.After != nil {
				s.After(l, runID)
			}
			d := l.CheckAccount(runID)
			if !s.CheckAlone {
				l.CheckFirstFinding(runID, s.Want)
			}
			if s.Check != nil {
				s.Check(t, l, runID, d)
			}
		})
	}
}

// SamplingInterval is the wait sampler's interval while a batch runs: how far a run's account
// may be off its wall time.
const SamplingInterval = collectors.DefaultRunWaitSampleEvery

// CheckAccount checks that a run's account adds up: its buckets to its duration, and its
// causes' explained seconds plus the unexplained to its extra time (the run's duration less
// the median of its baseline runs recorded with own sessions, as run_account's: a baseline run
// the loaded sampler saw no own session of has no account), each within a sampling interval;
// it returns the diagnosis.
func (l *Lab) CheckAccount(runID int64) *RunDiagnosis {
	l.t.Helper()
	ctx := context.Background()
	var raw []byte
	if err := l.Admin.QueryRow(ctx, `SELECT telemetry.run_diagnosis($1)`, runID).Scan(&raw); err != nil {
		l.t.Fatal(err)
	}
	var d RunDiagnosis
	if err := json.Unmarshal(raw, &d); err != nil {
		l.t.Fatal(err)
	}
	var duration, accounted float64
	var median *float64
	if err := l.Admin.QueryRow(ctx, `SELECT extract(epoch FROM r.ended_at - r.started_at)::float8,
		(SELECT sum(a.seconds) FROM telemetry.run_account(r.run_id) a WHERE a.queryid IS NULL)::float8,
		(SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM b.ended_at - b.started_at))
		 FROM telemetry._normal_runs_before(r.batch, r.started_at) b
		 WHERE EXISTS (SELECT FROM telemetry.batch_wait_samples w
		               WHERE w.batch = r.batch AND w.own AND w.captured_at BETWEEN b.started_at AND b.ended_at))
		FROM telemetry.batch_runs r WHERE r.run_id = $1`, runID).Scan(&duration, &accounted, &median); err != nil {
		l.t.Fatal(err)
	}
	if median == nil {
		var runs string
		if err := l.Admin.QueryRow(ctx, `SELECT string_agg(format('run %s %s, %s s, own samples %s of %s', b.run_id, r.status,
			round(extract(epoch FROM b.ended_at - b.started_at)::numeric, 2),
			(SELECT count(*) FROM telemetry.batch_wait_samples w WHERE w.batch = r.batch AND w.own AND w.captured_at BETWEEN b.started_at AND b.ended_at),
			(SELECT count(*) FROM telemetry.batch_wait_samples w WHERE w.batch = r.batch AND w.captured_at BETWEEN b.started_at AND b.ended_at)), '; ' ORDER BY b.run_id)
			FROM telemetry.batch_runs x, telemetry._normal_runs_before(x.batch, x.started_at) b JOIN telemetry.batch_runs r USING (run_id)
			WHERE x.run_id = $1`, runID).Scan(&runs); err != nil {
			l.t.Fatal(err)
		}
		l.t.Fatalf("run %d: no baseline run with its own sessions' samples: %s", runID, runs)
	}
	within := func(what string, got, want float64) {
		if math.Abs(got-want) > SamplingInterval.Seconds() {
			l.t.Errorf("run %d: %s %.3f s, want %.3f s within %s", runID, what, got, want, SamplingInterval)
		}
	}
	within("account", accounted, duration)
	if d.ExtraSeconds == nil || d.UnexplainedSeconds == nil && *d.ExtraSeconds > 0 {
		l.t.Fatalf("run %d: no extra or unexplained seconds in %s", runID, raw)
	}
	within("extra time", *d.ExtraSeconds, duration-*median)
	if *d.ExtraSeconds > 0 {
		explained := *d.UnexplainedSeconds
		for _, f := range d.Findings {
			if f.ExplainedSeconds != nil {
				explained += *f.ExplainedSeconds
			}
		}
		within("explained plus unexplained", explained, *d.ExtraSeconds)
	}
	return &d
}

// PlanCapture is the documented setup of plan capture (docs/plans.md): auto_explain for the
// batch's role, the exporter at its defaults but --plans.source=sql; on a JSONLogServer.
var PlanCapture = Options{Plans: collectors.PlansConfig{Source: collectors.PlansSQL}, BatchRole: "nightly_batch"}

// JSONLogServer is the server of that major writing its log as jsonlog (SlowRun.Server).
func JSONLogServer(t *testing.T, major int) *pgtest.Server {
	return pgtest.StartWith(t, major, pgtest.JSONLog)
}

// LookupTable creates the batch's lookup table, public.lookup, indexed on its key (lookup_k).
func LookupTable(l *Lab) {
	l.Exec(`CREATE TABLE public.lookup (k int, v text)`)
	l.Exec(`INSERT INTO public.lookup SELECT g, md5(g::text) FROM generate_series(1, 400000) g`)
	l.Exec(`CREATE INDEX lookup_k ON public.lookup (k)`)
	l.Exec(`ANALYZE public.lookup`)
}

// Lookups is a batch's work on LookupTable: keyed lookups, each an index scan while lookup_k
// exists and the planner may use it (a sequential scan of 400,000 rows otherwise: 150 of them
// are seconds more on an idle machine), then some CPU.
func Lookups(t *testing.T, _ *Lab, c *pgx.Conn) {
	for i := range 150 {
		MustExec(t, c, `SELECT v FROM public.lookup WHERE k = $1`, i*600)
	}
	CPU(t, c, 2*time.Second)
}
