package clientwait_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
)

// TestRowCommitsBesideARegression: tonight the batch committed row by row, a report query it
// runs once took 2.5 s more, and a statement it calls 4,000 times about 0.5 ms more a call (a
// count over 10,000 generated rows where the baseline's counted 10). The commits' own work is
// client_wait's only up to transaction_overhead_microseconds (100) a call: both statements
// stay statement_regression, not hidden behind 40,000 extra commits; the INSERTs, BEGIN and
// COMMIT are named by no statement finding.
func TestRowCommitsBesideARegression(t *testing.T) {
	const rows = 40_000
	run := func(perRow bool, sleep float64, series int) func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
		return func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			insertRows(rows, perRow)(t, l, c)
			// in one pipeline: no round trip between the calls, whose sampled waits for the client
			// (booked to the statement before) outweighed the commits' once on CI (PostgreSQL 16)
			var counts pgx.Batch
			for range 4000 {
				counts.Queue(`SELECT count(*) FROM generate_series(1, $1)`, series)
			}
			if err := c.SendBatch(t.Context(), &counts).Close(); err != nil {
				t.Fatal(err)
			}
			lab.MustExec(t, c, `SELECT pg_sleep($1)`, sleep)
		}
	}
	lab.RunSlow(t, lab.SlowRun{CheckAlone: true, Usual: run(false, 0.1, 10), Slow: run(true, 2.6, 10_000),
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			var perCall, baselinePerCall float64
			if err := l.Admin.QueryRow(t.Context(), `SELECT s.seconds_per_call::float8, s.baseline_seconds_per_call::float8
				FROM telemetry.run_statements($1) s WHERE s.query LIKE 'SELECT count(*) FROM generate_series%'`, runID).Scan(
				&perCall, &baselinePerCall); err != nil {
				t.Fatalf("the count's time per call: %v", err)
			}
			t.Logf("the count: %.6f s per call, baseline %.6f", perCall, baselinePerCall)
			var found []string
			for _, f := range d.Findings {
				found = append(found, fmt.Sprintf("%s (%s)", f.Pattern, f.Severity))
				t.Logf("%s (%s): %s", f.Pattern, f.Severity, f.Summary)
				switch f.Pattern {
				case "client_wait":
					if f.Severity == "info" || !strings.Contains(f.Summary, "committed in many more, smaller transactions") {
						t.Errorf("client_wait (%s) %q: want the commits named above info", f.Severity, f.Summary)
					}
				case "statement_regression", "new_statement", "more_work":
					var sleep, count float64
					for _, c := range f.Children {
						query := "(no statement known)"
						if c.Query != nil {
							query = *c.Query
						}
						switch {
						case strings.Contains(query, "pg_sleep"):
							sleep = c.ExtraSeconds
						case strings.Contains(query, "generate_series"):
							count = c.ExtraSeconds
						}
						if f.Pattern != "statement_regression" || !strings.Contains(query, "pg_sleep") && !strings.Contains(query, "generate_series") {
							t.Errorf("%s (%s) names %q +%.1f s: want only the two slower statements under statement_regression", f.Pattern, f.Severity, query, c.ExtraSeconds)
						}
					}
					if f.Pattern == "statement_regression" && (f.Severity == "info" || sleep < 2 || count <= 0) {
						t.Errorf("statement_regression (%s): want pg_sleep at least 2 s and the count, above info: %s", f.Severity, f.Summary)
					}
				}
			}
			if s := strings.Join(found, ", "); !strings.Contains(s, "client_wait (") || !strings.Contains(s, "statement_regression (") {
				t.Errorf("findings %s: want client_wait and statement_regression", s)
			}
		}})
}
