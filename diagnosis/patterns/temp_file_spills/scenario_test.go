package tempfilespills_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// A sort that does not fit in work_mem.
func TestScenario(t *testing.T) {
	lab.RunScenario(t, lab.Scenario{Want: "temp_file_spills",
		Work: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			lab.CPU(t, c, 500*time.Millisecond)
			lab.MustExec(t, c, `SET work_mem = '1MB'`)
			lab.MustExec(t, c, `SELECT count(*) FROM (SELECT md5(g::text) FROM generate_series(1, 1500000) g ORDER BY 1) s`)
			lab.MustExec(t, c, `RESET work_mem`)
			lab.CPU(t, c, 500*time.Millisecond)
		}})
}
