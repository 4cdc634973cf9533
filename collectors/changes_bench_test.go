package collectors_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// BenchmarkTouchedRelations measures the wait sampler's read of the relations a batch's
// sessions lock (issue 20), taken at each reading while a batch runs, and a boundary
// snapshot's read of their state (relation-states-ms): four batch sessions each in a
// transaction that read all 50 tables of the reference load (200 relation locks), beside its
// 100 other sessions.
func BenchmarkTouchedRelations(b *testing.B) {
	for _, v := range pgtest.Versions() {
		b.Run(fmt.Sprintf("pg%d", v), func(b *testing.B) {
			_, dsn := benchServer(b, v)
			var pids []int32
			for range 4 {
				c := pgtest.Connect(b, dsn, "batch")
				pgtest.MustExec(b, c, `BEGIN`)
				for i := range 50 {
					pgtest.MustExec(b, c, fmt.Sprintf(`SELECT count(*) FROM public.t%02d`, i))
				}
				var pid int32
				if err := c.QueryRow(context.Background(), `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
					b.Fatal(err)
				}
				pids = append(pids, pid)
			}
			pool := testPool(b, dsn)
			ctx := context.Background()
			var relids []uint32
			if err := pool.QueryRow(ctx, `SELECT array_agg(DISTINCT x.oid) FROM (`+collectors.SQLTouchedRelations+`) x(pid, oid, nsp, rel)`, pids).Scan(&relids); err != nil {
				b.Fatal(err)
			}
			if len(relids) != 50 {
				b.Fatalf("the batch's sessions lock %d tables, want 50", len(relids))
			}
			start := time.Now()
			if _, err := pool.Exec(ctx, collectors.SQLRelationStates(false), []string{}, []string{}, relids); err != nil {
				b.Fatal(err)
			}
			statesTook := time.Since(start)
			b.ResetTimer()
			for b.Loop() {
				if _, err := pool.Exec(ctx, collectors.SQLTouchedRelations, pids); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(statesTook.Microseconds())/1000, "relation-states-ms")
		})
	}
}
