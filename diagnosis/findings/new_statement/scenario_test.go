package newstatement_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func usual(t *testing.T, l *lab.Lab, c *pgx.Conn) {
	lab.CPU(t, c, time.Second)
	lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
}

// TestReportJoinedIn: tonight the batch also runs a report it never ran before: the new
// statement is the cause, first, named. The report joins the ids up to 1000 of the four runs'
// loads (4000 x 4000 rows): 4.5 s on 17 idle, where up to 800 (2.3 s) was under three times
// what a starved test client adds in CI (1.3 s).
func TestReportJoinedIn(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "new_statement", Usual: usual,
		Slow: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			usual(t, l, c)
			lab.MustExec(t, c, `SELECT count(*) FROM work a, work b WHERE a.id <= 1000 AND b.id <= 1000 AND a.payload || b.id = b.payload || a.id`)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			if s := d.Findings[0].Summary; !strings.Contains(s, "work a, work b") {
				t.Errorf("new_statement %q: want the report named", s)
			}
		}})
}
