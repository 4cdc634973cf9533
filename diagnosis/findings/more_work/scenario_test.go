package morework_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// loads n rows, the same statement whatever n.
func loads(n int) func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
	return func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
		lab.CPU(t, c, 500*time.Millisecond)
		lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, $1::int) g`, n)
	}
}

// TestMoreRows: tonight's input is 17.5 times the usual: more work is the cause, first, with
// the load under it and its rows against the baseline's. 3,500,000 rows were 4.8 s more on 17
// idle; the 2,000,000 of ten times the usual were 1.5 s more, under three times what a
// starved test client adds in CI (1.3 s).
func TestMoreRows(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "more_work", Usual: loads(200_000), Slow: loads(3_500_000),
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			if s := d.Findings[0].Summary; !strings.Contains(s, "INSERT INTO work") || !strings.Contains(s, "3500000 rows") {
				t.Errorf("more_work %q: want the load and its 3500000 rows", s)
			}
		}})
}

// sleepsPerRow runs sixteen statements of the batch, each sleeping 10 ms for every one of its n
// rows: their time grows with their input, at the same time per row.
func sleepsPerRow(n int) func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
	return func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
		for columns := 1; columns <= 16; columns++ {
			lab.MustExec(t, c, `SELECT `+strings.Repeat(`g, `, columns)+`pg_sleep(0.01) FROM generate_series(1, $1::int) g`, n)
		}
	}
}

// TestEveryStatementGrewALittle: each of the batch's sixteen statements had a fifth more rows
// tonight and took its usual time per row, 0.2 s more each (under cause_min_seconds), 3.2 s in
// all: the run's extra time is its input's growth, and more_work says so. Before, a statement
// whose time rose less than cause_min_seconds was the samples' noise whatever its work, and the
// run's extra went unexplained (a steady growth's run on CI: 48% more rows and 0.8 s more, "no
// part of the batch's own sessions' time grew past its threshold"). Half the 3.2 s is asked:
// the time from a run's last sample to its end (up to a second, measured 0.1 to 1.1 s) is no
// statement's, and differs from run to run.
func TestEveryStatementGrewALittle(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{CheckAlone: true, Usual: sleepsPerRow(100), Slow: sleepsPerRow(120),
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			var moreWork float64
			for _, f := range d.Findings {
				t.Logf("%s %s: %s", f.Pattern, f.Severity, f.Summary)
				if f.Pattern == "statement_regression" {
					t.Errorf("run %d: statement_regression for statements at their usual time per row: %s", runID, f.Summary)
				}
				if f.Pattern == "more_work" && f.ExplainedSeconds != nil {
					moreWork = *f.ExplainedSeconds
				}
			}
			if moreWork < 1.6 {
				t.Errorf("run %d: more_work explains %.1f s of the sixteen statements' 3.2 s more, want most of it", runID, moreWork)
			}
		}})
}
