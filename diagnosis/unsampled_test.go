package diagnosis

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// TestRunUnsampledStatements (issue 19, defect 5): at the default flags, a run's own brief
// statement that no sample saw is a candidate of telemetry._run_unsampled_statements; a
// statement the samples saw is not, nor one that another role ran in the run's window too,
// nor another role's own. (Here the exporter logs in as the batch's role, so its own
// statements are candidates too: in production it has a role of its own.)
func TestRunUnsampledStatements(t *testing.T) {
	for _, major := range pgtest.Versions() {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
			t.Parallel()
			l := lab.New(t, major)
			l.PrepareStatementsAndWork()
			l.Exec(`INSERT INTO public.work SELECT g, md5(g::text) FROM generate_series(1, 1000) g`)
			other := l.ConnAs("reporting", "reporting")
			runID := l.Run("nightly", func(c *pgx.Conn) {
				// Each its own statement (pg_stat_statements leaves column aliases out of a query_id).
				lab.MustExec(t, c, `SELECT pg_sleep(1.5)`)
				lab.MustExec(t, c, `SELECT count(*) FROM work WHERE id < 500`)
				lab.MustExec(t, c, `SELECT max(id) FROM work`)
				lab.MustExec(t, other, `SELECT max(id) FROM work`)
				lab.MustExec(t, other, `SELECT min(id) FROM work`)
				time.Sleep(500 * time.Millisecond)
			})
			rows, err := l.Admin.Query(context.Background(), `SELECT query FROM telemetry._run_unsampled_statements($1)`, runID)
			if err != nil {
				t.Fatal(err)
			}
			queries, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("candidates: %q", queries)
			has := func(marker string) bool {
				for _, q := range queries {
					if strings.Contains(q, marker) {
						return true
					}
				}
				return false
			}
			if !has("count(*) FROM work WHERE id <") {
				t.Error("the run's own brief statement is not a candidate")
			}
			// Sampled; run by another role too; another role's.
			for _, marker := range []string{"pg_sleep", "max(id) FROM work", "min(id) FROM work"} {
				if has(marker) {
					t.Errorf("%s is a candidate, want it not", marker)
				}
			}
		})
	}
}
