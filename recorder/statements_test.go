package recorder

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// TestStatementsRecorded: statements are stored as deltas (unchanged entries are not written
// again), texts once, sampled waits under their query_id; statement_compare ranks the
// window's statements with exact deltas, marks a statement that appeared in the window as
// new, and across pg_stat_statements_reset() gives NULL, never a negative delta.
func TestStatementsRecorded(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		// Statements at every snapshot: what is tested is the delta storage between two of them.
		e := newEnvWith(t, srv, srv.NewDatabase(t), NoInterval)
		c := e.conn()
		ctx := context.Background()
		e.exec(`CREATE EXTENSION pg_stat_statements; CREATE TABLE items (id int PRIMARY KEY, v int);
			INSERT INTO items SELECT g, g FROM generate_series(1, 1000) g`)
		job := pgtest.Connect(t, e.dsn, "job")
		const lookup = `SELECT v, pg_sleep($2) FROM items WHERE id = $1`
		pgtest.MustExec(t, job, lookup, 1, 0.01) // known before the window
		start := e.record(collectors.TierSnapshot)
		var startRows, unchanged int
		// pg_stat_statements is the server's: other tests' databases have their CREATE EXTENSION.
		if err := c.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE query LIKE 'CREATE EXTENSION%'
				AND s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()))
			FROM telemetry.statement_snapshots s JOIN telemetry.statement_texts t USING (server, queryid)
			WHERE s.captured_at = $1`, start).Scan(&startRows, &unchanged); err != nil || startRows == 0 || unchanged != 1 {
			t.Fatalf("first snapshot: %d rows, CREATE EXTENSION %d (%v): want every entry", startRows, unchanged, err)
		}

		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := range 100 {
				pgtest.MustExec(t, job, lookup, i+1, 0.01)
			}
			pgtest.MustExec(t, job, `UPDATE items SET v = v + 1 WHERE id <= 10`)
		}()
		for sampling := true; sampling; {
			select {
			case <-done:
				sampling = false
			default:
				if err := e.runner.Waits().Sample(ctx); err != nil {
					t.Fatal(err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		e.record(collectors.TierSample)
		mid := e.record(collectors.TierSnapshot)
		if err := c.QueryRow(ctx, `SELECT count(*) FILTER (WHERE query LIKE 'CREATE EXTENSION%'
				AND s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()))
			FROM telemetry.statement_snapshots s JOIN telemetry.statement_texts t USING (server, queryid)
			WHERE s.captured_at = $1`, mid).Scan(&unchanged); err != nil || unchanged != 0 {
			t.Errorf("an unchanged statement stored again: %d (%v)", unchanged, err)
		}

		rows := pgtest.Query(t, c, `SELECT * FROM telemetry.statement_compare($1, $2) WHERE query IN ($3, 'UPDATE items SET v = v + $1 WHERE id <= $2')`, start, mid, lookup)
		if len(rows) != 2 || rows[0]["query"] != lookup {
			t.Fatalf("statement_compare: %v, want the lookup first, then the update", rows)
		}
		l, u := rows[0], rows[1]
		if l["status"] != "ok" || l["calls_delta"] != int64(100) || l["rows_delta"] != int64(100) || numeric(t, l["total_seconds"]) < 1 {
			t.Errorf("lookup: %v, want 100 calls and rows, more than 1s", l)
		}
		// the contract's milliseconds (../shared/spec), pg_stat_statements' own: total and mean
		// (total_seconds, rounded to the millisecond, adds lock waits: the lookup had none)
		if tm, mm := l["total_time_ms"].(float64), l["mean_time_ms"].(float64); math.Abs(tm-1000*numeric(t, l["total_seconds"])) > 0.5 || math.Abs(mm-tm/100) > 1e-6 {
			t.Errorf("lookup: total_time_ms %v, mean_time_ms %v, want total_seconds in ms and a hundredth of it", l["total_time_ms"], l["mean_time_ms"])
		}
		if waits, _ := l["sampled_waits"].(map[string]any); waits == nil || waits["Timeout:PgSleep"] == nil {
			t.Errorf("lookup's sampled waits %v, want Timeout:PgSleep", l["sampled_waits"])
		}
		if u["status"] != "new" || u["rows_delta"] != int64(10) {
			t.Errorf("update: %v, want new (first run in the window) with 10 rows", u)
		}
		var texts int
		if err := c.QueryRow(ctx, `SELECT count(*) FROM telemetry.statement_texts WHERE query = $1`, lookup).Scan(&texts); err != nil || texts != 1 {
			t.Errorf("lookup's text stored %d times (%v)", texts, err)
		}

		e.exec(`SELECT pg_stat_statements_reset()`)
		pgtest.MustExec(t, job, lookup, 1, 0.01)
		end := e.record(collectors.TierSnapshot)
		rows = pgtest.Query(t, c, `SELECT * FROM telemetry.statement_compare($1, $2) WHERE query = $3`, start, end, lookup)
		if len(rows) != 1 || rows[0]["status"] != "reset" || rows[0]["calls_delta"] != nil || rows[0]["total_time_ms"] != nil || rows[0]["total_seconds"] != nil {
			t.Errorf("across pg_stat_statements_reset(): %v, want status reset and NULL deltas", rows)
		}
		var negative int
		if err := c.QueryRow(ctx, `SELECT count(*) FROM telemetry.statement_compare($1, $2)
			WHERE calls_delta < 0 OR rows_delta < 0 OR total_time_ms < 0 OR shared_blks_read_delta < 0 OR shared_blks_hit_delta < 0
				OR temp_blks_written_delta < 0 OR wal_bytes_delta < 0`,
			start, end).Scan(&negative); err != nil || negative != 0 {
			t.Errorf("negative deltas: %d (%v)", negative, err)
		}
	})
}

// numeric reads a numeric column as a float.
func numeric(t *testing.T, v any) float64 {
	t.Helper()
	n, ok := v.(pgtype.Numeric)
	if !ok {
		t.Fatalf("%v (%T) is not a numeric", v, v)
	}
	f, err := n.Float64Value()
	if err != nil {
		t.Fatal(err)
	}
	return f.Float64
}

// batchRun runs body as a run of batch etl, marked by batch_begin/batch_end on job, with the
// recorder's snapshots at its boundaries, and returns its run_id.
func (e *env) batchRun(job *pgx.Conn, body func()) int64 {
	e.t.Helper()
	var id int64
	if err := job.QueryRow(context.Background(), `SELECT telemetry.batch_begin('etl')`).Scan(&id); err != nil {
		e.t.Fatal(err)
	}
	e.boundary()
	e.refreshTracker()
	done := make(chan struct{})
	go func() { defer close(done); body() }()
	// While the run is in progress the sample tier follows the wait sampler.
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-time.After(200 * time.Millisecond):
			if err := e.runner.Waits().Sample(context.Background()); err != nil {
				e.t.Fatal(err)
			}
			e.record(collectors.TierSample)
		}
	}
	pgtest.MustExec(e.t, job, `SELECT telemetry.batch_end('etl')`)
	e.refreshTracker()
	e.boundary()
	return id
}

// refreshTracker has the tracker read the recorded runs, as it does every few seconds.
func (e *env) refreshTracker() {
	e.t.Helper()
	if e.tracker == nil {
		return
	}
	if err := e.tracker.Refresh(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

// findings are diagnose_run_findings of a run.
func findings(t *testing.T, c *pgx.Conn, runID int64) []map[string]any {
	t.Helper()
	return pgtest.Query(t, c, `SELECT pattern, severity, summary FROM telemetry.diagnose_run_findings($1)`, runID)
}

// TestDiagnoseStatementBlockedByLock: a statement queued behind another session's ACCESS
// EXCLUSIVE lock waits before it is planned, which pg_stat_statements does not count; the wait
// sampler's seconds make it the run's top statement, named with its lock wait, and the lock
// the run's first finding, whether it waits while parsing (simple protocol: no query_id yet) or at Bind (a prepared statement).
func TestDiagnoseStatementBlockedByLock(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		c := e.conn()
		e.exec(`CREATE EXTENSION pg_stat_statements;
			CREATE TABLE work (id int PRIMARY KEY, v int);
			INSERT INTO work SELECT g, 0 FROM generate_series(1, 20000) g`)
		job := pgtest.Connect(t, e.dsn, "etl")
		locker := pgtest.Connect(t, e.dsn, "migration")
		const prepared = `UPDATE work SET v = v + $1 WHERE id <= $2`
		const simple = `DELETE FROM work WHERE id < 0`
		// blockedFor holds work for 2 s from just before the statement the job runs next.
		blockedFor := func(held bool, run func()) {
			if held {
				pgtest.MustExec(t, locker, `BEGIN`)
				pgtest.MustExec(t, locker, `LOCK TABLE work IN ACCESS EXCLUSIVE MODE`)
				release := time.AfterFunc(2*time.Second, func() { _, _ = locker.Exec(context.Background(), `COMMIT`) })
				defer release.Stop()
			}
			run()
		}
		body := func(blockPrepared, blockSimple bool) func() {
			return func() {
				blockedFor(blockPrepared, func() { pgtest.MustExec(t, job, prepared, 1, 5000) })
				blockedFor(blockSimple, func() { pgtest.MustExec(t, job, simple) })
				pgtest.MustExec(t, job, `SELECT pg_sleep(0.5)`)
			}
		}
		e.record(collectors.TierSnapshot)
		for range 3 {
			e.batchRun(job, body(false, false))
		}
		for _, tc := range []struct {
			name                    string
			blockPrepared, blocking bool
			want                    string
		}{
			{"at Bind", true, false, "UPDATE work SET v = v"},
			{"while parsing", false, true, "DELETE FROM work"},
		} {
			run := e.batchRun(job, body(tc.blockPrepared, tc.blocking))
			fs := findings(t, c, run)
			top := pgtest.Query(t, c, `SELECT query, seconds, extra_seconds, top_wait FROM telemetry.run_statements($1) ORDER BY rank LIMIT 1`, run)
			t.Logf("%s: %v\n%v", tc.name, top, fs)
			if len(top) != 1 || !strings.HasPrefix(top[0]["query"].(string), tc.want) || numeric(t, top[0]["extra_seconds"]) < 1.5 ||
				top[0]["top_wait"] != "Lock:relation" {
				t.Errorf("%s: top statement %v, want %q with about 2 s extra, its top wait Lock:relation", tc.name, top, tc.want)
			}
			// Recorded without the batch tracker, the run has no own-session account: its
			// findings are its window's, the lock first.
			if len(fs) == 0 || fs[0]["pattern"] != "lock_contention" || fs[0]["severity"] == "info" {
				t.Errorf("%s: findings %v, want lock_contention first", tc.name, fs)
			}
		}
	})
}

// TestDiagnoseWithoutStatements: where pg_stat_statements is absent the run's diagnosis says
// how to enable it (info), and nothing else changes.
func TestDiagnoseWithoutStatements(t *testing.T) {
	e := newEnv(t, pgtest.Start(t, pgtest.Versions()[0]))
	c := e.conn()
	job := pgtest.Connect(t, e.dsn, "etl")
	var id int64
	for range 2 {
		id = e.batchRun(job, func() { pgtest.MustExec(t, job, `SELECT pg_sleep(0.2)`) })
	}
	fs := findings(t, c, id)
	var info bool
	for _, f := range fs {
		if f["pattern"] == "statements_unavailable" {
			info = f["severity"] == "info" && strings.Contains(f["summary"].(string), "cannot be named")
		} else if strings.HasPrefix(f["pattern"].(string), "statement") || f["pattern"] == "more_work" || f["pattern"] == "new_statement" {
			t.Errorf("statement finding without statements: %v", f)
		}
	}
	if !info {
		t.Errorf("findings %v, want statements_unavailable (info)", fs)
	}
}

// TestDiagnoseStatementsEvicted: with pg_stat_statements.max small, a run that makes more
// distinct statements than fit evicts entries, and the run's diagnosis warns that its
// statements are only partly known; no delta is negative.
func TestDiagnoseStatementsEvicted(t *testing.T) {
	srv := pgtest.StartWith(t, pgtest.Versions()[len(pgtest.Versions())-1],
		pgtest.Options{Private: true, Settings: map[string]string{"pg_stat_statements.max": "100"}})
	e := newEnv(t, srv)
	c := e.conn()
	e.exec(`CREATE EXTENSION pg_stat_statements; CREATE TABLE t (id int)`)
	job := pgtest.Connect(t, e.dsn, "etl")
	var id int64
	for run := range 2 {
		id = e.batchRun(job, func() {
			pgtest.MustExec(t, job, `SELECT pg_sleep(0.5)`)
			if run == 1 { // distinct shapes: distinct queryids
				for i := range 300 {
					pgtest.MustExec(t, job, `SELECT id`+strings.Repeat("+id", i)+` FROM t`)
				}
			}
		})
	}
	fs := findings(t, c, id)
	var warned bool
	for _, f := range fs {
		warned = warned || f["pattern"] == "statements_evicted" && f["severity"] == "warning"
	}
	if !warned {
		t.Errorf("findings %v, want statements_evicted (warning)", fs)
	}
	var negative int
	if err := c.QueryRow(context.Background(), `SELECT count(*) FROM telemetry.run_statements($1)
		WHERE seconds < 0 OR calls < 0 OR rows < 0`, id).Scan(&negative); err != nil || negative != 0 {
		t.Errorf("negative deltas: %d (%v)", negative, err)
	}
}

// TestDiagnoseStatementsResetMidRun: pg_stat_statements_reset() during a run leaves the run's
// statements with status reset and NULL deltas: no negative time, no finding built on them.
func TestDiagnoseStatementsResetMidRun(t *testing.T) {
	e := newEnv(t, pgtest.Start(t, pgtest.Versions()[len(pgtest.Versions())-1]))
	c := e.conn()
	e.exec(`CREATE EXTENSION pg_stat_statements; CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000)`)
	job := pgtest.Connect(t, e.dsn, "etl")
	var id int64
	for run := range 3 {
		id = e.batchRun(job, func() {
			for range 50 {
				pgtest.MustExec(t, job, `SELECT count(*) FROM t`)
			}
			if run == 2 {
				pgtest.MustExec(t, job, `SELECT pg_stat_statements_reset()`)
				pgtest.MustExec(t, job, `SELECT count(*) FROM t`)
			}
			pgtest.MustExec(t, job, `SELECT pg_sleep(0.3)`)
		})
	}
	rs := pgtest.Query(t, c, `SELECT query, status, seconds, calls FROM telemetry.run_statements($1)`, id)
	var reset bool
	for _, r := range rs {
		if r["query"] == "SELECT count(*) FROM t" {
			reset = r["status"] == "reset" && r["seconds"] == nil && r["calls"] == nil
		}
	}
	if !reset {
		t.Errorf("run_statements across a reset: %v, want the count with status reset and NULL deltas", rs)
	}
	for _, f := range findings(t, c, id) {
		if f["pattern"] == "statement_regression" || f["pattern"] == "more_work" || f["pattern"] == "new_statement" {
			t.Errorf("a finding built on reset counters: %v", f)
		}
	}
}

// TestRunStatementTextAtDefaults (issue 19, defect 3): at the default
// --recorder.statements-interval a statement first seen by a snapshot whose statements the
// recorder does not store (a scheduled one inside the run) still has its text: the run's
// statement is shown by its text, not as a queryid.
func TestRunStatementTextAtDefaults(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		c := e.conn()
		e.exec(`CREATE EXTENSION pg_stat_statements; CREATE TABLE ledger (id int, v int);
			INSERT INTO ledger SELECT g, 0 FROM generate_series(1, 100) g`)
		job := pgtest.Connect(t, e.dsn, "etl")
		// A recorder LISTENs, as in production: the markers leave their snapshots to it (e.boundary)
		// instead of taking them in SQL, which would store the texts themselves.
		pgtest.MustExec(t, e.conn(), `LISTEN telemetry_request_snapshot`)
		e.record(collectors.TierSnapshot) // the exporter's first snapshot
		var id int64
		if err := job.QueryRow(context.Background(), `SELECT telemetry.batch_begin('etl')`).Scan(&id); err != nil {
			t.Fatal(err)
		}
		e.boundary()
		pgtest.MustExec(t, job, `UPDATE ledger SET v = v + 1 WHERE id <= 10`)
		e.record(collectors.TierSnapshot) // scheduled: the first to see the UPDATE
		pgtest.MustExec(t, job, `SELECT telemetry.batch_end('etl')`)
		e.boundary()
		rows := pgtest.Query(t, c, `SELECT queryid, query FROM telemetry.run_statements($1) WHERE calls = 1`, id)
		found := false
		for _, r := range rows {
			found = found || r["query"] == "UPDATE ledger SET v = v + $1 WHERE id <= $2"
			if r["query"] == nil {
				t.Errorf("run statement %v without its text", r["queryid"])
			}
		}
		if !found {
			t.Errorf("run_statements %v: want the UPDATE by its text", rows)
		}
	})
}

// TestStatementsStoredAtTheirInterval: with an interval, statements are stored at the first
// snapshot, at every boundary (all entries) and once the interval has passed (the changed
// entries), and at no snapshot between: what bounds their storage to the statements run.
func TestStatementsStoredAtTheirInterval(t *testing.T) {
	d := &statementDeltas{every: time.Hour}
	t0 := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	st := func(calls int64) *collectors.Statements {
		return &collectors.Statements{Entries: []collectors.StatementStat{{QueryID: 1, Calls: calls}, {QueryID: 2, Calls: 5}}}
	}
	stored := func(at time.Time, s *collectors.Statements) (entries, info int) {
		tables := d.rows(s, at)
		return len(tables[0].rows), len(tables[1].rows)
	}
	for _, step := range []struct {
		what          string
		at            time.Duration
		calls         int64
		boundary      bool
		entries, info int
	}{
		{"the first snapshot: every entry", 0, 1, false, 2, 1},
		{"a minute later: nothing", time.Minute, 2, false, 0, 0},
		{"a boundary: every entry", 2 * time.Minute, 3, true, 2, 1},
		{"after it, within the hour: nothing", 30 * time.Minute, 4, false, 0, 0},
		// A boundary at 40 min whose own snapshot comes after one already under way (taken at
		// 39.5 min): both store every entry.
		{"a collection under way at a boundary: every entry", 39*time.Minute + 30*time.Second, 4, false, 2, 1},
		{"the boundary's own snapshot: every entry again", 40 * time.Minute, 4, false, 2, 1},
		{"an hour after the boundary: what changed", 101 * time.Minute, 5, false, 1, 1},
	} {
		if step.boundary {
			d.fullFrom = t0.Add(step.at)
		}
		if step.at == 39*time.Minute+30*time.Second {
			d.fullFrom = t0.Add(40 * time.Minute) // asked while that collection was under way
		}
		if e, i := stored(t0.Add(step.at), st(step.calls)); e != step.entries || i != step.info {
			t.Errorf("%s: %d entries and %d info rows, want %d and %d", step.what, e, i, step.entries, step.info)
		}
	}
}
