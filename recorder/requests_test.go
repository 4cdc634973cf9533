package recorder

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// Snapshot requests (issue 9, hole 4): bare notifications from a role with no grant drive no
// collection and are counted; a telemetry_recorder member's request_snapshot() drives one
// within about a second; a burst of requests drives at most one per
// --recorder.request-min-interval (plus the one deferred to its end) and the rest are counted.
func TestSnapshotRequestsAuthorizedAndRateLimited(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		srv.PsqlFile(t, e.dsn, rolesSQL)
		requester := connectAs(t, e.dsn, grantRole(t, srv, e.dsn, "recorder", "telemetry_recorder"))
		nobody := connectAs(t, e.dsn, grantRole(t, srv, e.dsn, "nobody", ""))
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)

		const interval = time.Second
		var mu sync.Mutex
		var triggers []time.Time
		triggered := func() []time.Time { mu.Lock(); defer mu.Unlock(); return append([]time.Time(nil), triggers...) }
		rec := New(Options{Pool: e.pool, BufferRows: 1000, RequestMinInterval: interval, Trigger: func(tier collectors.Tier) {
			if tier == collectors.TierSnapshot {
				mu.Lock()
				triggers = append(triggers, time.Now())
				mu.Unlock()
			}
		}})
		go rec.Run(ctx)
		admin := e.conn()
		eventually(t, admin, `SELECT telemetry._recorder_listening()`)
		ignored := func(reason string) float64 { return value(t, rec.ignoredRequest.WithLabelValues(reason)) }
		waitFor := func(what string, ok func() bool) {
			t.Helper()
			for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("after 20s: %s (snapshots triggered %d, ignored: unauthorized %v, rate_limited %v)",
						what, len(triggered()), ignored(ignoredUnauthorized), ignored(ignoredRateLimited))
				}
			}
		}

		// 300 bare notifications from a role with no grant.
		for range 300 {
			pgtest.MustExec(t, nobody, `SELECT pg_notify('telemetry_request_snapshot', '')`)
		}
		waitFor("300 bare notifications counted unauthorized", func() bool { return ignored(ignoredUnauthorized) == 300 })
		if n := len(triggered()); n != 0 {
			t.Errorf("300 bare notifications drove %d snapshots, want 0", n)
		}
		// Nor may that role ask properly.
		if _, err := nobody.Exec(context.Background(), `SELECT telemetry.request_snapshot()`); err == nil {
			t.Error("request_snapshot() by a role with no grant succeeded")
		}

		// The recorder role asks once.
		asked := time.Now()
		pgtest.MustExec(t, requester, `SELECT telemetry.request_snapshot()`)
		waitFor("a snapshot for the recorder role's request", func() bool { return len(triggered()) == 1 })
		if took := triggered()[0].Sub(asked); took > 1500*time.Millisecond {
			t.Errorf("the requested snapshot came %v after request_snapshot(), want about a second at most", took)
		} else {
			t.Logf("requested snapshot triggered %v after request_snapshot()", took.Round(time.Millisecond))
		}

		// A burst of 20 requests.
		time.Sleep(interval) // the burst's first request is not limited by the previous one
		burstStart := time.Now()
		for range 20 {
			pgtest.MustExec(t, requester, `SELECT telemetry.request_snapshot()`)
		}
		elapsed := time.Since(burstStart)
		burst := func() int { return len(triggered()) - 1 }
		waitFor("every request of the burst driving a snapshot or counted", func() bool {
			return float64(burst())+ignored(ignoredRateLimited) == 20
		})
		time.Sleep(interval + 200*time.Millisecond) // nothing more comes
		limit := int(math.Ceil(float64(elapsed)/float64(interval))) + 1
		if n := burst(); n < 1 || n > limit {
			t.Errorf("a burst of 20 requests over %v drove %d snapshots, want 1 to %d", elapsed.Round(time.Millisecond), n, limit)
		}
		if got := float64(burst()) + ignored(ignoredRateLimited); got != 20 {
			t.Errorf("burst: %d snapshots + %v rate_limited, want 20", burst(), ignored(ignoredRateLimited))
		}
		if u := ignored(ignoredUnauthorized); u != 300 {
			t.Errorf("unauthorized %v after the recorder role's requests, want still 300", u)
		}
		t.Logf("burst of 20 over %v: %d snapshots, %v rate_limited", elapsed.Round(time.Millisecond), burst(), ignored(ignoredRateLimited))
	})
}
