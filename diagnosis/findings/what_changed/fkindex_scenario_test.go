package whatchanged_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
)

// TestForeignKeyIndexDropped: the index supporting a foreign key, on the referencing column of
// the child table (order_lines.order_id, ON DELETE CASCADE to orders), was dropped between runs.
// The batch purges the oldest orders one by one (DELETE FROM orders WHERE id = $1, each its own
// transaction, as a purge script does to keep its locks short); its statements never name
// order_lines, but each delete's cascade (the key's internal trigger: DELETE FROM ONLY
// order_lines WHERE order_id = $1) now scans the 300,000 lines instead of reading the index,
// some 12 ms a delete on an idle machine: 450 of them are 5 to 6 s more (15 s seen on a
// loaded 2-core one), well above what a starved test client adds between its statements in
// CI (1.3 s). Neither table is tracked: in the baseline runs each delete is a fraction of a
// millisecond, its locks held too briefly for the wait sampler to be sure to see them. The
// cause is the index dropped on public.order_lines, the purge's DELETE under it: most of the
// extra time.
func TestForeignKeyIndexDropped(t *testing.T) {
	const purged = 450 // orders a run purges
	var next int       // the oldest order left (each version's lab starts over)
	lab.RunSlow(t, lab.SlowRun{Want: "index_dropped",
		Setup: func(l *lab.Lab) {
			next = 1
			l.Exec(`CREATE TABLE public.orders (id int PRIMARY KEY, customer int NOT NULL, ordered_on date NOT NULL)`)
			l.Exec(`INSERT INTO public.orders SELECT g, g % 5000, date '2020-01-01' + g / 50 FROM generate_series(1, 50000) g`)
			l.Exec(`CREATE TABLE public.order_lines (order_id int NOT NULL REFERENCES public.orders (id) ON DELETE CASCADE,
				line int NOT NULL, product int NOT NULL, quantity int NOT NULL, price numeric(10,2) NOT NULL)`)
			// Six lines an order, 300,000 in all, stored in the orders' order.
			l.Exec(`INSERT INTO public.order_lines SELECT o, l, (o * 7 + l) % 10000, 1 + l % 5, ((o + l) % 10000) / 100.0
				FROM generate_series(1, 50000) o, generate_series(1, 6) l ORDER BY o, l`)
			l.Exec(`CREATE INDEX order_lines_order_id ON public.order_lines (order_id)`)
			l.Exec(`VACUUM ANALYZE public.orders, public.order_lines`)
		},
		Usual: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			lab.CPU(t, c, time.Second)
			for range purged {
				lab.MustExec(t, c, `DELETE FROM orders WHERE id = $1`, next)
				next++
			}
		},
		Between: func(t *testing.T, l *lab.Lab) { l.Exec(`DROP INDEX public.order_lines_order_id`) },
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			slowed("DELETE FROM orders WHERE id")(t, l, runID, d)
			if len(d.Findings) == 0 || !strings.Contains(d.Findings[0].Summary, "order_lines_order_id on public.order_lines") {
				t.Errorf("run %d: the first finding does not name the index dropped on public.order_lines: %+v", runID, d.Findings)
			}
			// Most of the extra time is the dropped index's.
			if len(d.Findings) > 0 && (d.Findings[0].ShareOfExtraPct == nil || *d.Findings[0].ShareOfExtraPct < 50) {
				t.Errorf("run %d: the first finding explains under half the extra time: %+v", runID, d.Findings[0])
			}
			// Its definition is known where the table's state was read before the run (the sampler
			// saw a baseline delete hold its locks: once on CI's loaded machine, PostgreSQL 16);
			// otherwise the state was first read in the run, the index catalog of the batch's
			// boundaries has names only, and the change says so.
			l.WaitFor("the index listed as dropped, blamed", `SELECT EXISTS (SELECT FROM telemetry.run_changes($1) c
				WHERE kind = 'index_dropped' AND object = 'order_lines_order_id on public.order_lines'
				  AND CASE WHEN EXISTS (SELECT FROM telemetry.relation_states s, telemetry._change_points($1) p
				                        WHERE s.server = p.server AND s.relid = 'public.order_lines'::regclass AND s.captured_at <= p.before_at)
				           THEN c.old = 'CREATE INDEX order_lines_order_id ON public.order_lines USING btree (order_id)'
				           ELSE c.detail LIKE '%the table''s state was first read after the baseline%' END
				  AND severity <> 'info' AND explained_seconds > 0)`, runID)
		}})
}
