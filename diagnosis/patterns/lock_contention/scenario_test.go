package lockcontention_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// work: another session holds the batch's table for a third of the run.
func work(t *testing.T, l *lab.Lab, c *pgx.Conn) {
	lab.CPU(t, c, time.Second)
	other := l.Conn("reporting")
	lab.MustExec(t, other, `BEGIN`)
	lab.MustExec(t, other, `LOCK TABLE work IN SHARE MODE`)
	release := time.AfterFunc(1200*time.Millisecond, func() { other.Exec(context.Background(), `COMMIT`) })
	defer release.Stop()
	lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
	lab.CPU(t, c, time.Second)
}

func TestScenario(t *testing.T) {
	lab.RunScenario(t, lab.Scenario{Want: "lock_contention", Work: work})
}

// In pg_cron mode (SQL collection, no wait sampler) the lock is named first all the same.
func TestScenarioSQLMode(t *testing.T) {
	l := lab.NewSQLMode(t, 15)
	l.PrepareWork()
	runID := l.Run("nightly", func(c *pgx.Conn) { work(t, l, c) })
	l.CheckFirstFinding(runID, "lock_contention")
}
