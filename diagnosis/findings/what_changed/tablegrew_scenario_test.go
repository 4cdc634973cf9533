package whatchanged_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
)

// TestTableGrewUnderSummary: between runs another job (an archive import, on a session of its
// own) bulk-loads 450,000 rows of past days into public.events, the table the batch's summary
// reads, ten times its 50,000 rows, and analyzes it after, as a careful loader does: its
// statistics are fresh. The summary aggregates one day that the new rows are not of: the
// same calls and the same row per call, but each call scans ten times the blocks (no index on
// day: a sequential scan, as in the baseline; a parallel one at the new size, the table now
// larger than shared_buffers). 200 calls some 17-20 ms longer each, 3 to 4 s more on an idle
// 2-core machine against a baseline run of about 2 s (more on a loaded one).
// The cause is the table's growth (table_grew, the summary under it), not the batch's own
// work, nor statistics (analyzed after the load).
func TestTableGrewUnderSummary(t *testing.T) {
	const summary = `SELECT count(*), sum(amount) FROM events WHERE day = $1`
	today := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	lab.RunSlow(t, lab.SlowRun{Want: "table_grew",
		Setup: func(l *lab.Lab) {
			// Ten days of 5,000 rows each, today the last.
			l.Exec(`CREATE TABLE public.events (id bigint, day date, account int, amount numeric(12,2), note text)`)
			l.Exec(`INSERT INTO public.events SELECT g, date '2026-03-02' - g % 10, g % 1000, (g % 10000) / 100.0, 'event ' || g
				FROM generate_series(1, 50000) g`)
			l.Exec(`VACUUM ANALYZE public.events`)
		},
		// One transaction, the summaries first: the table is locked through the run's other work
		// too, so that the wait sampler sees the batch hold it in its baseline runs, whose state is
		// then read. (Its summaries alone, a quarter of a second a run in autocommit, may go
		// unseen in all three: once on CI, PostgreSQL 15 and 18, no growth was told, most likely
		// for want of the table's state before the run. A run of a second may also have no
		// reading stored inside its window: the one that closes it is stored just after its end.)
		Usual: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			lab.MustExec(t, c, `BEGIN`)
			for range 200 {
				lab.MustExec(t, c, summary, today)
			}
			lab.CPU(t, c, 1500*time.Millisecond)
			lab.MustExec(t, c, `COMMIT`)
		},
		Between: func(t *testing.T, l *lab.Lab) {
			// A session's counts reach the shared statistics when it flushes them (at most once a
			// second, and at its exit): the load's counted before the analyze, else its late flush
			// adds 450,000 rows modified after the analyze reset them, and the run's start snapshot
			// reads the table stale.
			c := l.Conn("archive_import")
			lab.MustExec(t, c, `INSERT INTO events SELECT g, date '2026-02-20' - g % 90, g % 1000, (g % 10000) / 100.0, 'event ' || g
				FROM generate_series(50001, 500000) g`)
			if err := c.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			l.WaitFor("the load counted", `SELECT n_mod_since_analyze >= 450000
				FROM pg_stat_all_tables WHERE relid = 'public.events'::regclass`)
			c = l.Conn("archive_import")
			lab.MustExec(t, c, `VACUUM ANALYZE events`)
			if err := c.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			l.WaitFor("its analyze counted", `SELECT n_live_tup >= 500000 AND n_mod_since_analyze = 0
				FROM pg_stat_all_tables WHERE relid = 'public.events'::regclass`)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			slowed("SELECT count(*), sum(amount) FROM events WHERE day")(t, l, runID, d)
			named := false
			for _, f := range d.Findings {
				if f.Pattern == "table_grew" && strings.Contains(f.Summary, "public.events") {
					named = true
				}
			}
			if !named {
				t.Errorf("run %d: the growth of public.events is named by no finding: %+v", runID, d.Findings)
			}
			// The same work as the baseline's, ten times the blocks: what says it is the table.
			var sameWork bool
			var stats string
			if err := l.Admin.QueryRow(t.Context(), `SELECT coalesce(bool_and((s ->> 'calls')::numeric = (s ->> 'baseline_calls')::numeric
					AND (s ->> 'rows')::numeric = (s ->> 'baseline_rows')::numeric
					AND (s ->> 'blocks_per_call')::numeric >= 5 * (s ->> 'baseline_blocks_per_call')::numeric), false), coalesce(string_agg(s::text, '; '), 'none')
				FROM telemetry.run_changes($1) c, jsonb_array_elements(c.statements) x, LATERAL (SELECT x -> 'statistics' AS s) y
				WHERE c.kind = 'table_grew' AND x ->> 'query' LIKE 'SELECT count(*), sum(amount) FROM events%'`, runID).Scan(&sameWork, &stats); err != nil {
				t.Fatal(err)
			}
			if !sameWork {
				t.Errorf("run %d: the summary's calls, rows and blocks are not the same work on a grown table: %s", runID, stats)
			}
			l.WaitFor("the growth listed, blamed, and nothing else of the table", `SELECT EXISTS (SELECT FROM telemetry.run_changes($1)
				WHERE kind = 'table_grew' AND object = 'public.events' AND severity <> 'info' AND explained_seconds > 0)
				AND NOT EXISTS (SELECT FROM telemetry.run_changes($1) WHERE object = 'public.events' AND kind <> 'table_grew')`, runID)
		}})
}
