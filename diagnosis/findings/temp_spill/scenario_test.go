package tempspill_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// sorts sorts the batch's table: in memory at the usual work_mem, through temporary files in
// several merge passes at 64kB. Its payloads are long and compressed in the table: in memory the
// sort compares them by an abbreviated key taken once per row, while a merge of spilled runs
// compares the whole values, decompressing both at every comparison, so the spill costs time
// even where the temporary files stay in the page cache.
func sorts(workMem string) func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
	return func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
		lab.MustExec(t, c, `SELECT set_config('work_mem', $1, false), set_config('max_parallel_workers_per_gather', '0', false)`, workMem)
		lab.CPU(t, c, 300*time.Millisecond)
		for range 10 { // some 0.4 s more each when spilled: seconds in all, idle or loaded
			lab.MustExec(t, c, `SELECT max(r) FROM (SELECT row_number() OVER (ORDER BY payload, id) AS r FROM spill) s`)
		}
	}
}

// TestSortSpills: tonight the batch's session runs at a work_mem of 64kB (a role's setting
// lowered), and its sort, in memory in the usual runs, spills: temp_spill is the cause, first,
// naming the sort and its temporary bytes per call against none.
func TestSortSpills(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "temp_spill",
		Setup: func(l *lab.Lab) {
			l.Exec(`CREATE TABLE public.spill (id int, payload text) WITH (autovacuum_enabled = false)`)
			l.Exec(`INSERT INTO public.spill SELECT g, md5(g::text) || repeat('x', 4000) FROM generate_series(1, 8000) g`)
			l.Exec(`ANALYZE public.spill`)
		},
		Usual: sorts("256MB"), Slow: sorts("64kB"),
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			if s := d.Findings[0].Summary; !strings.Contains(s, "row_number() OVER (ORDER BY payload, id)") || !strings.Contains(s, "of temporary files per call (baseline 0 B)") {
				t.Errorf("temp_spill %q: want the sort and its temporary bytes per call against none", s)
			}
		}})
}
