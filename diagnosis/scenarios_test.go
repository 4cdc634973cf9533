package diagnosis

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// A clean run finds nothing above info. Each pattern's own scenario, a batch with its cause
// injected, is in its folder (diagnosis/patterns/<name>/scenario_test.go).
func TestCleanRunScenario(t *testing.T) {
	lab.RunScenario(t, lab.Scenario{Want: "",
		Work: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			lab.CPU(t, c, time.Second)
			lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
			lab.CPU(t, c, time.Second)
		}})
}

// A run like its baseline runs finds nothing above info: no cause explains extra time it did
// not take, and the window's patterns are context.
func TestCleanRunAgainstBaseline(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "",
		Usual: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			lab.CPU(t, c, time.Second)
			lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
			lab.MustExec(t, c, `SELECT pg_sleep($1)`, 0.5)
		}})
}

// TestBackToBackRunsOwnBoundaries (issue 19, defect 4): a run that begins as the previous one
// ends, within --recorder.request-min-interval of its boundaries, starts on a statement read
// of its own: the previous run's last statement is not the next run's (a false more_work).
func TestBackToBackRunsOwnBoundaries(t *testing.T) {
	for _, major := range pgtest.Versions() {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
			t.Parallel()
			l := lab.New(t, major)
			l.PrepareStatementsAndWork()
			// A statement read before the runs: a run whose own start read comes late (a loaded
			// machine) starts on the read before it.
			l.Exec(`SELECT telemetry.request_snapshot()`)
			l.WaitFor("a statement read", `SELECT EXISTS (SELECT FROM telemetry.statement_info_snapshots)`)
			c := l.Conn("etl_nightly")
			ctx := context.Background()
			begin := func() int64 {
				var id int64
				if err := c.QueryRow(ctx, `SELECT telemetry.batch_begin('nightly')`).Scan(&id); err != nil {
					t.Fatal(err)
				}
				l.WaitFor("the run's start snapshot", `SELECT EXISTS (SELECT FROM telemetry.statement_info_snapshots s
					JOIN telemetry.batch_runs r ON s.captured_at >= r.started_at WHERE r.run_id = $1)`, id)
				return id
			}
			first := begin()
			lab.CPU(t, c, time.Second)
			lab.MustExec(t, c, `INSERT INTO work SELECT g, 'first' FROM generate_series(1, 1000) g`) // the first run's last statement
			lab.MustExec(t, c, `SELECT telemetry.batch_end('nightly')`)
			second := begin()
			lab.MustExec(t, c, `UPDATE work SET payload = 'second'`)
			lab.CPU(t, c, time.Second)
			lab.MustExec(t, c, `SELECT telemetry.batch_end('nightly')`)
			l.WaitFor("the second run's end snapshot", `SELECT EXISTS (SELECT FROM telemetry.statement_info_snapshots s
				JOIN telemetry.batch_runs r ON s.captured_at >= r.ended_at WHERE r.run_id = $1)`, second)
			statementsOf := func(run int64) map[string]bool {
				rows, err := l.Admin.Query(ctx, `SELECT split_part(query, ' ', 1) FROM telemetry.run_statements($1)
					WHERE query ~ '^(INSERT INTO work|UPDATE work)'`, run)
				if err != nil {
					t.Fatal(err)
				}
				verbs, err := pgx.CollectRows(rows, pgx.RowTo[string])
				if err != nil {
					t.Fatal(err)
				}
				out := map[string]bool{}
				for _, v := range verbs {
					out[v] = true
				}
				return out
			}
			if got := statementsOf(first); !got["INSERT"] || got["UPDATE"] {
				t.Errorf("first run's statements on work: %v, want its INSERT alone", got)
			}
			if got := statementsOf(second); got["INSERT"] || !got["UPDATE"] {
				t.Errorf("second run's statements on work: %v, want its UPDATE alone", got)
			}
		})
	}
}

// TestCaveatAfterTheCause (issue 19, defect 7): a run whose start snapshot is missing (the
// exporter started as the batch began) and whose batch waited on another session's lock for
// 3 s, half of it (well past run_own_lock_seconds, 1 s, as sampled every 250 ms at the default
// flags, idle or loaded; lock_contention above info, as the caveat is): the lock comes first, the caveat
// about what could not be judged after it. With a baseline, lock_wait's TestCaveatAfterTheCause.
func TestCaveatAfterTheCause(t *testing.T) {
	for _, major := range pgtest.Versions() {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
			t.Parallel()
			l := lab.New(t, major)
			l.PrepareWork()
			runID := l.Run("nightly", func(c *pgx.Conn) {
				lab.CPU(t, c, time.Second)
				other := l.Conn("reporting")
				lab.MustExec(t, other, `BEGIN`)
				lab.MustExec(t, other, `LOCK TABLE work IN SHARE MODE`)
				release := time.AfterFunc(3*time.Second, func() { other.Exec(context.Background(), `COMMIT`) })
				defer release.Stop()
				lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
				lab.CPU(t, c, 2*time.Second)
			})
			l.Exec(`DELETE FROM telemetry.snapshots WHERE captured_at <= (SELECT start_snapshot_at FROM telemetry.recent_batch_runs WHERE run_id = $1)`, runID)
			var caveat bool
			if err := l.Admin.QueryRow(context.Background(), `SELECT EXISTS (SELECT FROM telemetry.diagnose_run_findings($1) WHERE pattern = 'insufficient_data' AND severity <> 'info')`, runID).Scan(&caveat); err != nil || !caveat {
				t.Fatalf("no insufficient_data caveat for a run without its start snapshot (%v)", err)
			}
			l.CheckFirstFinding(runID, "lock_contention")
		})
	}
}
