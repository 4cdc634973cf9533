package collectors

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

func init() {
	register("autovacuum", TierSnapshot, true, "Autovacuum workers running",
		func(Config) Collector { return autovacuumCollector{} })
}

var autovacuumWorkersDesc = newDesc("autovacuum_workers", "Autovacuum workers running at the snapshot.")

// SQLAutovacuumWorkers counts the running autovacuum workers.
const SQLAutovacuumWorkers = `SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'`

type autovacuumCollector struct{}

func (autovacuumCollector) Collect(ctx context.Context, tx pgx.Tx, c *Collection) error {
	var n int
	if err := tx.QueryRow(ctx, SQLAutovacuumWorkers).Scan(&n); err != nil {
		return err
	}
	c.AutovacuumWorkers = &n
	return nil
}

func (autovacuumCollector) Emit(c *Collection, ch chan<- prometheus.Metric) {
	if c.AutovacuumWorkers != nil {
		gauge(ch, autovacuumWorkersDesc, float64(*c.AutovacuumWorkers))
	}
}
