package collectors_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// TestWithoutReadAllStats: a role without pg_monitor sees other roles' sessions with every
// activity column NULL. They are not counted as active Running/CPU sessions, by the sessions
// collector or the wait sampler; the collectors that read sessions say they are degraded,
// and the log says why once. A pg_monitor role sees them all and is not degraded.
func TestWithoutReadAllStats(t *testing.T) {
	forEachVersion(t, func(t *testing.T, srv *pgtest.Server, dsn string) {
		admin := pgtest.Connect(t, dsn, "")
		suffix := strings.TrimPrefix(databaseName(t, admin), "t_")
		plain, monitor := "plain_"+suffix, "monitor_"+suffix
		pgtest.MustExec(t, admin, fmt.Sprintf(`CREATE ROLE %s LOGIN`, plain))
		pgtest.MustExec(t, admin, fmt.Sprintf(`CREATE ROLE %s LOGIN IN ROLE pg_monitor`, monitor))
		t.Cleanup(func() { srv.Exec(t, "postgres", fmt.Sprintf(`DROP ROLE %s; DROP ROLE %s`, plain, monitor)) })
		for range 3 {
			pgtest.Connect(t, dsn, "idle_job") // idle sessions of another role
		}
		sleeper := pgtest.Connect(t, dsn, "sleeping_job")
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = sleeper.Exec(ctx, `SELECT pg_sleep(30)`) }()
		t.Cleanup(func() { cancel(); wg.Wait() })
		waitUntil(t, 5*time.Second, func() bool {
			var n int
			err := admin.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'`).Scan(&n)
			return err == nil && n == 1
		})

		var logs bytes.Buffer
		r := newRunnerWith(t, strings.Replace(dsn, "postgres@", plain+"@", 1), slog.New(slog.NewTextHandler(&logs, nil)), collectors.StatementsConfig{})
		runCtx, stop := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer stop()
		r.Run(runCtx) // both tiers once, the wait sampler for 1.5s
		for range 2 {
			c := collect(t, r, collectors.TierSample)
			for _, g := range c.Sessions {
				if g.BackendType == "unknown" || g.WaitEventType == "Running" && g.State == "unknown" {
					t.Errorf("a session the role may not see is counted: %+v", g)
				}
			}
		}
		collect(t, r, collectors.TierSnapshot)
		mfs := gather(t, r, collectors.TierSample, collectors.TierSnapshot)
		for _, name := range []string{"sessions", "waits", "locks", "progress", "replication"} {
			if v := value(mfs, "pgbatch_collector_degraded", map[string]string{"collector": name, "reason": "no_pg_read_all_stats"}); v == nil || *v != 1 {
				t.Errorf("pgbatch_collector_degraded{collector=%q} = %v, want 1", name, v)
			}
		}
		for _, wait := range []string{"CPU", "PgSleep"} {
			if v := value(mfs, "pgbatch_wait_event_seconds_total", map[string]string{"wait_event": wait}); v != nil && *v > 0 {
				t.Errorf("the wait sampler counted %v session-seconds of %s it may not see", *v, wait)
			}
		}
		if n := strings.Count(logs.String(), "may not read other sessions"); n != 1 {
			t.Errorf("the missing privilege is logged %d times, want once:\n%s", n, logs.String())
		}

		m := newRunner(t, strings.Replace(dsn, "postgres@", monitor+"@", 1))
		var sleeping bool
		for _, g := range collect(t, m, collectors.TierSample).Sessions {
			sleeping = sleeping || g.WaitEvent == "PgSleep" && g.BackendType == "client backend"
		}
		if !sleeping {
			t.Error("a pg_monitor role does not see the sleeping session")
		}
		if v := value(gather(t, m, collectors.TierSample), "pgbatch_collector_degraded", map[string]string{"collector": "sessions"}); v == nil || *v != 0 {
			t.Errorf("pg_monitor role: pgbatch_collector_degraded{collector=\"sessions\"} = %v, want 0", v)
		}
	})
}
