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

// ranks sorts the batch's table in memory at the usual work_mem, and spills the same sort to
// temporary files at 64kB.
func ranks(workMem string) func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
	return func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
		lab.MustExec(t, c, `SELECT set_config('work_mem', $1, false)`, workMem)
		lab.CPU(t, c, 500*time.Millisecond)
		for range 2 { // the sort carries the wide payload: a spill of it takes several merge passes
			lab.MustExec(t, c, `SELECT max(r + length(payload)) FROM (SELECT payload, row_number() OVER (ORDER BY id DESC) AS r FROM spill) s`)
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
			l.Exec(`INSERT INTO public.spill SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 300000) g`)
			l.Exec(`ANALYZE public.spill`)
		},
		Usual: ranks("256MB"), Slow: ranks("64kB"),
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			if s := d.Findings[0].Summary; !strings.Contains(s, "row_number()") || !strings.Contains(s, "of temporary files per call (baseline 0 B)") {
				t.Errorf("temp_spill %q: want the sort and its temporary bytes per call against none", s)
			}
		}})
}
