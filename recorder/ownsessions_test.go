package recorder

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// TestRunJudgedOnItsOwnSessions: another application's sessions wait on locks all through a
// run in which the batch spills a sort to disk. The run's diagnosis blames the spill and
// names the other sessions' lock waits as info, not as the batch's: the batch tracker books
// the sampler's seconds to the run's own sessions and to the others apart. When the batch
// itself queues behind a lock, lock_contention stays a finding, with its own seconds and its own
// blocker, though another application waited longer behind another.
func TestRunJudgedOnItsOwnSessions(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		e.withTracker()
		c := e.conn()
		e.exec(`CREATE EXTENSION pg_stat_statements;
			CREATE TABLE work (id int PRIMARY KEY, v int); INSERT INTO work SELECT g, 0 FROM generate_series(1, 1000) g;
			CREATE TABLE reports (id int PRIMARY KEY); INSERT INTO reports VALUES (1)`)
		job := pgtest.Connect(t, e.dsn, "etl")
		const sort = `SELECT count(*) FROM (SELECT md5(g::text) FROM generate_series(1, 1500000) g ORDER BY 1) s`
		body := func(workMem string, blocked bool) func() {
			return func() {
				pgtest.MustExec(t, job, `SET work_mem = '`+workMem+`'`)
				pgtest.MustExec(t, job, sort)
				if blocked {
					holder := pgtest.Connect(t, e.dsn, "migration")
					pgtest.MustExec(t, holder, `BEGIN; LOCK TABLE work IN ACCESS EXCLUSIVE MODE`)
					release := time.AfterFunc(2*time.Second, func() { _, _ = holder.Exec(context.Background(), `COMMIT`) })
					defer release.Stop()
				}
				pgtest.MustExec(t, job, `UPDATE work SET v = v + 1 WHERE id <= 100`)
				pgtest.MustExec(t, job, `SELECT pg_sleep(0.5)`)
			}
		}
		e.record(collectors.TierSnapshot)
		for range 3 {
			e.batchRun(job, body("256MB", false))
		}

		// Another application: one session holds reports, two others queue behind it, the
		// whole run long.
		holder := pgtest.Connect(t, e.dsn, "reporting")
		pgtest.MustExec(t, holder, `BEGIN; LOCK TABLE reports IN ACCESS EXCLUSIVE MODE`)
		var waiters []*pgx.Conn
		for range 2 {
			w := pgtest.Connect(t, e.dsn, "reporting")
			waiters = append(waiters, w)
			go func() { _, _ = w.Exec(context.Background(), `SELECT * FROM reports`) }()
		}
		spill := e.batchRun(job, body("1MB", false))
		pgtest.MustExec(t, holder, `COMMIT`)

		fs := findings(t, c, spill)
		t.Logf("spill while others wait on locks: %v", fs)
		if len(fs) == 0 || fs[0]["severity"] == "info" ||
			!(fs[0]["pattern"] == "temp_file_spills" || strings.Contains(fs[0]["summary"].(string), "it spilled to disk")) {
			t.Errorf("first finding %v, want the batch's spill (temp_file_spills, or its sort statement: it spilled to disk)", fs)
		}
		notTheBatchs(t, c, spill, "reports")
		var lock map[string]any
		for _, f := range fs {
			if f["pattern"] == "lock_contention" {
				lock = f
			}
		}
		if lock == nil || lock["severity"] != "info" || !strings.Contains(lock["summary"].(string), "Other sessions waited") ||
			!strings.Contains(lock["summary"].(string), "own sessions waited 0") {
			t.Errorf("lock_contention %v, want info naming the other sessions' waits, the batch's own at 0", lock)
		}
		own := pgtest.Query(t, c, `SELECT coalesce(sum(session_seconds) FILTER (WHERE sessions = 'batch'), 0) AS own,
			coalesce(sum(session_seconds) FILTER (WHERE sessions = 'other' AND wait_event_type = 'Lock'), 0) AS other_locks
			FROM telemetry.run_session_waits($1)`, spill)
		if numeric(t, own[0]["own"]) < 1 || numeric(t, own[0]["other_locks"]) < 2 {
			t.Errorf("run_session_waits: %v, want the batch's own seconds and the others' lock waits (two sessions, the whole run)", own)
		}
		m := pgtest.Query(t, c, `SELECT value FROM telemetry.diagnose_run($1) WHERE measure = 'lock_wait_seconds'`, spill)
		if len(m) != 1 || numeric(t, m[0]["value"]) != 0 {
			t.Errorf("diagnose_run lock_wait_seconds %v, want the batch's own: 0", m)
		}
		for _, w := range waiters {
			w.Close(context.Background())
		}

		// Another application's sort spills while the batch runs as usual: the spill is named,
		// not blamed.
		analyst := pgtest.Connect(t, e.dsn, "analyst")
		pgtest.MustExec(t, analyst, `SET work_mem = '1MB'`)
		othersSpill := e.batchRun(job, func() {
			spilled := make(chan struct{})
			go func() {
				defer close(spilled)
				_, _ = analyst.Exec(context.Background(), `SELECT count(*) FROM (SELECT md5(g::text) || 'a' FROM generate_series(1, 1500000) g ORDER BY 1) s`)
			}()
			body("256MB", false)()
			<-spilled
		})
		fs = findings(t, c, othersSpill)
		t.Logf("another application spills: %v", fs)
		for _, f := range fs {
			if f["pattern"] == "temp_file_spills" && (f["severity"] != "info" || !strings.Contains(f["summary"].(string), "Other sessions spilled")) {
				t.Errorf("temp_file_spills %v, want info: the batch's own statements wrote nothing", f)
			}
			// The analyst's sort competes for the CPUs, so the batch's may be slower: never a
			// spill of the batch's.
			if f["severity"] != "info" && strings.Contains(f["summary"].(string), "spill") {
				t.Errorf("the batch did not spill, another application did: %v", f)
			}
		}
		notTheBatchs(t, c, othersSpill, "md5(g::text) ||") // pg_stat_statements' text: constants are $n
		counted := false
		for _, f := range fs {
			counted = counted || f["pattern"] == "statements_of_other_sessions" && strings.Contains(f["summary"].(string), "md5(g::text) ||")
		}
		if !counted {
			t.Errorf("findings %v, want the analyst's sort counted in statements_of_other_sessions, not hidden", fs)
		}

		// Where the sampler could not tell the batch's statements (sessions showing no query_id,
		// as a portal fetched in parts does on 14-17), the run's statements are the window's:
		// nothing of the batch's is dropped.
		if got := pgtest.Query(t, c, `SELECT telemetry._run_statement_batch($1) AS batch`, spill); got[0]["batch"] != "etl" {
			t.Fatalf("_run_statement_batch(spill run) = %v, want etl: its statements were known", got)
		}
		e.exec(`INSERT INTO telemetry.statement_wait_samples (sample_id, batch, queryid, wait_event_type, wait_event, seconds, server, captured_at)
			SELECT s.id, 'etl', 0, 'IO', 'DataFileRead', 100, s.server, s.captured_at
			FROM telemetry.batch_runs r JOIN telemetry.samples s ON s.captured_at BETWEEN r.started_at AND r.ended_at
			WHERE r.run_id = ` + strconv.FormatInt(spill, 10) + ` ORDER BY s.captured_at LIMIT 1`)
		if got := pgtest.Query(t, c, `SELECT telemetry._run_statement_batch($1) AS batch`, spill); got[0]["batch"] != nil {
			t.Errorf("_run_statement_batch with the batch's seconds mostly without a statement = %v, want NULL: every statement of the window", got)
		}
		if rs := pgtest.Query(t, c, `SELECT count(*) AS n FROM telemetry.run_statements($1) WHERE query LIKE '%md5(g::text) FROM%'`, spill); rs[0]["n"] != int64(1) {
			t.Errorf("run_statements without the split: %v, want the batch's sort", rs)
		}

		// The batch itself queues 2 s behind a migration while a report queues all run long
		// behind another session: the finding is the batch's, named after what it waited for.
		// The report's wait ends inside the run and is the longer: the server-wide view names its
		// holder, the batch's finding must not.
		other := pgtest.Connect(t, e.dsn, "nightly-report")
		pgtest.MustExec(t, other, `BEGIN; LOCK TABLE reports IN ACCESS EXCLUSIVE MODE`)
		waiter := pgtest.Connect(t, e.dsn, "reporting")
		go func() { _, _ = waiter.Exec(context.Background(), `SELECT * FROM reports`) }()
		release := time.AfterFunc(3500*time.Millisecond, func() { _, _ = other.Exec(context.Background(), `COMMIT`) })
		defer release.Stop()
		blocked := e.batchRun(job, body("256MB", true))
		fs = findings(t, c, blocked)
		t.Logf("the batch blocked: %v", fs)
		lock = nil
		for _, f := range fs {
			if f["pattern"] == "lock_contention" {
				lock = f
			}
		}
		notTheBatchs(t, c, blocked, "reports")
		if lock == nil || lock["severity"] == "info" || !strings.Contains(lock["summary"].(string), "The batch's own sessions waited") ||
			!strings.Contains(lock["summary"].(string), "mostly behind pid") || !strings.Contains(strings.SplitN(lock["summary"].(string), ";", 2)[0], "(migration) on public.work") {
			t.Errorf("lock_contention %v, want the batch's own lock wait, behind the migration on work", lock)
		}
	})
}

