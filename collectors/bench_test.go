package collectors_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// benchServer sets up the reference load: 50 tracked tables and 100 sessions, half of
// them active (in pg_sleep), half idle. It returns a runner tracking all 50 tables.
func benchServer(b *testing.B, major int) *collectors.Runner {
	srv := pgtest.Start(b, major)
	dsn := srv.NewDatabase(b)
	conn := pgtest.Connect(b, dsn, "")
	var track []string
	for i := range 50 {
		name := fmt.Sprintf("public.t%02d", i)
		pgtest.MustExec(b, conn, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, v text); INSERT INTO %s SELECT g, 'x' FROM generate_series(1, 100) g`, name, name))
		track = append(track, name)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 100 {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		if i%2 == 0 {
			wg.Add(1)
			go func() { defer wg.Done(); _, _ = c.Exec(ctx, `SELECT pg_sleep(3600)`) }()
		}
		b.Cleanup(func() { c.Close(context.Background()) })
	}
	b.Cleanup(func() { cancel(); wg.Wait() })
	time.Sleep(200 * time.Millisecond) // let the sleepers start
	return newRunner(b, dsn, track...)
}

func benchmarkTier(b *testing.B, tier collectors.Tier) {
	for _, v := range pgtest.Versions() {
		b.Run(fmt.Sprintf("pg%d", v), func(b *testing.B) {
			r := benchServer(b, v)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := r.Collect(context.Background(), tier); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSampleTier measures one sample-tier collection (sessions, locks, progress, replication).
func BenchmarkSampleTier(b *testing.B) { benchmarkTier(b, collectors.TierSample) }

// BenchmarkSnapshotTier measures one snapshot-tier collection, 50 tracked tables included.
func BenchmarkSnapshotTier(b *testing.B) { benchmarkTier(b, collectors.TierSnapshot) }

// BenchmarkWaitSample measures one tick of the 1s wait sampler.
func BenchmarkWaitSample(b *testing.B) {
	for _, v := range pgtest.Versions() {
		b.Run(fmt.Sprintf("pg%d", v), func(b *testing.B) {
			r := benchServer(b, v)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := r.Waits().Sample(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkStatements measures one snapshot-tier collection with 1000 and 5000 distinct
// statements in pg_stat_statements, and the statements collector's part of it (statements-ms),
// texts already known: the steady state. The first collection, which fetches every text, is
// first-ms.
func BenchmarkStatements(b *testing.B) {
	for _, v := range pgtest.Versions() {
		for _, n := range []int{1000, 5000} {
			b.Run(fmt.Sprintf("pg%d/%d", v, n), func(b *testing.B) {
				srv := pgtest.Start(b, v)
				dsn := srv.NewDatabase(b)
				pgtest.CreateStatements(b, pgtest.Connect(b, dsn, ""), n)
				r := newRunner(b, dsn)
				first, firstTook := collectStatements(b, r)
				if len(first.Entries) < n || len(first.Texts) < n {
					b.Fatalf("%d statements, %d texts, want at least %d", len(first.Entries), len(first.Texts), n)
				}
				b.ReportAllocs()
				b.ResetTimer()
				var took time.Duration
				for b.Loop() {
					_, d := collectStatements(b, r)
					took += d
				}
				b.ReportMetric(float64(firstTook.Microseconds())/1000, "first-ms")
				b.ReportMetric(float64(took.Microseconds())/1000/float64(b.N), "statements-ms")
			})
		}
	}
}

// collectStatements runs one snapshot-tier collection and returns its statements and how long
// the statements collector took.
func collectStatements(b *testing.B, r *collectors.Runner) (*collectors.Statements, time.Duration) {
	c, err := r.Collect(context.Background(), collectors.TierSnapshot)
	if err != nil || c.Statements == nil {
		b.Fatalf("collect: %v, statements %v", err, c)
	}
	for _, res := range c.Results {
		if res.Collector == "statements" {
			return c.Statements, res.Duration
		}
	}
	b.Fatal("no statements result")
	return nil, 0
}
