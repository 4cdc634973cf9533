package recorder

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/schema"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// The seed's Quick Start and Quick Diagnosis Checklist, verbatim (START/END and mytable
// filled in as a user would).
var seedQuickStart = []string{
	`SELECT telemetry.track_table('orders');`,
	`SELECT * FROM telemetry.compare('2024-12-16 14:00', '2024-12-16 15:00');`,
	`SELECT * FROM telemetry.table_compare('orders', '2024-12-16 14:00', '2024-12-16 15:00');`,
	`SELECT * FROM telemetry.wait_summary('2024-12-16 14:00', '2024-12-16 15:00');`,
	`SELECT * FROM telemetry.recent_locks
WHERE captured_at BETWEEN '2024-12-16 14:00' AND '2024-12-16 15:00';`,
	`SELECT bgw_buffers_backend_delta, wal_bytes_pretty
FROM telemetry.compare('2024-12-16 14:00', '2024-12-16 15:00');`,
}

var seedChecklist = []string{
	`SELECT * FROM telemetry.compare('START', 'END');`,
	`SELECT * FROM telemetry.recent_locks
WHERE captured_at BETWEEN 'START' AND 'END';`,
	`SELECT * FROM telemetry.wait_summary('START', 'END');`,
	`SELECT * FROM telemetry.table_compare('mytable', 'START', 'END');`,
	`SELECT * FROM telemetry.recent_progress
WHERE captured_at BETWEEN 'START' AND 'END';`,
	`SELECT * FROM telemetry.recent_replication
WHERE captured_at BETWEEN 'START' AND 'END';`,
}

func TestSeedStatementsVerbatim(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		e.exec(`CREATE TABLE orders (id int PRIMARY KEY, note text); CREATE TABLE mytable (id int)`)
		c := e.conn()
		ctx := context.Background()
		if err := schema.Migrate(ctx, e.pool); err != nil { // a second run is a no-op
			t.Fatalf("second migration: %v", err)
		}
		if _, err := c.Exec(ctx, seedQuickStart[0]); err != nil {
			t.Fatal(err)
		}
		start := e.record(collectors.TierSnapshot)
		e.record(collectors.TierSample)
		e.exec(`INSERT INTO orders SELECT g, 'x' FROM generate_series(1, 1000) g`)
		eventually(t, c, `SELECT n_tup_ins = 1000 FROM pg_stat_user_tables WHERE relname = 'orders'`)
		e.record(collectors.TierSample)
		end := e.record(collectors.TierSnapshot)
		for _, window := range [][2]string{{"2024-12-16 14:00", "2024-12-16 15:00"}, {fmtTime(start), fmtTime(end)}} {
			for _, stmt := range append(append([]string{}, seedQuickStart...), seedChecklist...) {
				stmt = strings.NewReplacer("'2024-12-16 14:00'", "'"+window[0]+"'", "'2024-12-16 15:00'", "'"+window[1]+"'",
					"'START'", "'"+window[0]+"'", "'END'", "'"+window[1]+"'").Replace(stmt)
				if _, err := c.Exec(ctx, stmt); err != nil {
					t.Errorf("%s: %v", stmt, err)
				}
			}
		}
		got := pgtest.Query(t, c, `SELECT * FROM telemetry.table_compare('orders', $1, $2)`, start, end)
		if len(got) != 1 || got[0]["inserts_delta"] != int64(1000) || got[0]["table_name"] != "public.orders" {
			t.Errorf("table_compare over the batch: %v", got)
		}
		if got := pgtest.Query(t, c, `SELECT * FROM telemetry.compare($1, $2)`, start, end); len(got) != 1 {
			t.Errorf("compare over the batch: %v", got)
		}
		if got := pgtest.Query(t, c, `SELECT * FROM telemetry.wait_summary($1, $2)`, start, end); len(got) == 0 {
			t.Errorf("wait_summary over the batch: no rows")
		}
	})
}

func fmtTime(t time.Time) string { return t.Format("2006-01-02 15:04:05.999999Z07:00") }
