package collectors_test

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// TestWaitSamplerPeriodicWorkload: the runner's wait sampler (every 200 ms, at a random
// instant of each interval) against 5 sessions sleeping 80 ms once every 200 ms — a job that
// fires on the interval — at two phase offsets. Each reading hits the sleep with
// probability d = 0.4, so N readings book the truth within a relative standard deviation of
// sqrt((1-d)/(d·N)); each offset must be within 4 of those (±77% at N = 40): a sampler
// locked onto the workload's phase books nothing (-100%) or 2.5 times the truth (+150%).
func TestWaitSamplerPeriodicWorkload(t *testing.T) {
	const interval, sleep, sessions, periods = 200 * time.Millisecond, 80 * time.Millisecond, 5, 40
	srv := pgtest.Start(t, pgtest.Versions()[len(pgtest.Versions())-1])
	for _, phase := range []time.Duration{0, interval / 2} {
		dsn := srv.NewDatabase(t)
		r := newRunner(t, dsn)
		var mu sync.Mutex
		var slept time.Duration // ground truth: session time inside pg_sleep, as the clients saw it
		ctx, cancel := context.WithCancel(context.Background())
		origin := time.Now().Add(500 * time.Millisecond).Truncate(interval).Add(phase)
		var wg sync.WaitGroup
		for range sessions {
			conn := pgtest.Connect(t, dsn, "")
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range periods {
					time.Sleep(time.Until(origin.Add(time.Duration(k) * interval)))
					start := time.Now()
					if _, err := conn.Exec(ctx, `SELECT pg_sleep($1)`, sleep.Seconds()); err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					slept += time.Since(start)
					mu.Unlock()
				}
			}()
		}
		time.Sleep(time.Until(origin))
		done := make(chan struct{})
		go func() { r.Run(ctx); close(done) }()
		wg.Wait()
		cancel()
		<-done
		var booked float64
		for _, w := range r.Waits().Totals() {
			if w.WaitEvent == "PgSleep" {
				booked = w.Seconds
			}
		}
		n := float64(periods)
		bound := 4 * math.Sqrt((1-0.4)/(0.4*n))
		truth := slept.Seconds()
		if e := booked/truth - 1; math.Abs(e) > bound {
			t.Errorf("phase %s: booked %.2f session-seconds in pg_sleep, truth %.2f (%+.0f%%, bound ±%.0f%%)", phase, booked, truth, 100*e, 100*bound)
		} else {
			t.Logf("phase %s: booked %.2f, truth %.2f (%+.0f%%)", phase, booked, truth, 100*e)
		}
	}
}
