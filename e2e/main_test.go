// Package e2e proves the dashboards and alerts against the real thing: the exporter binary
// scraping real PostgreSQL servers, and a real Prometheus (Debian's package) scraping the
// exporter and evaluating alerts/pgbatch.rules.yml.
package e2e

import (
	"testing"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }
