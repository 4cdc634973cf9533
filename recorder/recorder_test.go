package recorder

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// The recorder's row counters exist at 0 for every table it writes from the start, so that a
// dashboard shows 0 rather than "No data".
func TestMetricsStartAtZero(t *testing.T) {
	e := newEnv(t, pgtest.Start(t, pgtest.Versions()[0]))
	rec := New(Options{Pool: e.pool, BufferRows: 1})
	var tables []string
	// The collections' partitioned tables (snapshots, samples and the tables keyed by them; not
	// the rollups, which SQL derives from the samples), and the statement texts, kept once per
	// queryid, and the plan shapes, once per plan.
	if err := e.conn().QueryRow(context.Background(), `SELECT array_agg(table_name) || '{statement_texts,plan_shapes}' FROM telemetry._partitioned_tables()
			WHERE parent IS NOT NULL OR table_name IN ('snapshots', 'samples')`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	for _, vec := range []*prometheus.CounterVec{rec.written, rec.dropped} {
		series := make(chan prometheus.Metric, 100)
		vec.Collect(series)
		if len(series) != len(tables) {
			t.Errorf("%d series, want one per table: %v", len(series), tables)
		}
		for _, table := range tables {
			if v := value(t, vec.WithLabelValues(table)); v != 0 {
				t.Errorf("%s: %v at the start", table, v)
			}
		}
	}
}

// SELECT telemetry.request_snapshot() from another session makes the running recorder take a
// snapshot at once (LISTEN/NOTIFY), though the next one is an hour away.
func TestRequestSnapshot(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		go e.runner.Run(ctx) // collects both tiers now, then hourly
		go e.rec.Run(ctx)
		c := e.conn()
		eventually(t, c, `SELECT count(*) = 1 FROM telemetry.snapshots`)
		eventually(t, c, `SELECT telemetry._recorder_listening()`)

		asked := time.Now()
		if _, err := c.Exec(context.Background(), `SELECT telemetry.request_snapshot()`); err != nil {
			t.Fatal(err)
		}
		for {
			var n int
			if err := c.QueryRow(context.Background(), `SELECT count(*) FROM telemetry.snapshots`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n == 2 {
				break
			}
			if time.Since(asked) > 2*time.Second {
				t.Fatalf("no snapshot written 2s after request_snapshot() (%d)", n)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("snapshot written %v after request_snapshot()", time.Since(asked).Round(time.Millisecond))
	})
}

// Several servers recorded into one database (here one server under two names): the analysis
// functions name them all when none is given, answer when one is, and the Quick Start's
// calls with untyped literals still resolve to one function each.
func TestSeveralServersRecorded(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		e.exec(`CREATE TABLE orders (id int); SELECT telemetry.track_table('orders')`)
		ctx := context.Background()
		recorders := []*Recorder{
			New(Options{Pool: e.pool, ServerName: "alpha", BufferRows: 100000}),
			New(Options{Pool: e.pool, ServerName: "beta", BufferRows: 100000}),
		}
		record := func(tier collectors.Tier) time.Time {
			c, err := e.runner.Collect(ctx, tier)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recorders {
				r.Consume(c)
				if err := r.drain(ctx); err != nil {
					t.Fatal(err)
				}
			}
			return c.CapturedAt
		}
		start := record(collectors.TierSnapshot)
		record(collectors.TierSample)
		end := record(collectors.TierSnapshot)

		c := e.conn()
		calls := map[string]string{
			"compare":       `SELECT * FROM telemetry.compare($1, $2%s)`,
			"table_compare": `SELECT * FROM telemetry.table_compare('orders', $1, $2, 'public'%s)`,
			"wait_summary":  `SELECT * FROM telemetry.wait_summary($1, $2%s)`,
			"diagnose":      `SELECT * FROM telemetry.diagnose($1, $2%s)`,
		}
		for name, sql := range calls {
			_, err := c.Exec(ctx, fmt.Sprintf(sql, ""), start, end)
			if err == nil || !strings.Contains(err.Error(), "several servers are recorded (alpha, beta)") {
				t.Errorf("%s with no server named: %v, want the list of servers", name, err)
			}
			for _, server := range []string{"alpha", "beta"} {
				rows := pgtest.Query(t, c, fmt.Sprintf(sql, ", $3"), start, end, server)
				if len(rows) == 0 {
					t.Errorf("%s for %s: no rows", name, server)
				}
			}
		}
		// The Quick Start's literals: resolved (our error, not "not unique"), and with a server named as
		// one more untyped literal, answered.
		for _, stmt := range []string{
			`SELECT * FROM telemetry.compare('2024-12-16 14:00', '2024-12-16 15:00')`,
			`SELECT * FROM telemetry.table_compare('orders', '2024-12-16 14:00', '2024-12-16 15:00')`,
			`SELECT * FROM telemetry.wait_summary('2024-12-16 14:00', '2024-12-16 15:00')`,
		} {
			if _, err := c.Exec(ctx, stmt); err == nil || !strings.Contains(err.Error(), "several servers are recorded") {
				t.Errorf("%s: %v, want the list of servers", stmt, err)
			}
			named := strings.TrimSuffix(stmt, ")") + ", 'public', 'alpha')"
			if !strings.Contains(stmt, "table_compare") {
				named = strings.TrimSuffix(stmt, ")") + ", 'alpha')"
			}
			if _, err := c.Exec(ctx, named); err != nil {
				t.Errorf("%s: %v", named, err)
			}
		}
	})
}

