package clientwait_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
)

// rowCommitsRows: the batch's single-row INSERTs. 40,000 took 2 s in one transaction and 6 s
// committed one by one (two more round trips a row) on one idle 2-core machine, but only 0.6 to
// 0.8 s more on a faster one (CI twice, PostgreSQL 17): under run_slow_min_extra_seconds.
const rowCommitsRows = 100_000

// insertRows loads n rows with one prepared INSERT each, all in one transaction, or (perRow)
// each in its own: BEGIN, INSERT, COMMIT.
func insertRows(n int, perRow bool) func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
	return func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
		ctx := context.Background()
		var tx pgx.Tx
		var err error
		for i := range n {
			if tx == nil {
				if tx, err = c.Begin(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := tx.Exec(ctx, `INSERT INTO public.work VALUES ($1, $2)`, i, "row"); err != nil {
				t.Fatal(err)
			}
			if perRow {
				if err := tx.Commit(ctx); err != nil {
					t.Fatal(err)
				}
				tx = nil
			}
		}
		if tx != nil {
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestRowByRowCommits: a deploy lost the batch's transaction batching: the same rows, each
// INSERT now committed on its own. The statements do the same work; the extra time is the
// server waiting for the client between the 100,000 BEGINs and COMMITs (fsync is off: no flush
// to wait for). The finding says the batch committed far more often, COMMIT's calls against
// the baseline's, and advises committing in batches.
func TestRowByRowCommits(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "client_wait", Usual: insertRows(rowCommitsRows, false), Slow: insertRows(rowCommitsRows, true),
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			var summary, recommendation string
			var calls, baseline float64
			if err := l.Admin.QueryRow(context.Background(), `SELECT summary, recommendation, (evidence->'commits'->>'calls')::float8,
				(evidence->'commits'->>'baseline_calls')::float8 FROM telemetry.diagnose_run_findings($1) WHERE pattern = 'client_wait'`,
				runID).Scan(&summary, &recommendation, &calls, &baseline); err != nil {
				t.Fatalf("client_wait's commits: %v", err)
			}
			if !strings.Contains(summary, `"commit" ran `) || !strings.Contains(summary, "committed in many more, smaller transactions") ||
				!strings.Contains(summary, fmt.Sprintf(`"INSERT INTO public.work VALUES ($1, $2)" %[1]d (baseline %[1]d)`, rowCommitsRows)) {
				t.Errorf("client_wait %q: want COMMIT's calls against the baseline's, the same INSERTs, and the commits named as the cause", summary)
			}
			// the other sessions of the lab's database commit too: a few a run
			if calls < rowCommitsRows || baseline >= rowCommitsRows/100 {
				t.Errorf("client_wait: COMMIT %v calls (baseline %v), want at least %d against a few", calls, baseline, rowCommitsRows)
			}
			if !strings.Contains(recommendation, "Commit in batches") {
				t.Errorf("client_wait's recommendation %q: want commit in batches", recommendation)
			}
			// The INSERTs did the same work: no statement of theirs is a regression or new. An
			// INSERT committed on its own is a transaction of its own, taking the table's lock and
			// a transaction ID each time (1.75-2.2 times its time per call by pg_stat_statements,
			// 7 against 4 µs, 11 against 5; on CI's loaded machine 14 against 3): that is the
			// commits' work, client_wait's, not the statement's.
			for _, f := range d.Findings {
				if f.Severity != "info" && (f.Pattern == "statement_regression" || f.Pattern == "new_statement") {
					t.Errorf("%s (%s): %s", f.Pattern, f.Severity, f.Summary)
				}
			}
			t.Logf("client_wait: %s", summary)
		}})
}