// notTheBatchs fails if a run's statements or statement findings name a statement of another
// application (its normalized text contains other: no constant), or one of the exporter's own.
func notTheBatchs(t *testing.T, c *pgx.Conn, runID int64, other string) {
	t.Helper()
	for _, r := range pgtest.Query(t, c, `SELECT query FROM telemetry.run_statements($1)`, runID) {
		if q, _ := r["query"].(string); strings.Contains(q, other) || strings.Contains(q, "pg_stat_activity") || strings.Contains(q, "INSERT INTO telemetry") {
			t.Errorf("run %d: run_statements has %q, not a statement of the batch's sessions", runID, q)
		}
	}
	for _, f := range findings(t, c, runID) {
		switch f["pattern"] {
		case "statement_regression", "more_work", "new_statement":
			if s := f["summary"].(string); strings.Contains(s, other) {
				t.Errorf("run %d: %s blames another application's statement: %s", runID, f["pattern"], s)
			}
		}
	}
}

// slowRows is a COPY source that takes its time: an application that produces its rows slowly.
type slowRows struct {
	n, i  int
	pause time.Duration
}

func (s *slowRows) Next() bool {
	if s.i >= s.n {
		return false
	}
	s.i++
	time.Sleep(s.pause)
	return true
}
func (s *slowRows) Values() ([]any, error) { return []any{s.i, 0}, nil }
func (s *slowRows) Err() error             { return nil }

