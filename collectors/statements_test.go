package collectors_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// statementOf finds the top-level entry of this database whose text is text.
func statementOf(t *testing.T, r *collectors.Runner, c *collectors.Collection, texts map[int64]string, text string) *collectors.StatementStat {
	t.Helper()
	if c.Statements == nil {
		t.Fatalf("no statements on %d", c.Server.VersionNum)
	}
	for _, tx := range c.Statements.Texts {
		texts[tx.QueryID] = tx.Text
	}
	for i := range c.Statements.Entries {
		e := &c.Statements.Entries[i]
		if e.Toplevel && e.Datname != nil && *e.Datname == c.Server.Database && texts[e.QueryID] == text {
			return e
		}
	}
	t.Fatalf("no entry for %q among %v", text, texts)
	return nil
}

// TestStatementsCollector: a statement run 50 times shows its calls, rows, blocks and WAL, its
// text arrives once (truncated, never as a label), the columns follow the version, and the
// top-N and total series are there.
func TestStatementsCollector(t *testing.T) {
	forEachVersion(t, func(t *testing.T, srv *pgtest.Server, dsn string) {
		conn := pgtest.Connect(t, dsn, "")
		pgtest.MustExec(t, conn, `CREATE EXTENSION pg_stat_statements`)
		pgtest.MustExec(t, conn, `CREATE TABLE items (id int PRIMARY KEY, v text)`)
		const insert = `INSERT INTO items SELECT g, repeat($1, $4::int) FROM generate_series($2::int, $3::int) g`
		// Series for every statement: the package's other tests share the server, and their
		// heavier statements can push a small one out of a top 10 (the top's own tests choose).
		r := newRunnerWith(t, dsn, nil, collectors.StatementsConfig{Top: 100000, TopMinCalls: 1})
		texts := map[int64]string{}
		// The same statement in another database can have the same queryid: its text is known.
		for _, tx := range collect(t, r, collectors.TierSnapshot).Statements.Texts {
			texts[tx.QueryID] = tx.Text
		}
		for i := range 50 {
			pgtest.MustExec(t, conn, insert, "x", i*10+1, i*10+10, 100)
		}
		c := collect(t, r, collectors.TierSnapshot)
		e := statementOf(t, r, c, texts, insert)
		if e.Calls != 50 || e.Rows != 500 || e.WALRecords < 500 || e.WALBytes <= 0 || e.SharedBlksHit+e.SharedBlksRead == 0 || e.ExecTimeMs <= 0 {
			t.Errorf("entry = %+v, want 50 calls, 500 rows, WAL and blocks", *e)
		}
		major := c.Server.Major()
		if (e.StatsSince != nil) != (major >= 17) || (e.LocalBlkReadTimeMs != nil) != (major >= 17) {
			t.Errorf("pg%d: stats_since %v, local_blk_read_time %v", major, e.StatsSince, e.LocalBlkReadTimeMs)
		}
		if (e.WALBuffersFull != nil) != (major >= 18) || (e.ParallelWorkersLaunched != nil) != (major >= 18) {
			t.Errorf("pg%d: wal_buffers_full %v, parallel_workers_launched %v", major, e.WALBuffersFull, e.ParallelWorkersLaunched)
		}

		// The text came once: the next collection fetches none for known statements.
		pgtest.MustExec(t, conn, insert, "y", 1001, 1001, 100)
		c = collect(t, r, collectors.TierSnapshot)
		for _, tx := range c.Statements.Texts {
			if tx.QueryID == e.QueryID {
				t.Errorf("text of %d fetched again", e.QueryID)
			}
		}
		if got := statementOf(t, r, c, texts, insert).Calls; got != 51 {
			t.Errorf("calls = %d, want 51", got)
		}

		mfs := gather(t, r, collectors.TierSnapshot)
		id := fmt.Sprint(e.QueryID)
		if v := value(mfs, "pgbatch_statement_calls_total", map[string]string{"queryid": id, "datname": c.Server.Database}); v == nil || *v != 51 {
			t.Errorf("pgbatch_statement_calls_total{queryid=%s} = %v, want 51", id, v)
		}
		if v := value(mfs, "pgbatch_statements_calls_total", nil); v == nil || *v < 51 {
			t.Errorf("pgbatch_statements_calls_total = %v", v)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if strings.Contains(l.GetValue(), "INSERT") {
						t.Errorf("query text in label %s of %s", l.GetName(), mf.GetName())
					}
				}
			}
		}
	})
}

