package diagnosis

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// plansLab is the documented setup of plan capture: auto_explain for the batch's role, its
// log as jsonlog, the exporter at its defaults but --plans.source=sql.
func plansLab(t *testing.T, major int) *lab.Lab {
	l := lab.NewWith(t, major, lab.Options{Server: pgtest.JSONLog, Plans: collectors.PlansConfig{Source: collectors.PlansSQL},
		BatchRole: fmt.Sprintf("nightly_%d", major)})
	l.Exec(`CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA public`)
	l.PrepareWork()
	l.Exec(`CREATE TABLE public.lookup (k int, v text)`)
	l.Exec(`INSERT INTO public.lookup SELECT g, md5(g::text) FROM generate_series(1, 100000) g`)
	l.Exec(`CREATE INDEX lookup_k ON public.lookup (k)`)
	l.Exec(`ANALYZE public.lookup`)
	return l
}

// lookups is the batch's work: keyed lookups, each an index scan while lookup_k exists.
func lookups(t *testing.T, c *pgx.Conn) {
	for i := range 150 {
		lab.MustExec(t, c, `SELECT v FROM public.lookup WHERE k = $1`, i*600)
	}
	lab.CPU(t, c, 2*time.Second)
}

// planRun is a run whose plans the recorder holds: those its end's snapshot did not read (the
// log's writer may lag the run's end) are read at one asked for after it, taken before the
// next run begins.
func planRun(t *testing.T, l *lab.Lab, work func(c *pgx.Conn)) int64 {
	runID := l.Run("nightly", work)
	var read bool
	if err := l.Admin.QueryRow(context.Background(), `SELECT EXISTS (SELECT FROM telemetry.run_plans($1))`, runID).Scan(&read); err != nil {
		t.Fatal(err)
	}
	if !read {
		l.Exec(`SELECT telemetry.request_snapshot()`)
		l.WaitFor("the run's plans", `SELECT EXISTS (SELECT FROM telemetry.run_plans($1))`, runID)
	}
	return runID
}

// TestPlanShapeChangeScenario (issue 20): the index a batch's lookups used is dropped
// between runs; auto_explain's plans show the shape change, both shapes, named first, above
// the statement it slowed.
func TestPlanShapeChangeScenario(t *testing.T) {
	for _, major := range pgtest.Versions() {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
			t.Parallel()
			l := plansLab(t, major)
			for range 3 {
				planRun(t, l, func(c *pgx.Conn) { lookups(t, c) })
			}
			l.Exec(`DROP INDEX public.lookup_k`)
			slow := planRun(t, l, func(c *pgx.Conn) { lookups(t, c) })
			l.CheckFirstFinding(slow, "plan_changed")
			var evidence []byte
			if err := l.Admin.QueryRow(context.Background(), `SELECT evidence FROM telemetry.diagnose_run_findings($1) WHERE pattern = 'plan_changed'`, slow).Scan(&evidence); err != nil {
				t.Fatal(err)
			}
			var e struct {
				Shape    string `json:"shape"`
				Baseline string `json:"baseline_shape"`
				Worst    string `json:"worst_node_label"`
			}
			if err := json.Unmarshal(evidence, &e); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(e.Shape, "Seq Scan on lookup") || !strings.Contains(e.Baseline, "using lookup_k on lookup") || e.Worst == "" {
				t.Errorf("plan_changed's shapes: %s against %s (worst node %q)", e.Shape, e.Baseline, e.Worst)
			}
		})
	}
}
