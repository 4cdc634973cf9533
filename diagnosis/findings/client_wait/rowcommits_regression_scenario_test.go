package clientwait_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
)

// TestRowCommitsBesideARegression: tonight the batch committed row by row, and a report query
// it runs once took 2.5 s more. The commits' per-transaction work is client_wait's, up to
// transaction_overhead_seconds a call; the report's 2.5 s in one call is far beyond that: it
// stays statement_regression, not hidden behind 20,000 extra commits.
func TestRowCommitsBesideARegression(t *testing.T) {
	const rows = 20_000
	run := func(perRow bool, sleep float64) func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
		return func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			insertRows(rows, perRow)(t, l, c)
			if _, err := c.Exec(context.Background(), `SELECT pg_sleep($1)`, sleep); err != nil {
				t.Fatal(err)
			}
		}
	}
	lab.RunSlow(t, lab.SlowRun{CheckAlone: true, Usual: run(false, 0.1), Slow: run(true, 2.6),
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			var found []string
			for _, f := range d.Findings {
				found = append(found, fmt.Sprintf("%s (%s)", f.Pattern, f.Severity))
				switch f.Pattern {
				case "client_wait":
					if !strings.Contains(f.Summary, "committed in many more, smaller transactions") {
						t.Errorf("client_wait %q: want the commits named", f.Summary)
					}
				case "statement_regression":
					var sleep float64
					for _, c := range f.Children {
						if c.Query != nil && strings.Contains(*c.Query, "pg_sleep") {
							sleep = c.ExtraSeconds
						}
					}
					if f.Severity == "info" || sleep < 2 {
						t.Errorf("statement_regression (%s): the report's pg_sleep +%.1f s, want at least 2 s above info: %s", f.Severity, sleep, f.Summary)
					}
				}
			}
			if s := strings.Join(found, ", "); !strings.Contains(s, "client_wait (") || !strings.Contains(s, "statement_regression (") {
				t.Errorf("findings %s: want client_wait and statement_regression", s)
			}
		}})
}
