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
