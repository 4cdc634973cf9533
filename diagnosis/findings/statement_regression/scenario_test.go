package statementregression_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/diagnosis"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// lookups is the batch's work: 150 lookups by k. Few calls, each a long scan without the index:
// the client's time between them, which a loaded machine stretches, stays small beside it; and
// on a fast machine the scans still take well over the second that makes a run slow (60 took
// 0.9 s more than usual on one).
func lookups(t *testing.T, l *lab.Lab, c *pgx.Conn) {
	lab.CPU(t, c, 500*time.Millisecond)
	for i := range 150 {
		lab.MustExec(t, c, `SELECT count(*) FROM lookup_data WHERE k = $1`, i*100)
	}
}

// TestIndexDropped: the lookups' index is gone tonight: the same calls and rows, each a scan of
// the table: slower per call, plan probably changed, first.
func TestIndexDropped(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "statement_regression",
		Setup: func(l *lab.Lab) {
			l.Exec(`CREATE TABLE public.lookup_data (id int PRIMARY KEY, k int, pad text)`)
			l.Exec(`INSERT INTO public.lookup_data SELECT g, g, repeat('x', 50) FROM generate_series(1, 300000) g`)
			l.Exec(`CREATE INDEX lookup_k ON public.lookup_data (k)`)
			l.Exec(`VACUUM ANALYZE public.lookup_data`)
		},
		Usual: lookups,
		Slow: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			l.Exec(`DROP INDEX public.lookup_k`)
			lookups(t, l, c)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			if s := d.Findings[0].Summary; !strings.Contains(s, "lookup_data WHERE k") || !strings.Contains(s, "plan probably changed") {
				t.Errorf("statement_regression %q: want the lookup, plan probably changed", s)
			}
			// diagnose --run prints the cause with the statements under it, and the top statements.
			rep, err := diagnosis.ForRun(context.Background(), l.Admin, runID)
			var text strings.Builder
			if err != nil || rep.Text(&text) != nil || !strings.Contains(text.String(), "Extra time against the baseline median") ||
				!regexp.MustCompile(`(?m)^CRITICAL  statement_regression  \+[0-9.]+ s, [0-9]+% of the extra time\n.*\n +\+[0-9.]+ s  SELECT count\(\*\) FROM lookup_data WHERE k = \$1$`).MatchString(text.String()) ||
				!strings.Contains(text.String(), "Top statements of this run") {
				t.Errorf("diagnose report (%v):\n%s", err, text.String())
			}
			t.Logf("report:\n%s", text.String())
		}})
}
