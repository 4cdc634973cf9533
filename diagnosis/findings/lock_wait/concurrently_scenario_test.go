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

// reload is the batch's work before its index: some CPU, its table emptied and loaded, the
// index dropped.
func reload(t *testing.T, c *pgx.Conn) {
	cpu(t, c)
	lab.MustExec(t, c, `TRUNCATE work`)
	lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
	lab.MustExec(t, c, `DROP INDEX IF EXISTS work_payload`)
}

// reindexes is the batch's work: reload, then the index built again without blocking the
// table's writers.
func reindexes(t *testing.T, _ *lab.Lab, c *pgx.Conn) {
	reload(t, c)
	lab.MustExec(t, c, `CREATE INDEX CONCURRENTLY work_payload ON work (payload)`)
}

// TestCreateIndexConcurrentlyBehindReport: tonight a report on another table (public.sales, 5 s)
// began just before the batch's CREATE INDEX CONCURRENTLY. Such a build waits for every
// transaction older than it to end, whatever tables it uses: the batch waited for the report
// (Lock:virtualxid), though the report never touched the batch's table. The truth an expert
// wants: the holder (the report: pid, application, statement), that what was waited for is the
// end of an older transaction, and why a report on another table could hold up the build.
func TestCreateIndexConcurrentlyBehindReport(t *testing.T) {
	var reportPID int32
	lab.RunSlow(t, lab.SlowRun{Want: "lock_wait", Usual: reindexes,
		Setup: func(l *lab.Lab) {
			l.Exec(`CREATE TABLE public.sales (day int, amount numeric)`)
			l.Exec(`INSERT INTO public.sales SELECT g % 30, g % 1000 FROM generate_series(1, 10000) g`)
		},
		Slow: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			reload(t, c)
			report := l.Conn("monthly_report")
			reportPID = pidOf(t, report)
			var wg sync.WaitGroup
			defer wg.Wait()
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := report.Exec(context.Background(), `SELECT sum(amount), pg_sleep(5) FROM public.sales`); err != nil {
					t.Error(err)
				}
			}()
			l.WaitFor("the report running", `SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep')`, reportPID)
			lab.MustExec(t, c, `CREATE INDEX CONCURRENTLY work_payload ON work (payload)`)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			s := d.Findings[0].Summary
			for _, want := range []string{`"CREATE INDEX CONCURRENTLY work_payload ON work (payload)"`, "pid " + strconv.Itoa(int(reportPID)) + " (application monthly_report,",
				`running "SELECT sum(amount), pg_sleep`, "the end of a transaction older than it"} {
				if !strings.Contains(s, want) {
					t.Errorf("lock_wait %q: want %q (the build, the report it waited for, and what it waited for)", s, want)
				}
			}
			var advice string
			if err := l.Admin.QueryRow(context.Background(), `SELECT recommendation FROM telemetry.diagnose_run_findings($1) WHERE pattern = 'lock_wait'`, runID).Scan(&advice); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(advice, "CONCURRENTLY") || !strings.Contains(advice, "whatever tables") {
				t.Errorf("lock_wait's advice %q: want why a build CONCURRENTLY waits for transactions on other tables", advice)
			}
		}})
}
