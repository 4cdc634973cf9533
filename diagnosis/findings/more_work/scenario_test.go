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

// TestMoreRows: tonight's input is eight times the usual: more work is the cause, first, with
// the load under it and its rows against the baseline's.
func TestMoreRows(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "more_work", Usual: loads(100_000), Slow: loads(800_000),
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			if s := d.Findings[0].Summary; !strings.Contains(s, "INSERT INTO work") || !strings.Contains(s, "800000 rows") {
				t.Errorf("more_work %q: want the load and its 800000 rows", s)
			}
		}})
}
