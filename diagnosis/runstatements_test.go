package diagnosis

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// TestRunStatementsContract: run_statements as the contract (../shared/spec) has it begin.
// Three usual runs, then one where a statement is as usual, one is slower per call, one runs
// three times as often and one is new: each has its verdict; explains_ms is time_ms less
// baseline_time_ms, in milliseconds; the rows come in rank order; p_server names the
// run's server, and an unknown or another server is refused.
func TestRunStatementsContract(t *testing.T) {
	for _, major := range pgtest.Versions() {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
			t.Parallel()
			l := lab.New(t, major)
			l.PrepareStatementsAndWork()
			// Sleeps: their time per call holds on a loaded machine, unlike a quick query's.
			batch := func(tonight bool) func(c *pgx.Conn) {
				return func(c *pgx.Conn) {
					slower, more := 0.05, 2
					if tonight {
						slower, more = 0.25, 6
					}
					for range 3 {
						lab.MustExec(t, c, `SELECT pg_sleep($1)`, 0.1)
						lab.MustExec(t, c, `SELECT pg_sleep($1)::text`, slower)
					}
					for range more {
						lab.MustExec(t, c, `SELECT count(*) FROM (SELECT pg_sleep($1)) s`, 0.05)
					}
					if tonight {
						for range 2 {
							lab.MustExec(t, c, `SELECT pg_sleep($1) IS NULL`, 0.1)
						}
					}
				}
			}
			for range 3 {
				l.Run("nightly", batch(false))
			}
			run := l.Run("nightly", batch(true))

			want := map[string]string{
				"SELECT pg_sleep($1)":                          "unchanged",
				"SELECT pg_sleep($1)::text":                    "slower_per_call",
				"SELECT count(*) FROM (SELECT pg_sleep($1)) s": "more_work",
				"SELECT pg_sleep($1) IS NULL":                  "new",
			}
			admin, err := l.Admin.Acquire(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Release()
			rows := pgtest.Query(t, admin.Conn(), `SELECT rank, query, verdict,
				abs(explains_ms - (time_ms - baseline_time_ms)) < 1 AND abs(time_ms - 1000 * seconds) < 1 AS in_ms
				FROM telemetry.run_statements($1)`, run)
			got := map[string]string{}
			for i, r := range rows {
				if r["rank"] != int32(i+1) {
					t.Errorf("row %d has rank %v: want the rows in rank order", i+1, r["rank"])
				}
				if r["in_ms"] != true {
					t.Errorf("%v: explains_ms is not time_ms less baseline_time_ms, or time_ms not the seconds in milliseconds", r)
				}
				if q, _ := r["query"].(string); want[q] != "" {
					got[q], _ = r["verdict"].(string)
				}
			}
			for q, v := range want {
				if got[q] != v {
					t.Errorf("%q: verdict %q, want %q (rows %v)", q, got[q], v, rows)
				}
			}

			var server string
			if err := l.Admin.QueryRow(context.Background(), `SELECT server FROM telemetry.servers`).Scan(&server); err != nil {
				t.Fatal(err)
			}
			var n int
			if err := l.Admin.QueryRow(context.Background(), `SELECT count(*) FROM telemetry.run_statements($1, $2)`, run, server).Scan(&n); err != nil || n != len(rows) {
				t.Errorf("run_statements(%d, %q): %d rows (%v), want %d", run, server, n, err, len(rows))
			}
			// Another server recorded into the same database; the run named after its own.
			l.Exec(`INSERT INTO telemetry.servers (server) VALUES ('another')`)
			l.Exec(`UPDATE telemetry.batch_runs SET server = $1 WHERE run_id = $2`, server, run)
			for name, msg := range map[string]string{"no-such-server": "no server named 'no-such-server'", "another": "not 'another'"} {
				_, err := l.Admin.Exec(context.Background(), `SELECT * FROM telemetry.run_statements($1, $2)`, run, name)
				if err == nil || !strings.Contains(err.Error(), msg) {
					t.Errorf("run_statements(%d, %q): %v, want an error with %q", run, name, err, msg)
				}
			}
		})
	}
}
