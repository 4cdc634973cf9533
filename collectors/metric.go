package collectors

import (
	"context"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// newDesc builds a descriptor in the pgbatch namespace.
func newDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(Namespace+"_"+name, help, labels, nil)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, validLabels(labels)...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, validLabels(labels)...)
}

// validLabels makes each label value valid text: client_golang refuses a label value that is
// not valid UTF-8 with a panic, which fails the whole scrape.
func validLabels(labels []string) []string {
	for i, l := range labels {
		if v := ValidText(l); v != l {
			labels[i] = v
		}
	}
	return labels
}

// ValidText is s as Prometheus labels and PostgreSQL text accept it: valid UTF-8 (each invalid
// byte becomes U+FFFD), without NUL. A session's query, a database's or a role's name reach
// the exporter in the encoding of the database they were written in, unconverted: a LATIN1
// database's 'é' is the byte 0xE9.
func ValidText(s string) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
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
