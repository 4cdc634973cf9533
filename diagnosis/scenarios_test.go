package diagnosis

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/diagnosis/internal/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// A clean run finds nothing above info. Each pattern's own scenario, a batch with its cause
// injected, is in its folder (diagnosis/patterns/<name>/scenario_test.go).
func TestCleanRunScenario(t *testing.T) {
	lab.RunScenario(t, lab.Scenario{Want: "",
		Work: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			lab.CPU(t, c, time.Second)
			lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
			lab.CPU(t, c, time.Second)
		}})
}
