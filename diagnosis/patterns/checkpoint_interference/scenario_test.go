package checkpointinterference_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Someone forces checkpoints while the batch writes.
func TestScenario(t *testing.T) {
	lab.RunScenario(t, lab.Scenario{Want: "checkpoint_interference",
		Work: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			dba := l.Conn("dba")
			for range 3 {
				lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
				lab.MustExec(t, dba, `CHECKPOINT`)
				lab.CPU(t, c, 500*time.Millisecond)
			}
		}})
}
