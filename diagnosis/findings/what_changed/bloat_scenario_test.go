package whatchanged_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
)

// TestAutovacuumDisabledBloat: between runs a DBA turned autovacuum off for public.balances
// (ALTER TABLE ... SET (autovacuum_enabled = false)), and the application then updated each of
// its 200,000 rows five times: a million dead rows nothing vacuums, the table six times its
// size (some 28 MB -> 170 MB, past shared_buffers). The batch's summary, a sequential scan, reads
// six times the blocks per call for the same row: 100 calls of some 80 ms on a loaded 2-core
// machine (8 s a run), some 150 ms tonight, 6 s more. The cause is what autovacuum's absence
// let build up: one autovacuum_disabled change, with the bloat (live rows the same) and the
// stale statistics told under it, not table_grew and statistics_stale splitting its time.
func TestAutovacuumDisabledBloat(t *testing.T) {
	const summary = `SELECT count(*), sum(amount) FROM balances WHERE status = 'held'`
	lab.RunSlow(t, lab.SlowRun{Want: "autovacuum_disabled",
		Setup: func(l *lab.Lab) {
			l.Exec(`CREATE TABLE public.balances (id int, status text, amount numeric(12,2), note text)`)
			l.Exec(`INSERT INTO public.balances SELECT g, (ARRAY['open','closed','held'])[1 + g % 3], (g % 10000) / 100.0, repeat(md5(g::text), 3)
				FROM generate_series(1, 200000) g`)
			l.Exec(`VACUUM ANALYZE public.balances`)
		},
		Usual: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			for range 100 {
				lab.MustExec(t, c, summary)
			}
		},
		Between: func(t *testing.T, l *lab.Lab) {
			l.Exec(`ALTER TABLE public.balances SET (autovacuum_enabled = false)`)
			c := l.Conn("billing_app")
			for range 5 {
				lab.MustExec(t, c, `UPDATE balances SET amount = amount + 1`)
			}
			if err := c.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			// Its counts reach the shared statistics at its exit: the run's start reads them.
			l.WaitFor("the updates counted", `SELECT n_tup_upd >= 1000000 FROM pg_stat_all_tables WHERE relid = 'public.balances'::regclass`)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			slowed("SELECT count(*), sum(amount) FROM balances WHERE status")(t, l, runID, d)
			// What an expert reads first: the option, the table, the bloat, and the statement's
			// blocks for the same rows.
			if len(d.Findings) > 0 {
				s := d.Findings[0].Summary
				for _, want := range []string{"public.balances", "autovacuum_enabled = false", "the same 200000 live rows", "dead rows",
					`"SELECT count(*), sum(amount) FROM balances WHERE status = $1" read `, "for the same rows (1 a call)"} {
					if !strings.Contains(s, want) {
						t.Errorf("run %d: the first finding's summary does not say %q: %s", runID, want, s)
					}
				}
			}
			var sameWork bool
			var stats string
			if err := l.Admin.QueryRow(t.Context(), `SELECT coalesce(bool_and((s ->> 'calls')::numeric = (s ->> 'baseline_calls')::numeric
					AND (s ->> 'rows')::numeric = (s ->> 'baseline_rows')::numeric
					AND (s ->> 'blocks_per_call')::numeric >= 4 * (s ->> 'baseline_blocks_per_call')::numeric), false), coalesce(string_agg(s::text, '; '), 'none')
				FROM telemetry.run_changes($1) c, jsonb_array_elements(c.statements) x, LATERAL (SELECT x -> 'statistics' AS s) y
				WHERE c.kind = 'autovacuum_disabled' AND x ->> 'query' LIKE 'SELECT count(*), sum(amount) FROM balances%'`, runID).Scan(&sameWork, &stats); err != nil {
				t.Fatal(err)
			}
			if !sameWork {
				t.Errorf("run %d: the summary's calls, rows and blocks are not the same work on a bloated table: %s", runID, stats)
			}
			// One change of the table, blamed: its growth and stale statistics are told under it.
			l.WaitFor("autovacuum turned off listed, blamed, and nothing else of the table", `SELECT EXISTS (SELECT FROM telemetry.run_changes($1)
				WHERE kind = 'autovacuum_disabled' AND object = 'public.balances' AND old = 'autovacuum_enabled = true' AND new = 'autovacuum_enabled = false'
				  AND detail LIKE '%times its size at the baseline%' AND detail LIKE '%rows modified since its last analyze%'
				  AND severity <> 'info' AND explained_seconds > 0)
				AND NOT EXISTS (SELECT FROM telemetry.run_changes($1) WHERE object = 'public.balances' AND kind <> 'autovacuum_disabled')`, runID)
		}})
}
