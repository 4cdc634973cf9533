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

// joins hashes the batch's table against itself, its wide payload in the hash table: in
// memory at the usual work_mem, in thousands of batches through temporary files at 64kB.
func joins(workMem string) func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
	return func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
		lab.MustExec(t, c, `SELECT set_config('work_mem', $1, false), set_config('enable_mergejoin', 'off', false),
			set_config('enable_nestloop', 'off', false), set_config('max_parallel_workers_per_gather', '0', false)`, workMem)
		lab.CPU(t, c, 500*time.Millisecond)
		for range 2 {
			lab.MustExec(t, c, `SELECT max(length(a.payload) + length(b.payload)) FROM spill a JOIN spill b USING (id)`)
		}
	}
}

// TestHashJoinSpills: tonight the batch's session runs at a work_mem of 64kB (a role's
// setting lowered), and its hash join, in memory in the usual runs, spills: temp_spill is the
// cause, first, naming the join and its temporary bytes per call against none.
func TestHashJoinSpills(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "temp_spill",
		Setup: func(l *lab.Lab) {
			l.Exec(`CREATE TABLE public.spill (id int, payload text) WITH (autovacuum_enabled = false)`)
			l.Exec(`INSERT INTO public.spill SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 200000) g`)
			l.Exec(`ANALYZE public.spill`)
		},
		Usual: joins("256MB"), Slow: joins("64kB"),
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			if s := d.Findings[0].Summary; !strings.Contains(s, "FROM spill a JOIN spill b") || !strings.Contains(s, "of temporary files per call (baseline 0 B)") {
				t.Errorf("temp_spill %q: want the sort and its temporary bytes per call against none", s)
			}
		}})
}
