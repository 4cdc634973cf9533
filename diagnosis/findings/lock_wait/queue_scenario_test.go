package lockwait_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
)

// loads is the batch's work: some CPU, a pause, a load into public.work (about 2 s in all).
func loads(t *testing.T, l *lab.Lab, c *pgx.Conn) {
	cpu(t, c)
	lab.MustExec(t, c, `SELECT pg_sleep($1)`, 1)
	lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
}

// pidOf is a session's backend pid.
func pidOf(t *testing.T, c *pgx.Conn) int32 {
	var pid int32
	if err := c.QueryRow(context.Background(), `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

// TestLockQueueBehindPendingDDL: tonight a report (nightly_report, a role of its own) reads the
// batch's table for 4 s, holding AccessShareLock; meanwhile a DBA's ALTER TABLE ... ADD COLUMN
// (psql, no lock_timeout) queues for AccessExclusiveLock behind it. The batch's INSERT needs
// only RowExclusiveLock, which the report does not conflict with, but it queues behind the
// ALTER (pg_blocking_pids names the ALTER alone) for the rest of the report's 4 s. The truth
// an expert wants: the batch waited behind the ALTER (pid, statement), which was itself waiting
// behind the report (the root: pid, application, statement), and DDL should set lock_timeout.
func TestLockQueueBehindPendingDDL(t *testing.T) {
	const alter = `ALTER TABLE public.work ADD COLUMN note text`
	var reportPID, ddlPID int32
	lab.RunSlow(t, lab.SlowRun{Want: "lock_wait", Usual: loads,
		Setup: workRows,
		Slow: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			cpu(t, c)
			lab.MustExec(t, c, `SELECT pg_sleep($1)`, 1)
			report, dba := l.ConnAs("report", "nightly_report"), l.Conn("psql")
			reportPID, ddlPID = pidOf(t, report), pidOf(t, dba)
			var wg sync.WaitGroup
			defer wg.Wait()
			wg.Add(2)
			run := func(c *pgx.Conn, sql string) {
				defer wg.Done()
				if _, err := c.Exec(context.Background(), sql); err != nil {
					t.Error(err)
				}
			}
			go run(report, `SELECT count(*), pg_sleep(4) FROM public.work`)
			// Each step once the one before it is in place: the queue, whatever the machine's load.
			l.WaitFor("the report holding the table", `SELECT EXISTS (SELECT FROM pg_locks WHERE pid = $1 AND relation = 'public.work'::regclass AND granted)`, reportPID)
			go run(dba, alter)
			l.WaitFor("the ALTER queued", `SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock')`, ddlPID)
			lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			s := d.Findings[0].Summary
			for _, want := range []string{
				// what waited, the ALTER queued ahead of it, and the report the ALTER waited for
				`"INSERT INTO work SELECT`,
				"pid " + strconv.Itoa(int(ddlPID)) + " (application psql,", `running "` + alter + `"`,
				"itself waiting", "pid " + strconv.Itoa(int(reportPID)) + " (application nightly_report,", `running "SELECT count(*), pg_sleep`,
			} {
				if !strings.Contains(s, want) {
					t.Errorf("lock_wait %q: want %q (the ALTER queued ahead of the batch, itself waiting behind the report)", s, want)
				}
			}
			if i, j := strings.Index(s, "ALTER TABLE"), strings.Index(s, "nightly_report"); i < 0 || j < i {
				t.Errorf("lock_wait %q: want the ALTER named first (what the batch queued behind), then the report it waited for", s)
			}
			var advice string
			if err := l.Admin.QueryRow(context.Background(), `SELECT recommendation FROM telemetry.diagnose_run_findings($1) WHERE pattern = 'lock_wait'`, runID).Scan(&advice); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(advice, "lock_timeout") || !strings.Contains(advice, "queue") || !strings.Contains(advice, "nightly_report") {
				t.Errorf("lock_wait's advice %q: want the DDL to set lock_timeout (queued, it holds up the statements behind it), naming the queue's head", advice)
			}
		}})
}
