package lockwait_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// usual is the batch's work: some CPU, a pause it asks the server for, a load. The CPU is a
// number of calls, not a time: on a loaded machine a timed loop made 55 calls in a baseline run
// and 237 in the slow one, and that was more work (more_work, rightly).
func usual(t *testing.T, l *lab.Lab, c *pgx.Conn) {
	cpu(t, c)
	lab.MustExec(t, c, `SELECT pg_sleep($1)`, 0.5)
	lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
}

// cpu is the usual work's CPU: 100 calls (0.4-0.7 s).
func cpu(t *testing.T, c *pgx.Conn) {
	for range 100 {
		lab.MustExec(t, c, `SELECT count(*) FROM (SELECT generate_series(1, 100000)) s`)
	}
}

// cpuThen is a run of some CPU, then the batch's statement.
func cpuThen(stmt string) func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
	return func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
		cpu(t, c)
		lab.MustExec(t, c, stmt)
	}
}

// workRows fills public.work with the 1,000 rows the batch updates.
func workRows(l *lab.Lab) {
	l.Exec(`INSERT INTO public.work SELECT g, md5(g::text) FROM generate_series(1, 1000) g`)
}

// TestSharedStatementAndLock (issue 19, defect 1): in the slow run another job runs the
// batch's own "SELECT pg_sleep($1)" again and again (one pg_stat_statements entry for both:
// same role, same database), and a third holds the batch's table for 4 s (three times the
// 1.3 s a starved test client adds between statements in CI). The lock the batch waited on
// is the cause, first; the shared statement is judged on the batch's own sampled time, not on
// the shared entry's calls: no more_work above info.
func TestSharedStatementAndLock(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "lock_wait", Usual: usual,
		Slow: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			reporting, migration := l.Conn("reporting"), l.Conn("migration")
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 4 {
					if _, err := reporting.Exec(context.Background(), `SELECT pg_sleep($1)`, 0.3); err != nil {
						t.Error(err)
						return
					}
				}
			}()
			defer wg.Wait()
			cpu(t, c)
			lab.MustExec(t, c, `SELECT pg_sleep($1)`, 0.5)
			lab.MustExec(t, migration, `BEGIN`)
			lab.MustExec(t, migration, `LOCK TABLE work IN SHARE MODE`)
			release := time.AfterFunc(4*time.Second, func() { migration.Exec(context.Background(), `COMMIT`) })
			defer release.Stop()
			lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			first := d.Findings[0]
			if !strings.Contains(first.Summary, "migration") || !strings.Contains(first.Summary, "INSERT INTO work") {
				t.Errorf("lock_wait %q: want the blocker (migration) and the statement that waited (INSERT INTO work)", first.Summary)
			}
			for _, f := range d.Findings {
				if f.Pattern == "more_work" && f.Severity != "info" {
					t.Errorf("more_work above info: %s", f.Summary)
				}
			}
		}})
}

// TestBatchBlocksItself: two sessions of the batch update the same rows, and one waits 4 s for
// the other's transaction (three times the 1.3 s a starved test client adds in CI): the lock
// is the cause, said to be the batch's own sessions waiting for each other, with the advice to
// split their work, not to move another application's.
func TestBatchBlocksItself(t *testing.T) {
	const post = `UPDATE accounts SET balance = balance + 1 WHERE id <= $1`
	body := func(overlap bool) func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
		return func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			worker := l.Conn("etl_nightly") // shares the beginning session's name: the run's
			lab.MustExec(t, worker, `BEGIN`)
			lab.MustExec(t, worker, post, 500)
			if overlap {
				time.AfterFunc(4*time.Second, func() { _, _ = worker.Exec(context.Background(), `COMMIT`) })
				lab.MustExec(t, c, post, 1000) // waits for the worker's rows
			} else {
				lab.MustExec(t, worker, `COMMIT`)
				lab.MustExec(t, c, post, 1000)
			}
			lab.MustExec(t, c, `SELECT pg_sleep(0.5)`)
		}
	}
	lab.RunSlow(t, lab.SlowRun{Want: "lock_wait",
		Setup: func(l *lab.Lab) {
			l.Exec(`CREATE TABLE public.accounts (id int PRIMARY KEY, balance int)`)
			l.Exec(`INSERT INTO public.accounts SELECT g, 0 FROM generate_series(1, 1000) g`)
		},
		Usual: body(false), Slow: body(true),
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			var rec string
			if err := l.Admin.QueryRow(context.Background(), `SELECT recommendation FROM telemetry.diagnose_run_findings($1) LIMIT 1`, runID).Scan(&rec); err != nil {
				t.Fatal(err)
			}
			if s := d.Findings[0].Summary; !strings.Contains(s, "the batch's own session, pid") || !strings.Contains(s, "wait for each other") ||
				!strings.Contains(rec, "block each other") {
				t.Errorf("lock_wait %q (fix %q): want the batch's own sessions waiting for each other", s, rec)
			}
		}})
}

// TestCaveatAfterTheCause (issue 19, defect 7): the snapshots up to the slow run's start are
// missing (the exporter's database restored without them): the insufficient_data caveat says what could not be
// judged, after the lock the batch waited on, which explains the extra time. The lock is let go
// 4 s after the INSERT began waiting for it, however long the usual work before it took: well
// above run_own_lock_seconds and three times the 1.3 s a starved test client adds in CI. (Held
// from before the usual work for a fixed 5 s, a loaded machine's slower work before the INSERT
// took from the lock's seconds what it added to its own.)
func TestCaveatAfterTheCause(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "lock_wait", Usual: usual,
		Slow: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			migration := l.Conn("migration")
			lab.MustExec(t, migration, `BEGIN`)
			lab.MustExec(t, migration, `LOCK TABLE work IN SHARE MODE`)
			// The usual work, the lock let go 4 s after its INSERT was sent.
			cpu(t, c)
			lab.MustExec(t, c, `SELECT pg_sleep($1)`, 0.5)
			release := time.AfterFunc(4*time.Second, func() { migration.Exec(context.Background(), `COMMIT`) })
			defer release.Stop()
			lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
		},
		After: func(l *lab.Lab, runID int64) {
			l.Exec(`DELETE FROM telemetry.snapshots WHERE captured_at <= (SELECT start_snapshot_at FROM telemetry.recent_batch_runs WHERE run_id = $1)`, runID)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			for i, f := range d.Findings {
				if f.Pattern == "insufficient_data" {
					if f.Severity == "info" || i == 0 {
						t.Errorf("insufficient_data %s at %d: want a caveat above info, after the cause", f.Severity, i)
					}
					return
				}
			}
			t.Errorf("no insufficient_data caveat for a run without its start snapshot")
		}})
}
