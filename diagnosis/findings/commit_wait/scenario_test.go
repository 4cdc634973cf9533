package commitwait_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// commits is the batch's work: small transactions, committed as synchronous_commit says. The
// server names a synchronous standby that does not exist, its sessions committing locally
// (the recorder's too); a commit that waits for the standby waits until it is cancelled
// (statement_timeout does not reach a commit's wait): the transaction stays committed locally,
// with a warning.
func commits(mode string) func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
	return func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
		lab.CPU(t, c, time.Second)
		lab.MustExec(t, c, `SELECT set_config('synchronous_commit', $1, false)`, mode)
		for i := range 3 {
			lab.MustExec(t, c, `BEGIN`)
			lab.MustExec(t, c, `INSERT INTO work VALUES ($1, 'row')`, i)
			cancel := time.AfterFunc(700*time.Millisecond, func() {
				_, _ = l.Admin.Exec(context.Background(), `SELECT pg_cancel_backend($1)`, c.PgConn().PID())
			})
			lab.MustExec(t, c, `COMMIT`)
			cancel.Stop()
		}
		lab.MustExec(t, c, `RESET synchronous_commit`)
	}
}

// TestSyncStandbyMissing: the batch's commits, local in the usual runs, wait for a synchronous
// standby that is gone: waiting at commit (SyncRep) is the cause, first.
func TestSyncStandbyMissing(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "commit_wait",
		Server: func(t *testing.T, major int) *pgtest.Server {
			return pgtest.StartWith(t, major, pgtest.Options{Settings: map[string]string{"synchronous_standby_names": "missing_standby", "synchronous_commit": "local"}})
		},
		Usual: commits("local"), Slow: commits("on"),
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			if !strings.Contains(d.Findings[0].Summary, "SyncRep") {
				t.Errorf("commit_wait %q: want SyncRep named", d.Findings[0].Summary)
			}
		}})
}
