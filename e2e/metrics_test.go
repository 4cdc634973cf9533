package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// logicalServer is the server options of these tests: wal_level=logical for the replica
// that replicaSetup subscribes.
var logicalServer = pgtest.Options{Settings: map[string]string{"wal_level": "logical"}}

// exposedNames returns the metric names of one scrape of the exporter.
func exposedNames(t testing.TB, base string) map[string]bool {
	t.Helper()
	body, err := httpGet(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

// beginBatch marks a batch run with telemetry.batch_begin, waiting for the recorder to have
// installed the schema, and returns when it began by the server's clock.
func beginBatch(t testing.TB, conn *pgx.Conn, batch string) time.Time {
	t.Helper()
	ctx := context.Background()
	var run int64
	var err error
	pgtest.Eventually(t, 30*time.Second, "telemetry.batch_begin to exist", func() bool {
		err = conn.QueryRow(ctx, `SELECT telemetry.batch_begin($1)`, batch).Scan(&run)
		return err == nil
	})
	var at time.Time
	if err := conn.QueryRow(ctx, `SELECT started_at FROM telemetry.batch_runs WHERE run_id = $1`, run).Scan(&at); err != nil {
		t.Fatal(err)
	}
	return at
}

// TestDashboardMetricsExposed: every metric a dashboard names is one the exporter really
// exposes on some supported version. The exporter binary runs against each version with
// something for every family to report (a tracked table, a connected replica holding a
// slot, a finished and a running batch run, the recorder on); the names of its scrapes are collected until they
// cover the dashboards or time runs out, and the union is checked.
func TestDashboardMetricsExposed(t *testing.T) {
	want := dashboardMetrics(t)
	var mu sync.Mutex
	seen := map[string][]int{}
	t.Run("versions", func(t *testing.T) {
		for _, v := range pgtest.Versions() {
			t.Run(fmt.Sprintf("pg%d", v), func(t *testing.T) {
				t.Parallel()
				srv := pgtest.StartWith(t, v, logicalServer)
				dsn := srv.NewDatabase(t)
				replicaSetup(t, srv, dsn)
				base := startExporter(t, dsn, "--collector.tables.track=public.batch_items")
				conn := pgtest.Connect(t, dsn, "")
				// One finished run (runs and durations) and one running.
				beginBatch(t, conn, "names_done")
				pgtest.MustExec(t, conn, `SELECT telemetry.batch_end('names_done')`)
				// Normal runs before the running one: its usual duration.
				normalRuns(t, conn, "names", "public.batch_items", 3, 0)
				beginBatch(t, conn, "names")
				// The running batch's own session, by the batch's name, busy at every wait sample.
				worker := pgtest.Connect(t, dsn, "")
				pgtest.MustExec(t, worker, `SET application_name = 'names'`)
				// A snapshot left open, the holder of the cleanup horizon (without a transaction
				// ID, which a logical slot's creation, the subscription's table sync, would wait for).
				holder := pgtest.Connect(t, dsn, "")
				pgtest.MustExec(t, holder, `BEGIN ISOLATION LEVEL REPEATABLE READ`)
				pgtest.MustExec(t, holder, `SELECT 1`)

				names := map[string]bool{}
				missing := func() int {
					n := 0
					for name := range want {
						if !names[name] {
							n++
						}
					}
					return n
				}
				for deadline := time.Now().Add(15 * time.Second); missing() > 0 && time.Now().Before(deadline); {
					// Keep WAL flowing so that the replica reports lag.
					if _, err := worker.Exec(context.Background(), `INSERT INTO public.batch_items (payload) SELECT 'x' FROM generate_series(1, 100); SELECT pg_sleep(0.3)`); err != nil {
						t.Fatal(err)
					}
					for name := range exposedNames(t, base) {
						names[name] = true
					}
				}
				mu.Lock()
				defer mu.Unlock()
				for name := range names {
					seen[name] = append(seen[name], v)
				}
			})
		}
	})
	for _, name := range sortedKeys(want) {
		if versions, ok := seen[name]; ok {
			t.Logf("%s: exposed on %v", name, versions)
		} else {
			t.Errorf("%s is named by %s but the exporter exposes it on no version", name, strings.Join(want[name], "; "))
		}
	}
}
