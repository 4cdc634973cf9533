package collectors_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestCollectorFlags(t *testing.T) {
	app := kingpin.New("test", "")
	sel := collectors.RegisterFlags(app)
	if _, err := app.Parse([]string{"--no-collector.wal", "--no-collector.waits"}); err != nil {
		t.Fatal(err)
	}
	var snapshot []string
	for _, n := range sel.Build(collectors.TierSnapshot, collectors.Config{}) {
		snapshot = append(snapshot, n.Name)
	}
	if got := strings.Join(snapshot, ","); got != "autovacuum,bgwriter,checkpointer,database,io,replication_slots,statements,tables" {
		t.Errorf("snapshot collectors with --no-collector.wal: %s", got)
	}
	if sel.Enabled("waits") || !sel.Enabled("locks") {
		t.Error("--no-collector.waits did not turn the wait sampler off, or locks is off")
	}
}

// TestFailingCollectorSparesTheOthers: a collector that lacks a privilege fails alone, and
// says so in pgbatch_collector_success.
func TestFailingCollectorSparesTheOthers(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Versions()[0])
	dsn := srv.NewDatabase(t)
	role := fmt.Sprintf("limited_%d", time.Now().UnixNano())
	admin := pgtest.Connect(t, dsn, "")
	pgtest.MustExec(t, admin, fmt.Sprintf(`CREATE ROLE %s LOGIN`, role))
	t.Cleanup(func() { srv.Exec(t, "postgres", fmt.Sprintf(`DROP OWNED BY %s; DROP ROLE %s`, role, role)) })
	// Function privileges live in each database's catalog: this affects the test database only.
	pgtest.MustExec(t, admin, `REVOKE EXECUTE ON FUNCTION pg_control_checkpoint() FROM PUBLIC`)

	r := newRunner(t, strings.Replace(dsn, "postgres@", role+"@", 1))
	c, err := r.Collect(t.Context(), collectors.TierSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	mfs := gather(t, r, collectors.TierSnapshot)
	for _, res := range c.Results {
		ok := value(mfs, "pgbatch_collector_success", map[string]string{"collector": res.Collector})
		if res.Collector == "checkpointer" {
			if res.Err == nil || ok == nil || *ok != 0 {
				t.Errorf("checkpointer: err %v, success %v; want a permission error and 0", res.Err, ok)
			}
		} else if res.Err != nil || ok == nil || *ok != 1 {
			t.Errorf("%s failed alongside: %v", res.Collector, res.Err)
		}
	}
	if c.WAL == nil || c.Databases == nil {
		t.Error("the other collectors' data is missing")
	}
}

// TestDisableDefaults: with --collector.disable-defaults only the collectors named run.
func TestDisableDefaults(t *testing.T) {
	app := kingpin.New("test", "")
	sel := collectors.RegisterFlags(app)
	if _, err := app.Parse([]string{"--collector.disable-defaults", "--collector.wal", "--collector.locks", "--no-collector.sessions"}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tier := range []collectors.Tier{collectors.TierSample, collectors.TierSnapshot} {
		for _, n := range sel.Build(tier, collectors.Config{}) {
			names = append(names, n.Name)
		}
	}
	if got := strings.Join(names, ","); got != "locks,wal" {
		t.Errorf("collectors with --collector.disable-defaults --collector.wal --collector.locks: %s", got)
	}
	if sel.Enabled("waits") || sel.Enabled("sessions") {
		t.Error("the wait sampler or sessions runs though not named")
	}
}

// TestBackendWritesWithoutIOCollector: pgbatch_backend_buffers_written_total is the bgwriter
// collector's on every version, also with --no-collector.io (on 17+ it comes from pg_stat_io).
func TestBackendWritesWithoutIOCollector(t *testing.T) {
	forEachVersion(t, func(t *testing.T, _ *pgtest.Server, dsn string) {
		app := kingpin.New("test", "")
		sel := collectors.RegisterFlags(app)
		if _, err := app.Parse([]string{"--no-collector.io"}); err != nil {
			t.Fatal(err)
		}
		r := collectors.NewRunner(collectors.RunnerOptions{Pool: testPool(t, dsn), Selection: sel, SampleEvery: time.Minute, SnapshotEvery: time.Minute})
		collect(t, r, collectors.TierSnapshot)
		if v := value(gather(t, r, collectors.TierSnapshot), "pgbatch_backend_buffers_written_total", nil); v == nil {
			t.Error("pgbatch_backend_buffers_written_total missing with --no-collector.io")
		}
	})
}
