package recorder

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/internal/pgtest"
)

// The recorder's row counters exist at 0 for every table it writes from the start, so that a
// dashboard shows 0 rather than "No data".
func TestMetricsStartAtZero(t *testing.T) {
	e := newEnv(t, pgtest.Start(t, pgtest.Versions()[0]))
	rec := New(Options{Pool: e.pool, BufferRows: 1})
	var tables []string
	if err := e.conn().QueryRow(context.Background(), `SELECT array_agg(table_name) FROM telemetry._partitioned_tables()`).Scan(&tables); err != nil {
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
	forEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
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
	forEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
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
				rows := query(t, c, fmt.Sprintf(sql, ", $3"), start, end, server)
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