// The deltas and table_deltas views have a row per snapshot after the first, also where some
// of a snapshot's columns are NULL (io_* on 15, bgw_buffers_backend on 17+, no slots).
func TestDeltaViewsHaveRows(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		e.exec(`CREATE TABLE orders (id int); SELECT telemetry.track_table('orders')`)
		for range 3 {
			e.record(collectors.TierSnapshot)
		}
		rows := pgtest.Query(t, e.conn(), `SELECT (SELECT count(*) FROM telemetry.deltas) AS deltas,
			(SELECT count(*) FROM telemetry.table_deltas) AS table_deltas,
			(SELECT count(*) FROM telemetry.deltas d JOIN telemetry.snapshots s USING (id)
			 WHERE d.interval_seconds = round(extract(epoch FROM s.captured_at - (SELECT max(p.captured_at)
			     FROM telemetry.snapshots p WHERE p.captured_at < s.captured_at)), 3)) AS deltas_against_previous`)
		if r := rows[0]; r["deltas"] != int64(2) || r["table_deltas"] != int64(2) || r["deltas_against_previous"] != int64(2) {
			t.Errorf("after 3 snapshots: %v, want 2 of each", r)
		}
	})
}

// wait_summary counts a sample once for a wait seen in several states, sums and takes the
// largest count over its rows, and leaves idle sessions out (the seed's definitions).
func TestWaitSummaryArithmetic(t *testing.T) {
	e := newEnv(t, pgtest.Start(t, pgtest.Versions()[0]))
	e.exec(`SELECT telemetry._ensure_partitions('2024-12-16 14:00+00');
		SELECT telemetry._note_server('s', 's', 15, '2024-12-16 14:00+00');
		INSERT INTO telemetry.samples (id, captured_at, server) VALUES
			(1, '2024-12-16 14:00+00', 's'), (2, '2024-12-16 14:00:30+00', 's'), (3, '2024-12-16 14:01+00', 's'), (4, '2024-12-16 14:01:30+00', 's');
		INSERT INTO telemetry.wait_samples (sample_id, backend_type, wait_event_type, wait_event, state, count, server, captured_at)
		SELECT sample_id, 'client backend', 'Lock', 'relation', state, count, 's', s.captured_at
		FROM (VALUES (1, 'active', 2), (1, 'fastpath function call', 1), (2, 'active', 4), (3, 'idle in transaction', 9))
			v(sample_id, state, count) JOIN telemetry.samples s ON s.id = v.sample_id`)
	rows := pgtest.Query(t, e.conn(), `SELECT * FROM telemetry.wait_summary('2024-12-16 14:00+00', '2024-12-16 14:01:30+00')`)
	if len(rows) != 1 {
		t.Fatalf("wait_summary: %v, want one row", rows)
	}
	got := rows[0]
	want := map[string]string{"wait_event": "relation", "sample_count": "2", "total_waiters": "7",
		"avg_waiters": "3.50", "max_waiters": "4", "pct_of_samples": "50.0"}
	for k, v := range want {
		if s := fmt.Sprint(got[k]); k == "avg_waiters" || k == "pct_of_samples" {
			var text string
			if err := e.conn().QueryRow(context.Background(), `SELECT $1::numeric::text`, got[k]).Scan(&text); err != nil || text != v {
				t.Errorf("%s = %v, want %s", k, got[k], v)
			}
		} else if s != v {
			t.Errorf("%s = %s, want %s", k, s, v)
		}
	}
}