// TestStatementTextsTruncated: texts are cut to --collector.statements.text-length characters.
func TestStatementTextsTruncated(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Versions()[0])
	dsn := srv.NewDatabase(t)
	conn := pgtest.Connect(t, dsn, "")
	pgtest.MustExec(t, conn, `CREATE EXTENSION pg_stat_statements`)
	long := `SELECT $1::int AS ` + strings.Repeat("a", 60)
	pgtest.MustExec(t, conn, long, 1)
	r := newRunnerWith(t, dsn, nil, collectors.StatementsConfig{TextLength: 20})
	c := collect(t, r, collectors.TierSnapshot)
	found := false
	for _, tx := range c.Statements.Texts {
		if tx.Text == long[:20] {
			found = true
			if len([]rune(tx.Text)) != 20 {
				t.Errorf("text %q: %d characters, want 20", tx.Text, len([]rune(tx.Text)))
			}
		}
	}
	if !found {
		t.Errorf("no text for %q among %d", long, len(c.Statements.Texts))
	}
}

// TestStatementsAbsent: without the extension in the database the collector succeeds, says so
// once in the log, and emits nothing.
func TestStatementsAbsent(t *testing.T) {
	forEachVersion(t, func(t *testing.T, srv *pgtest.Server, dsn string) {
		var logs syncBuffer
		r := newRunnerWith(t, dsn, slog.New(slog.NewTextHandler(&logs, nil)), collectors.StatementsConfig{})
		for range 3 {
			if c := collect(t, r, collectors.TierSnapshot); c.Statements != nil {
				t.Fatalf("statements without the extension: %+v", c.Statements)
			}
		}
		if n := strings.Count(logs.String(), "pg_stat_statements is not installed"); n != 1 {
			t.Errorf("logged %d times, want once:\n%s", n, logs.String())
		}
		for name := range gather(t, r, collectors.TierSnapshot) {
			if strings.HasPrefix(name, "pgbatch_statement") {
				t.Errorf("%s emitted without the extension", name)
			}
		}
	})
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestWaitSamplerAttributesStatements: session-seconds are split by query_id; a lock wait taken
// while parsing (no query_id yet) goes to the statement that follows in the same query, and one
// whose query gives up waiting (lock_timeout) stays unattributed, counted.
func TestWaitSamplerAttributesStatements(t *testing.T) {
	forEachVersion(t, func(t *testing.T, srv *pgtest.Server, dsn string) {
		ctx := context.Background()
		admin := pgtest.Connect(t, dsn, "")
		pgtest.MustExec(t, admin, `CREATE EXTENSION pg_stat_statements`)
		pgtest.MustExec(t, admin, `CREATE TABLE locked (id int); INSERT INTO locked VALUES (1)`)
		r := newRunner(t, dsn)
		w := r.Waits()
		sample := func(n int) {
			for range n {
				if err := w.Sample(ctx); err != nil {
					t.Fatal(err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		lockedRun := func(query string, gaveUp bool) {
			holder := pgtest.Connect(t, dsn, "")
			pgtest.MustExec(t, holder, `BEGIN; LOCK TABLE locked IN ACCESS EXCLUSIVE MODE`)
			waiter := pgtest.Connect(t, dsn, "attribution")
			if gaveUp {
				pgtest.MustExec(t, waiter, `SET lock_timeout = '1s'`)
			}
			done := make(chan error, 1)
			go func() { _, err := waiter.Exec(ctx, query); done <- err }()
			waitUntil(t, 5*time.Second, func() bool {
				var n int
				_ = admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'attribution' AND wait_event_type = 'Lock'`).Scan(&n)
				return n == 1
			})
			sample(5)
			if !gaveUp {
				pgtest.MustExec(t, holder, `COMMIT`)
			}
			// The statement after the lock runs for a second: the samples see its query_id.
			sample(8)
			if err := <-done; (err != nil) != gaveUp {
				t.Fatalf("query error %v, want one: %v", err, gaveUp)
			}
			sample(2)
			if gaveUp {
				pgtest.MustExec(t, holder, `COMMIT`)
			}
		}
		w.TakeSinceLast()
		lockedRun(`SELECT pg_sleep(1) FROM locked`, false)
		_, byStatement := w.TakeSinceLast()
		var lockAttributed, sleep float64
		var sleepID int64
		for _, s := range byStatement {
			if s.WaitEvent == "PgSleep" {
				sleep, sleepID = sleep+s.Seconds, s.QueryID
			}
		}
		for _, s := range byStatement {
			if s.WaitEventType == "Lock" && s.QueryID == sleepID && sleepID != 0 {
				lockAttributed += s.Seconds
			}
		}
		if sleep < 0.5 || lockAttributed < 0.3 {
			t.Errorf("PgSleep %.2fs under %d, lock wait attributed to it %.2fs: %+v", sleep, sleepID, lockAttributed, byStatement)
		}

		before := w.Unattributed()
		lockedRun(`SELECT count(*) FROM locked`, true)
		if got := w.Unattributed() - before; got < 0.6 {
			t.Errorf("unattributed seconds %.2f after a lock wait of 1s that gave up", got)
		}
		collect(t, r, collectors.TierSample)
		if v := metric(t, r, collectors.TierSample, "pgbatch_wait_unattributed_seconds_total", nil); v < 0.3 {
			t.Errorf("pgbatch_wait_unattributed_seconds_total = %v", v)
		}
	})
}
