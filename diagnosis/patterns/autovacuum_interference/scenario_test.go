package autovacuuminterference_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Autovacuum works on the batch's (tracked) table all through the run, slowed to a crawl.
func TestScenario(t *testing.T) {
	lab.RunScenario(t, lab.Scenario{Want: "autovacuum_interference",
		Setup: func(l *lab.Lab) {
			l.Exec(`ALTER TABLE public.work SET (autovacuum_enabled = true, autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1)`)
			l.Exec(`INSERT INTO public.work SELECT g, md5(g::text) FROM generate_series(1, 50000) g`)
			l.Exec(`DELETE FROM public.work`)
			l.WaitFor("autovacuum on work", `SELECT EXISTS (SELECT FROM pg_stat_progress_vacuum WHERE relid = 'public.work'::regclass)`)
		},
		Work: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			lab.CPU(t, c, time.Second)
			lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
			lab.CPU(t, c, time.Second)
		}})
}
