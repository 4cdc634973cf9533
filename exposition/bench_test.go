package exposition_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// BenchmarkScrape serves /metrics from a runner that collected both tiers with n tracked tables.
func BenchmarkScrape(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("tables=%d", n), func(b *testing.B) {
			srv := pgtest.Start(b, pgtest.Versions()[len(pgtest.Versions())-1])
			dsn := srv.NewDatabase(b)
			track := pgtest.CreateTables(b, pgtest.Connect(b, dsn, ""), n)
			ts, r, _ := startExporterTracking(b, dsn, time.Hour, track...)
			for _, tier := range []collectors.Tier{collectors.TierSample, collectors.TierSnapshot} {
				if _, err := r.Collect(context.Background(), tier); err != nil {
					b.Fatal(err)
				}
			}
			client := &http.Client{}
			b.ResetTimer()
			for b.Loop() {
				resp, err := client.Get(ts.URL + "/metrics")
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
