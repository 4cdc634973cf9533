package planchanged_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/report"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// withPlans is the documented setup of plan capture (docs/plans.md): auto_explain for the
// batch's role, the server's log as jsonlog, the exporter at its defaults but
// --plans.source=sql.
var withPlans = lab.Options{Plans: collectors.PlansConfig{Source: collectors.PlansSQL}, BatchRole: "nightly_batch"}

func jsonlogServer(t *testing.T, major int) *pgtest.Server { return pgtest.StartWith(t, major, pgtest.JSONLog) }

// lookupTable is the batch's lookup table, indexed on its key.
func lookupTable(l *lab.Lab) {
	l.Exec(`CREATE TABLE public.lookup (k int, v text)`)
	l.Exec(`INSERT INTO public.lookup SELECT g, md5(g::text) FROM generate_series(1, 100000) g`)
	l.Exec(`CREATE INDEX lookup_k ON public.lookup (k)`)
	l.Exec(`ANALYZE public.lookup`)
}

// lookups is the batch's work: keyed lookups, each an index scan while lookup_k exists.
func lookups(t *testing.T, _ *lab.Lab, c *pgx.Conn) {
	for i := range 150 {
		lab.MustExec(t, c, `SELECT v FROM public.lookup WHERE k = $1`, i*600)
	}
	lab.CPU(t, c, 2*time.Second)
}

// shapes are a plan finding's both shapes and the node furthest from its estimate.
func shapes(t *testing.T, l *lab.Lab, runID int64, pattern string) (shape, baseline, worst string) {
	var evidence []byte
	if err := l.Admin.QueryRow(context.Background(), `SELECT evidence FROM telemetry.diagnose_run_findings($1) WHERE pattern = $2`, runID, pattern).Scan(&evidence); err != nil {
		t.Fatalf("%s's evidence: %v", pattern, err)
	}
	var e struct {
		Shape    string `json:"shape"`
		Baseline string `json:"baseline_shape"`
		Worst    string `json:"worst_node_label"`
	}
	if err := json.Unmarshal(evidence, &e); err != nil {
		t.Fatal(err)
	}
	return e.Shape, e.Baseline, e.Worst
}

// TestIndexDroppedPlanChanged (issue 20): the index a batch's lookups used is dropped between
// runs; auto_explain's plans show the shape change, named first, with both shapes.
func TestIndexDroppedPlanChanged(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "plan_changed",
		Server:  jsonlogServer,
		Options: withPlans,
		Setup:   lookupTable,
		Usual:   lookups,
		Slow: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			l.Exec(`DROP INDEX public.lookup_k`)
			lookups(t, l, c)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, _ *lab.RunDiagnosis) {
			shape, baseline, worst := shapes(t, l, runID, "plan_changed")
			if !strings.Contains(shape, "Seq Scan on lookup") || !strings.Contains(baseline, "using lookup_k on lookup") || worst == "" {
				t.Errorf("plan_changed's shapes: %s against %s (worst node %q)", shape, baseline, worst)
			}
			checkReport(t, l, runID, "Seq Scan on lookup", "using lookup_k on lookup")
		}})
}

// checkReport checks the run's report page shows the statement's plan beside its baseline
// plan, the nodes that differ marked.
func checkReport(t *testing.T, l *lab.Lab, runID int64, runNode, baselineNode string) {
	t.Helper()
	rec := httptest.NewRecorder()
	report.Handler(report.Options{Pool: l.Admin}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, fmt.Sprintf("/report/run/%d", runID), nil))
	body := rec.Body.String()
	if rec.Code != http.StatusOK || !strings.Contains(body, "Plan against the baseline") {
		t.Fatalf("run page (%d) without the plans side by side:\n%s", rec.Code, body)
	}
	for _, node := range []string{runNode, baselineNode} {
		if !regexp.MustCompile(`<tr class="differs">.*` + regexp.QuoteMeta(node)).MatchString(body) {
			t.Errorf("run page does not mark %q as differing", node)
		}
	}
}
