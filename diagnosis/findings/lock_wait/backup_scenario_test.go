package lockwait_test

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
)

// TestTruncateBehindBackup: tonight the nightly backup (pg_dump) ran late, into the batch's
// window. pg_dump takes an ACCESS SHARE lock on every table it dumps, at its start, and keeps
// them until it ends, while it copies one table after another: the batch's TRUNCATE waited for
// the whole dump, though the dump was copying another table (4 s). The truth an expert wants:
// the holder was the backup, and the fix is the schedule (or a DELETE, whose lock the dump does
// not conflict with), not a lock_timeout.
func TestTruncateBehindBackup(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "lock_wait", Usual: reloads,
		Setup: workRows,
		Slow: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			cpu(t, c)
			dump := l.Conn("pg_dump")
			lab.MustExec(t, dump, `BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY`)
			lab.MustExec(t, dump, `LOCK TABLE public.work IN ACCESS SHARE MODE`)
			var wg sync.WaitGroup
			defer wg.Wait()
			wg.Add(1)
			go func() {
				defer wg.Done()
				// another table's data, some 4 s of it
				if _, err := dump.PgConn().CopyTo(context.Background(), io.Discard,
					`COPY (SELECT g, pg_sleep(0.01) FROM generate_series(1, 400) g) TO STDOUT`); err != nil {
					t.Error(err)
				}
				if _, err := dump.Exec(context.Background(), `COMMIT`); err != nil {
					t.Error(err)
				}
			}()
			l.WaitFor("the dump copying", `SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'pg_dump' AND query LIKE 'COPY%' AND state = 'active')`)
			lab.MustExec(t, c, `TRUNCATE work`)
			lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			if s := d.Findings[0].Summary; !strings.Contains(s, `"TRUNCATE work"`) || !strings.Contains(s, "(application pg_dump,") {
				t.Errorf("lock_wait %q: want the TRUNCATE and the backup it waited behind", s)
			}
			var advice string
			if err := l.Admin.QueryRow(context.Background(), `SELECT recommendation FROM telemetry.diagnose_run_findings($1) WHERE pattern = 'lock_wait'`, runID).Scan(&advice); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(advice, "backup") || !strings.Contains(advice, "ACCESS SHARE") || strings.Contains(advice, "lock_timeout") {
				t.Errorf("lock_wait's advice %q: want the backup's locks explained and its schedule moved, not a lock_timeout", advice)
			}
		}})
}
