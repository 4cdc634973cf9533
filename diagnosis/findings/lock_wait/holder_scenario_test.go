package lockwait_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
)

// mutexed is the batch's work under its application-level mutex, as job schedulers take one
// to keep a job from running twice: the advisory lock 42, the usual CPU and load, the lock let go.
func mutexed(t *testing.T, l *lab.Lab, c *pgx.Conn) {
	lab.MustExec(t, c, `SELECT pg_advisory_lock(42)`)
	cpu(t, c)
	lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
	lab.MustExec(t, c, `SELECT pg_advisory_unlock(42)`)
}

// TestAdvisoryLockHeldByAnotherApplication: the batch takes its mutex, pg_advisory_lock(42),
// which nobody else holds in its usual runs. Tonight another application's job (ops_report, a
// role of its own) took the same advisory lock first, a session-level one (no transaction),
// and holds it while it runs its own 4 s statement (three times the 1.3 s a starved test
// client adds in CI). The batch's pg_advisory_lock(42) waits on it (Lock:advisory): the cause
// is a lock wait, and the finding names the advisory lock and its holder (application, pid,
// what it ran), not a relation; the advice is about the mutex.
func TestAdvisoryLockHeldByAnotherApplication(t *testing.T) {
	var holderPID int32
	lab.RunSlow(t, lab.SlowRun{Want: "lock_wait", Usual: mutexed,
		Slow: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			ops := l.ConnAs("ops", "ops_report")
			if err := ops.QueryRow(context.Background(), `SELECT pg_backend_pid()`).Scan(&holderPID); err != nil {
				t.Fatal(err)
			}
			lab.MustExec(t, ops, `SELECT pg_advisory_lock(42)`)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				// The other job's work under the mutex, then it lets the mutex go.
				for _, stmt := range []string{`SELECT pg_sleep(4)`, `SELECT pg_advisory_unlock(42)`} {
					if _, err := ops.Exec(context.Background(), stmt); err != nil {
						t.Error(err)
						return
					}
				}
			}()
			defer wg.Wait()
			mutexed(t, l, c) // its pg_advisory_lock(42) waits about 4 s
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			s := d.Findings[0].Summary
			for _, want := range []string{"pg_advisory_lock(", "an advisory lock (key 42)", "ops_report", "pid " + strconv.Itoa(int(holderPID)), `running "SELECT pg_sleep`} {
				if !strings.Contains(s, want) {
					t.Errorf("lock_wait %q: want %q (the advisory lock waited on, and its holder: application, pid, statement)", s, want)
				}
			}
			if strings.Contains(s, "relation") || strings.Contains(s, "the batch's own session") {
				t.Errorf("lock_wait %q: an advisory lock held by another application, not a relation lock nor the batch's own session", s)
			}
			var advice string
			if err := l.Admin.QueryRow(context.Background(), `SELECT recommendation FROM telemetry.diagnose_run_findings($1) WHERE pattern = 'lock_wait'`, runID).Scan(&advice); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(advice, "pg_advisory_unlock") || !strings.Contains(advice, "pg_try_advisory_lock") {
				t.Errorf("lock_wait's advice %q: want how a session-level advisory lock is let go, and the batch's way not to queue", advice)
			}
		}})
}

// TestHolderIdleInTransaction: tonight a report's session changed a row the batch updates, then
// sat idle in its transaction for 4 s before committing (an application that does other
// things between its statements; three times the 1.3 s a starved test client adds in CI). The
// batch's update waits for that transaction: the cause is a lock wait behind the report, which
// was idle in a transaction, not running the update its query shows (its last statement), and
// the advice is about ending transactions.
func TestHolderIdleInTransaction(t *testing.T) {
	const update = `UPDATE work SET payload = md5(payload) WHERE id <= 100`
	lab.RunSlow(t, lab.SlowRun{Want: "lock_wait",
		Setup: workRows,
		Usual: cpuThen(update),
		Slow: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			cpu(t, c)
			report := l.Conn("report")
			lab.MustExec(t, report, `BEGIN`)
			lab.MustExec(t, report, `UPDATE work SET payload = 'seen' WHERE id = 50`)
			release := time.AfterFunc(4*time.Second, func() { report.Exec(context.Background(), `COMMIT`) })
			defer release.Stop()
			lab.MustExec(t, c, update)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			s := d.Findings[0].Summary
			for _, want := range []string{"UPDATE work SET payload = md5(payload)", "(application report,",
				`idle in a transaction, its last statement "UPDATE work SET payload`, "a row changed or locked by another transaction (transaction "} {
				if !strings.Contains(s, want) {
					t.Errorf("lock_wait %q: want %q", s, want)
				}
			}
			var advice string
			if err := l.Admin.QueryRow(context.Background(), `SELECT recommendation FROM telemetry.diagnose_run_findings($1) WHERE pattern = 'lock_wait'`, runID).Scan(&advice); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(advice, "idle_in_transaction_session_timeout") {
				t.Errorf("lock_wait's advice %q: want idle_in_transaction_session_timeout", advice)
			}
		}})
}
