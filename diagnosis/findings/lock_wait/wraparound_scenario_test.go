package lockwait_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
)

// reloads is the batch's work: some CPU, then its table emptied and loaded again.
func reloads(t *testing.T, _ *lab.Lab, c *pgx.Conn) {
	cpu(t, c)
	lab.MustExec(t, c, `TRUNCATE work`)
	lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
}

// TestTruncateBehindWraparoundVacuum: tonight public.work's oldest transaction ID passed its
// autovacuum_freeze_max_age (100,000 here, as the server's 200 million in a busy month) and
// autovacuum began a vacuum to prevent wraparound, a slow one (its cost limit). Unlike an
// ordinary autovacuum, which PostgreSQL cancels when a lock request waits behind it, one to
// prevent wraparound does not give way: the batch's TRUNCATE waited behind it until a DBA
// cancelled it, 4 s later. The truth an expert wants: the holder was autovacuum preventing
// wraparound, and the fix is to freeze the table before the batch's window, not a lock_timeout.
func TestTruncateBehindWraparoundVacuum(t *testing.T) {
	// (ANALYZE too where the table's statistics are due)
	const vacuuming = `SELECT pid FROM pg_stat_activity WHERE query ~ '^autovacuum: VACUUM (ANALYZE )?public\.work \(to prevent wraparound\)$'`
	lab.RunSlow(t, lab.SlowRun{Want: "lock_wait", Usual: reloads,
		Setup: workRows,
		Between: func(t *testing.T, l *lab.Lab) {
			l.Exec(`ALTER TABLE public.work SET (autovacuum_freeze_max_age = 100000, autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1)`)
			// 101,000 transactions, each with its ID: the table's relfrozenxid is then older
			// than its autovacuum_freeze_max_age.
			l.Exec(`DO $$ BEGIN FOR i IN 1..101000 LOOP PERFORM pg_current_xact_id(); COMMIT; END LOOP; END $$`)
			l.WaitFor("autovacuum vacuuming public.work to prevent wraparound", `SELECT EXISTS (`+vacuuming+`)`)
		},
		Slow: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			cpu(t, c)
			cancel := time.AfterFunc(4*time.Second, func() {
				if _, err := l.Admin.Exec(context.Background(), `SELECT pg_cancel_backend(pid) FROM (`+vacuuming+`) v`); err != nil {
					t.Error(err)
				}
			})
			defer cancel.Stop()
			lab.MustExec(t, c, `TRUNCATE work`)
			lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			s := d.Findings[0].Summary
			if !strings.Contains(s, `"TRUNCATE work"`) || !strings.Contains(s, `(an autovacuum worker), running "autovacuum: VACUUM`) || !strings.Contains(s, "public.work (to prevent wraparound)") {
				t.Errorf("lock_wait %q: want the TRUNCATE and the vacuum to prevent wraparound it waited behind", s)
			}
			var advice string
			if err := l.Admin.QueryRow(context.Background(), `SELECT recommendation FROM telemetry.diagnose_run_findings($1) WHERE pattern = 'lock_wait'`, runID).Scan(&advice); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(advice, "wraparound") || !strings.Contains(advice, "VACUUM (FREEZE) public.work") || strings.Contains(advice, "lock_timeout") {
				t.Errorf("lock_wait's advice %q: want the table frozen before the batch's window (a vacuum to prevent wraparound does not give way), not a lock_timeout", advice)
			}
		}})
}
