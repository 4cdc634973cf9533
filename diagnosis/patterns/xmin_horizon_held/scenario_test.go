package xminhorizonheld_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestReportHeldHorizon: a report sits idle in a REPEATABLE READ transaction for over a
// minute (xmin_horizon_min_seconds): diagnose over the window names it, how long it held the
// horizon, and its statement.
func TestReportHeldHorizon(t *testing.T) {
	for _, major := range lab.Majors {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
			t.Parallel()
			l := lab.New(t, major)
			var start time.Time
			if err := l.Admin.QueryRow(context.Background(), `SELECT now()`).Scan(&start); err != nil {
				t.Fatal(err)
			}
			report := l.Conn("reporting")
			lab.MustExec(t, report, `BEGIN ISOLATION LEVEL REPEATABLE READ`)
			lab.MustExec(t, report, `SELECT count(*) FROM pg_class`)
			// Held a minute from the first sample that saw it (the window's first sample came
			// before the report began).
			l.WaitFor("a sample of the report", `SELECT EXISTS (SELECT FROM telemetry.xmin_horizon_samples WHERE name = 'reporting')`)
			time.Sleep(61 * time.Second)
			l.WaitFor("a sample of the report a minute later", `SELECT max(captured_at) >= min(captured_at) + interval '61 seconds'
				FROM telemetry.xmin_horizon_samples WHERE name = 'reporting'`)
			var severity, summary string
			if err := l.Admin.QueryRow(context.Background(), `SELECT severity, summary FROM telemetry.diagnose($1, now())
				WHERE pattern = 'xmin_horizon_held'`, start).Scan(&severity, &summary); err != nil {
				t.Fatalf("diagnose: no xmin_horizon_held (%v)", err)
			}
			if severity != "info" || !strings.Contains(summary, `application "reporting"`) || !strings.Contains(summary, "SELECT count(*) FROM pg_class") {
				t.Errorf("xmin_horizon_held %s %q: want info (under 15 minutes), the report and its statement named", severity, summary)
			}
			t.Logf("%s: %s", severity, summary)
		})
	}
}
