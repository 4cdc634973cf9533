package exposition_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// benchStatements measures the statements collector inside a snapshot-tier collection with
// 1000 and 5000 distinct statements in pg_stat_statements (short: 100): the first collection,
// which fetches every text, then the steady state (texts known), with the collection's
// allocations. The target: well under the snapshot interval (1 min by default).
func benchStatements(t *testing.T, full bool) benchSection {
	sizes, collections := []int{100}, 3
	if full {
		sizes, collections = []int{1000, 5000}, 10
	}
	srv := pgtest.Start(t, latestMajor())
	var rows [][]string
	for _, n := range sizes {
		dsn := srv.NewDatabase(t)
		pgtest.CreateStatements(t, pgtest.Connect(t, dsn, ""), n)
		ts, r, _ := startExporterTracking(t, dsn, time.Hour)
		first, entries := statementsCollection(t, r)
		if entries < n {
			t.Fatalf("%d statements collected, want at least %d", entries, n)
		}
		var took []time.Duration
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		for range collections {
			d, _ := statementsCollection(t, r)
			took = append(took, d)
		}
		runtime.ReadMemStats(&ms1)
		rows = append(rows, []string{fmt.Sprint(n), fmt.Sprint(entries), first.String(),
			fmt.Sprintf("%s / %s", quantile(took, 0.5), quantile(took, 0.99)),
			fmt.Sprintf("%.1f", float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(collections)/(1<<20))})
		ts.Close()
	}
	return benchSection{
		title:  fmt.Sprintf("Statements collection: PostgreSQL %d, %d collections per size after the first", latestMajor(), collections),
		header: []string{"distinct statements", "entries read", "first (every text)", "steady p50 / p99", "MiB alloc per snapshot collection"},
		rows:   rows,
	}
}

// statementsCollection runs one snapshot-tier collection: how long the statements collector
// took, and how many entries it read.
func statementsCollection(t *testing.T, r *collectors.Runner) (time.Duration, int) {
	t.Helper()
	c, err := r.Collect(context.Background(), collectors.TierSnapshot)
	if err != nil || c.Statements == nil {
		t.Fatalf("collect: %v (statements %v)", err, c != nil && c.Statements != nil)
	}
	for _, res := range c.Results {
		if res.Collector == "statements" {
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			return res.Duration, len(c.Statements.Entries)
		}
	}
	t.Fatal("no statements collector in the snapshot tier")
	return 0, 0
}