// TestClientBoundRunJudged: the batch's COPY is fed slowly by its application, the server
// waiting on ClientRead with the statement running: client_wait is the first finding, blaming
// the application or the network, not the database. Runs with the usual feed have none.
func TestClientBoundRunJudged(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		e.withTracker()
		c := e.conn()
		e.exec(`CREATE TABLE loaded (id int, v int)`)
		job := pgtest.Connect(t, e.dsn, "etl")
		body := func(pause time.Duration) func() {
			return func() {
				if _, err := job.CopyFrom(context.Background(), pgx.Identifier{"loaded"}, []string{"id", "v"}, &slowRows{n: 200, pause: pause}); err != nil {
					t.Error(err)
				}
				pgtest.MustExec(t, job, `SELECT pg_sleep(0.5)`)
			}
		}
		e.record(collectors.TierSnapshot)
		var clean int64
		for range 3 {
			clean = e.batchRun(job, body(0))
		}
		for _, f := range findings(t, c, clean) {
			if f["pattern"] == "client_wait" {
				t.Errorf("a run fed as usual: %v", f)
			}
		}
		slow := e.batchRun(job, body(10*time.Millisecond))
		fs := findings(t, c, slow)
		t.Logf("slow feed: %v", fs)
		if len(fs) == 0 || fs[0]["pattern"] != "client_wait" || !strings.Contains(fs[0]["summary"].(string), "Client:ClientRead") {
			t.Errorf("findings %v, want client_wait first, mostly Client:ClientRead", fs)
		}
	})
}

