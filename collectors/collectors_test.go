package collectors_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// setupWorkload gives every family something to report: a tracked table, a replication slot,
// and a session in pg_sleep for the wait sampler.
func setupWorkload(t *testing.T, dsn string) {
	conn := pgtest.Connect(t, dsn, "")
	pgtest.MustExec(t, conn, `CREATE TABLE public.orders (id int PRIMARY KEY, note text)`)
	pgtest.MustExec(t, conn, `INSERT INTO public.orders SELECT g, 'n' FROM generate_series(1, 1000) g`)
	pgtest.MustExec(t, conn, `CREATE EXTENSION pg_stat_statements`)
	slot := fmt.Sprintf("golden_%d", time.Now().UnixNano())
	pgtest.MustExec(t, conn, `SELECT pg_create_physical_replication_slot($1, true)`, slot)
	t.Cleanup(func() {
		// The test may have failed already: no t.Fatal in its cleanup.
		c, err := pgx.Connect(context.Background(), dsn)
		if err == nil {
			_, _ = c.Exec(context.Background(), `SELECT pg_drop_replication_slot($1)`, slot)
			c.Close(context.Background())
		}
	})
}

// TestGoldenMetricNames: every collector runs without error on every version, and the set of
// metric names and label names matches the golden file of that version.
func TestGoldenMetricNames(t *testing.T) {
	forEachVersion(t, func(t *testing.T, srv *pgtest.Server, dsn string) {
		setupWorkload(t, dsn)
		sleeper := pgtest.Connect(t, dsn, "")
		done := make(chan error, 1)
		// Asleep until the collections are done (then cancelled by the server, so that no
		// sleep goes on after the test): a fixed 1.5 s could end before a loaded machine's first
		// reading.
		go func() { _, err := sleeper.Exec(context.Background(), `SELECT pg_sleep(60)`); done <- err }()

		r := newRunner(t, dsn, "public.orders")
		waitUntil(t, 5*time.Second, func() bool {
			if err := r.Waits().Sample(context.Background()); err != nil {
				t.Fatal(err)
			}
			return len(r.Waits().Totals()) > 0
		})
		collect(t, r, collectors.TierSample)
		collect(t, r, collectors.TierSnapshot)
		if err := sleeper.PgConn().CancelRequest(context.Background()); err != nil {
			t.Fatal(err)
		}
		var canceled *pgconn.PgError
		if err := <-done; !errors.As(err, &canceled) || canceled.Code != "57014" {
			t.Fatalf("the sleep: %v, want it cancelled", err)
		}
		mfs := gather(t, r, collectors.TierSample, collectors.TierSnapshot)
		got := signature(mfs)

		golden := filepath.Join("testdata", fmt.Sprintf("metrics-pg%d.golden", srv.Major))
		if *update {
			if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test ./collectors -run TestGoldenMetricNames -update)", err)
		}
		if got != string(want) {
			t.Errorf("metric families differ from %s:\n%s", golden, lineDiff(string(want), got))
		}

		_, hasIO := mfs["pgbatch_io_operations_total"]
		if hasIO != (srv.Major >= 16) {
			t.Errorf("pg_stat_io families present=%v on %d", hasIO, srv.Major)
		}
	})
}

// TestCheckpointFamilySameOnEveryVersion: the normalised checkpoint family has the same
// names and labels whichever view it comes from.
func TestCheckpointFamilySameOnEveryVersion(t *testing.T) {
	var first string
	for _, v := range pgtest.Versions() {
		data, err := os.ReadFile(filepath.Join("testdata", fmt.Sprintf("metrics-pg%d.golden", v)))
		if err != nil {
			t.Fatal(err)
		}
		var ckpt []string
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "pgbatch_checkpoint") || strings.HasPrefix(l, "pgbatch_last_checkpoint") {
				ckpt = append(ckpt, l)
			}
		}
		got := strings.Join(ckpt, "\n")
		if len(ckpt) != 6 {
			t.Errorf("pg%d: want 6 checkpoint families, got:\n%s", v, got)
		}
		if first == "" {
			first = got
		} else if got != first {
			t.Errorf("pg%d checkpoint families differ:\n%s\nvs\n%s", v, got, first)
		}
	}
}

func lineDiff(want, got string) string {
	w, g := map[string]bool{}, map[string]bool{}
	for _, l := range strings.Split(want, "\n") {
		w[l] = true
	}
	for _, l := range strings.Split(got, "\n") {
		g[l] = true
	}
	var b strings.Builder
	for l := range w {
		if !g[l] {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	for l := range g {
		if !w[l] {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	return b.String()
}

func waitUntil(t testing.TB, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
