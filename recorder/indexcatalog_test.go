package recorder

import (
	"context"
	"testing"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// TestIndexCatalogAtBoundaries: the settings kept hold the names of every table's indexes as
// read at the latest requested snapshot (a batch's boundary); the snapshots between, which do
// not read them, keep no row of their own, and an index dropped shows at the next boundary.
func TestIndexCatalogAtBoundaries(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		c := e.conn()
		pgtest.MustExec(t, c, `CREATE TABLE public.orders (id int PRIMARY KEY, customer int)`)
		pgtest.MustExec(t, c, `CREATE INDEX orders_customer ON public.orders (customer)`)
		kept := func() (rows int, indexes string) {
			t.Helper()
			if err := c.QueryRow(context.Background(), `SELECT count(*),
					(SELECT coalesce(settings -> 'indexes' -> 'public.orders', 'null')::text FROM telemetry.server_settings ORDER BY captured_at DESC LIMIT 1)
				FROM telemetry.server_settings`).Scan(&rows, &indexes); err != nil {
				t.Fatal(err)
			}
			return rows, indexes
		}
		boundary := func() { e.runner.Trigger(collectors.TierSnapshot); e.record(collectors.TierSnapshot) }

		boundary()
		if rows, indexes := kept(); rows != 1 || indexes != `["orders_customer", "orders_pkey"]` {
			t.Errorf("after a boundary: %d row(s), public.orders' indexes %s; want one row with both", rows, indexes)
		}
		e.record(collectors.TierSnapshot)
		pgtest.MustExec(t, c, `DROP INDEX public.orders_customer`)
		e.record(collectors.TierSnapshot)
		if rows, indexes := kept(); rows != 1 || indexes != `["orders_customer", "orders_pkey"]` {
			t.Errorf("between boundaries: %d row(s), public.orders' indexes %s; want the boundary's row only", rows, indexes)
		}
		boundary()
		if rows, indexes := kept(); rows != 2 || indexes != `["orders_pkey"]` {
			t.Errorf("at the next boundary: %d row(s), public.orders' indexes %s; want a second row without orders_customer", rows, indexes)
		}
	})
}
