package clientwait_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
)

// perRowCommits loads n rows, each in its own transaction (BEGIN, INSERT, COMMIT): the batch's
// usual way, in the baseline runs as tonight.
func perRowCommits(n int) func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
	return func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
		ctx := context.Background()
		for i := range n {
			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO public.work VALUES ($1, $2)`, i, "row"); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestRowCommitsInputGrew: the batch has always committed row by row; tonight its input
// is three times as large (three times the INSERTs, each still in its own transaction). Its
// transactions are no more and no smaller per row than usual: client_wait must not say "the
// batch committed in many more, smaller transactions than usual" (nothing about its commits
// changed; its input grew).
func TestRowCommitsInputGrew(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{CheckAlone: true, Usual: perRowCommits(8000), Slow: perRowCommits(24000),
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			var n int
			var summary string
			if err := l.Admin.QueryRow(context.Background(), `SELECT count(*), coalesce(string_agg(summary, ' | '), '') FROM telemetry.diagnose_run_findings($1)
				WHERE pattern = 'client_wait' AND summary LIKE '%smaller transactions than usual%'`, runID).Scan(&n, &summary); err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				t.Errorf("client_wait blames smaller transactions on a run whose transactions were as usual (one per row, baseline too), only more of them: %s", summary)
			}
		}})
}
