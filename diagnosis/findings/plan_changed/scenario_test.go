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

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/report"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestIndexDroppedPlanChanged (issue 20): the index a batch's lookups used is dropped between
// runs; auto_explain's plans show the shape change, named first, with both shapes, and the
// report draws both plans side by side.
func TestIndexDroppedPlanChanged(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "plan_changed", Server: lab.JSONLogServer, Options: lab.PlanCapture,
		Setup: lab.LookupTable,
		Usual: lab.Lookups,
		Slow: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			l.Exec(`DROP INDEX public.lookup_k`)
			lab.Lookups(t, l, c)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, _ *lab.RunDiagnosis) {
			CheckPlans(t, l, runID, "plan_changed", "Seq Scan on lookup", "using lookup_k on lookup")
		}})
}

// TestSamePlansClean: with plans captured, runs whose plans did not change find nothing above
// info.
func TestSamePlansClean(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "", Server: lab.JSONLogServer, Options: lab.PlanCapture, Setup: lab.LookupTable, Usual: lab.Lookups,
		Check: func(t *testing.T, l *lab.Lab, runID int64, _ *lab.RunDiagnosis) {
			var changed bool
			if err := l.Admin.QueryRow(context.Background(), `SELECT bool_or(changed) FROM telemetry.run_plans($1)`, runID).Scan(&changed); err != nil || changed {
				t.Errorf("run_plans says a plan changed (%v)", err)
			}
		}})
}

// CheckPlans checks a plan finding's evidence (both shapes, the node furthest from its
// estimate) and that the run's report page shows the plan beside its baseline plan, the nodes
// that differ marked.
func CheckPlans(t *testing.T, l *lab.Lab, runID int64, pattern, runNode, baselineNode string) {
	t.Helper()
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
	if !strings.Contains(e.Shape, runNode) || !strings.Contains(e.Baseline, baselineNode) || e.Worst == "" {
		t.Errorf("%s's shapes: %s against %s (worst node %q)", pattern, e.Shape, e.Baseline, e.Worst)
	}
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