// TestDiagnoseBusyNeighbours: the batch's CPU-bound statement runs slower per call while eight
// sessions of another application keep the server's CPUs busy (a report moved into the
// batch's window): its statement_regression names the other sessions as the cause, not a plan.
func TestDiagnoseBusyNeighbours(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		e.withTracker()
		c := e.conn()
		e.exec(`CREATE EXTENSION pg_stat_statements`)
		job := pgtest.Connect(t, e.dsn, "etl")
		const crunch = `SELECT count(*) FROM (SELECT generate_series(1, 400000) AS g) s WHERE g % 7 = $1`
		body := func() {
			for i := range 60 {
				pgtest.MustExec(t, job, crunch, i%7)
			}
		}
		e.record(collectors.TierSnapshot)
		for range 3 {
			e.batchRun(job, body)
		}
		ctx, stop := context.WithCancel(context.Background())
		var hogs sync.WaitGroup
		// Eight, so that they outweigh what else a loaded test machine runs.
		for range 8 {
			hog := pgtest.Connect(t, e.dsn, "reporting")
			hogs.Add(1)
			go func() {
				defer hogs.Done()
				_, _ = hog.Exec(ctx, `SELECT sum(i) FROM (SELECT generate_series(1, 1000000000) AS i) s`)
			}()
		}
		busy := e.batchRun(job, body)
		stop()
		hogs.Wait()
		fs := findings(t, c, busy)
		t.Logf("busy neighbours: %v\n%v\n%v", fs, pgtest.Query(t, c, `SELECT rank, query, seconds, baseline_seconds, seconds_per_call, baseline_seconds_per_call, top_wait FROM telemetry.run_statements($1) ORDER BY rank LIMIT 3`, busy),
			pgtest.Query(t, c, `SELECT * FROM telemetry.run_session_waits($1)`, busy))
		if len(fs) == 0 || fs[0]["pattern"] != "statement_regression" || !strings.Contains(fs[0]["summary"].(string), "generate_series") ||
			!strings.Contains(fs[0]["summary"].(string), "competed with it for the server") {
			t.Errorf("findings %v, want the batch's statement first, slower because other sessions competed for the server", fs)
		}
		notTheBatchs(t, c, busy, "sum(i)")
	})
}

// TestDiagnoseBatchBlocksItself: two sessions of the batch update the same rows, and one waits
// for the other's transaction: the run's lock_contention says the batch's sessions wait for
// each other, and recommends splitting their work, not moving another application's.
func TestDiagnoseBatchBlocksItself(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		e.withTracker()
		c := e.conn()
		e.exec(`CREATE EXTENSION pg_stat_statements;
			CREATE TABLE accounts (id int PRIMARY KEY, balance int); INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 1000) g`)
		job := pgtest.Connect(t, e.dsn, "etl")
		worker := pgtest.Connect(t, e.dsn, "etl") // shares the beginning session's name: the run's
		const post = `UPDATE accounts SET balance = balance + 1 WHERE id <= $1`
		body := func(overlap bool) func() {
			return func() {
				pgtest.MustExec(t, worker, `BEGIN`)
				pgtest.MustExec(t, worker, post, 500)
				if overlap {
					time.AfterFunc(2500*time.Millisecond, func() { _, _ = worker.Exec(context.Background(), `COMMIT`) })
					pgtest.MustExec(t, job, post, 1000) // waits for the worker's rows
				} else {
					pgtest.MustExec(t, worker, `COMMIT`)
					pgtest.MustExec(t, job, post, 1000)
				}
				pgtest.MustExec(t, job, `SELECT pg_sleep(0.5)`)
			}
		}
		e.record(collectors.TierSnapshot)
		for range 3 {
			e.batchRun(job, body(false))
		}
		run := e.batchRun(job, body(true))
		fs := findings(t, c, run)
		t.Logf("the batch blocks itself: %v", fs)
		var lock map[string]any
		for _, f := range fs {
			if f["pattern"] == "lock_contention" {
				lock = f
			}
		}
		if lock == nil || lock["severity"] == "info" || !strings.Contains(lock["summary"].(string), "the batch's own session, pid") ||
			!strings.Contains(lock["summary"].(string), "its sessions wait for each other") {
			t.Errorf("lock_contention %v, want the batch's own sessions waiting for each other", lock)
		}
		rec := pgtest.Query(t, c, `SELECT recommendation FROM telemetry.diagnose_run_findings($1) WHERE pattern = 'lock_contention'`, run)
		if len(rec) != 1 || !strings.Contains(rec[0]["recommendation"].(string), "block each other") {
			t.Errorf("recommendation %v, want the batch's sessions' own contention addressed", rec)
		}
	})
}
