package lockwait_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// TestRowHeldByPreparedTransaction: tonight a transfer service's two-phase commit changed the
// row the batch updates, in a savepoint, and was prepared (PREPARE TRANSACTION 'xfer_42'), and its coordinator
// did not finish it for 4 s. A prepared transaction keeps its locks with no session:
// pg_blocking_pids() names it pid 0, and pg_stat_activity has no row for it. The truth an
// expert wants: the batch waited behind a prepared transaction, its gid, and how to finish it.
func TestRowHeldByPreparedTransaction(t *testing.T) {
	const update = `UPDATE work SET payload = md5(payload) WHERE id = 1`
	lab.RunSlow(t, lab.SlowRun{Want: "lock_wait",
		Server: func(t *testing.T, major int) *pgtest.Server {
			return pgtest.StartWith(t, major, pgtest.Options{Settings: map[string]string{"max_prepared_transactions": "5"}})
		},
		Setup: workRows,
		Usual: cpuThen(update),
		Slow: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			cpu(t, c)
			xfer := l.Conn("transfer_service")
			// Inside a savepoint, as drivers and ORMs make them: the row's xmax is then the
			// subtransaction's ID, which the batch's UPDATE waits for, not the prepared one's.
			lab.MustExec(t, xfer, `BEGIN`)
			lab.MustExec(t, xfer, `SAVEPOINT transfer`)
			lab.MustExec(t, xfer, `UPDATE work SET payload = 'in transfer' WHERE id = 1`)
			lab.MustExec(t, xfer, `RELEASE SAVEPOINT transfer`)
			lab.MustExec(t, xfer, `PREPARE TRANSACTION 'xfer_42'`)
			finish := time.AfterFunc(4*time.Second, func() {
				if _, err := l.Admin.Exec(context.Background(), `ROLLBACK PREPARED 'xfer_42'`); err != nil {
					t.Error(err)
				}
			})
			defer finish.Stop()
			lab.MustExec(t, c, update)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			s := d.Findings[0].Summary
			if !strings.Contains(s, "behind a prepared transaction (owner ") || !strings.Contains(s, "gid 'xfer_42'") {
				t.Errorf("lock_wait %q: want the prepared transaction the batch waited behind, by its gid", s)
			}
			var advice string
			if err := l.Admin.QueryRow(context.Background(), `SELECT recommendation FROM telemetry.diagnose_run_findings($1) WHERE pattern = 'lock_wait'`, runID).Scan(&advice); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(advice, "COMMIT PREPARED 'xfer_42'") || !strings.Contains(advice, "ROLLBACK PREPARED 'xfer_42'") {
				t.Errorf("lock_wait's advice %q: want how to finish the prepared transaction", advice)
			}
		}})
}
