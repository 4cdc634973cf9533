package lockwait_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
)

// TestRowLockChainBehindIdleTransaction: tonight a web session (web_app) updated the batch's row
// 1 in its transaction and then waited on row 2, which a third session (stale_app) had changed
// and sat idle in its transaction with for 4 s. The batch's UPDATE of row 1 waits on the web
// session, which waits on the idle one: a chain of row locks, no DDL, no table lock queue. The
// finding follows the chain to the idle session, and the advice is about ending transactions,
// not lock_timeout for DDL.
func TestRowLockChainBehindIdleTransaction(t *testing.T) {
	const update = `UPDATE work SET payload = md5(payload) WHERE id = 1`
	lab.RunSlow(t, lab.SlowRun{Want: "lock_wait",
		Setup: workRows,
		Usual: cpuThen(update),
		Slow: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			cpu(t, c)
			stale, web := l.Conn("stale_app"), l.Conn("web_app")
			webPID := pidOf(t, web)
			lab.MustExec(t, stale, `BEGIN`)
			lab.MustExec(t, stale, `UPDATE work SET payload = 'stale' WHERE id = 2`)
			lab.MustExec(t, web, `BEGIN`)
			lab.MustExec(t, web, `UPDATE work SET payload = 'web' WHERE id = 1`)
			var wg sync.WaitGroup
			defer wg.Wait()
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, s := range []string{`UPDATE work SET payload = 'web' WHERE id = 2`, `COMMIT`} {
					if _, err := web.Exec(context.Background(), s); err != nil {
						t.Error(err)
						return
					}
				}
			}()
			l.WaitFor("the web session waiting on the idle one", `SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock')`, webPID)
			release := time.AfterFunc(4*time.Second, func() { stale.Exec(context.Background(), `COMMIT`) })
			defer release.Stop()
			lab.MustExec(t, c, update)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			s := d.Findings[0].Summary
			var advice string
			if err := l.Admin.QueryRow(context.Background(), `SELECT recommendation FROM telemetry.diagnose_run_findings($1) WHERE pattern = 'lock_wait'`, runID).Scan(&advice); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(advice, "lock_timeout") || strings.Contains(advice, "DDL") {
				t.Errorf("lock_wait's advice blames a DDL lock queue on a chain of row locks (no DDL ran; the head sat idle in a transaction): %q", advice)
			}
			if strings.Contains(s, "head of the lock queue") {
				t.Errorf("lock_wait %q: a chain of row locks is no table lock queue", s)
			}
			if !strings.Contains(s, "(application stale_app,") || !strings.Contains(s, "idle in a transaction") {
				t.Errorf("lock_wait %q: want the chain followed to the session idle in its transaction (stale_app)", s)
			}
			if !strings.Contains(advice, "idle_in_transaction_session_timeout") || !strings.Contains(advice, "stale_app") {
				t.Errorf("lock_wait's advice %q: want stale_app to end its transactions (idle_in_transaction_session_timeout)", advice)
			}
		}})
}
