package collectors

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// newDesc builds a descriptor in the pgbatch namespace.
func newDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(Namespace+"_"+name, help, labels, nil)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

// optCounter emits a counter only where the server gave a value: a NULL is an absent series.
func optCounter[T int64 | float64](ch chan<- prometheus.Metric, d *prometheus.Desc, v *T, scale float64, labels ...string) {
	if v != nil {
		counter(ch, d, float64(*v)*scale, labels...)
	}
}

// queryAll runs a statement and scans each row into a T through the fields it names.
func queryAll[T any](ctx context.Context, tx pgx.Tx, sql string, fields func(*T) []any, args ...any) ([]T, error) {
	rows, _ := tx.Query(ctx, sql, args...)
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (T, error) {
		var x T
		err := r.Scan(fields(&x)...)
		return x, err
	})
}

// msToSeconds converts PostgreSQL's millisecond timings to the base unit.
const msToSeconds = 1.0 / 1000
