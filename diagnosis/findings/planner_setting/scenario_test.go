package plannersetting_test

import (
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestSessionDisablesIndexScans (issue 20): the batch's session turns index scans off itself;
// its plans, captured by auto_explain, carry the settings: the setting is named first, with
// both plans.
func TestSessionDisablesIndexScans(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "planner_setting", Server: lab.JSONLogServer, Options: lab.PlanCapture,
		Setup: lab.LookupTable,
		Usual: lab.Lookups,
		Slow: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			lab.MustExec(t, c, `SET enable_indexscan = off`)
			lab.MustExec(t, c, `SET enable_bitmapscan = off`)
			lab.Lookups(t, l, c)
		}})
}
