package recorder

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/proctest"
)

// Collections a day at the defaults: a sample every 30 s, a snapshot a minute, every
// pg_stat_statements entry stored hourly (--recorder.statements-interval; batches' boundaries
// add theirs).
var perDay = map[string]float64{"sample": 2880, "snapshot": 1440, "statements": 24}

// TestMeasureAgainstSQLMode is issue 12's row 7: the recorder (Go mode: a runner collecting,
// the recorder writing) against pg_cron mode's SQL functions (telemetry.sample() and
// telemetry.snapshot(), the seed's own way of collecting), on the same server, each writing
// into a database of its own, at the same cadence (collections of the two modes alternate,
// a snapshot after every second sample), with 50 active sessions (pg_sleep), 10 tracked
// tables in each database and 1000 statements in pg_stat_statements. Per collection: wall
// time; the CPU of the server's backends doing it (Go mode: its read pool's and its writers',
// /proc/<pid>/stat; SQL mode: the session calling the function); the test process's CPU in
// Go mode. Then rows and bytes a day per table, from what the collections added (the tables'
// partitions, pg_total_relation_size) times the collections a day at the defaults.
// PGBATCH_MEASURE_RECORDER=1 (make bench-recorder): 200 samples and 100 snapshots per mode;
// otherwise (make test) 6 and 3, so it cannot rot.
func TestMeasureAgainstSQLMode(t *testing.T) {
	samples := 6
	if os.Getenv("PGBATCH_MEASURE_RECORDER") != "" {
		samples = 200
	}
	versions := pgtest.Versions()
	srv := pgtest.Start(t, versions[len(versions)-1])
	ctx := context.Background()
	goEnv := newEnvWith(t, srv, srv.NewDatabase(t), time.Hour) // the exporter's default statements interval
	sqlEnv := newEnv(t, srv)
	for _, e := range []*env{goEnv, sqlEnv} {
		e.exec(`DO $$ BEGIN FOR i IN 1..10 LOOP
			EXECUTE format('CREATE TABLE bench_%1$s (id int PRIMARY KEY, v text);
				INSERT INTO bench_%1$s SELECT g, ''x'' FROM generate_series(1, 1000) g', i);
			PERFORM telemetry.track_table('bench_' || i);
		END LOOP; END $$`)
	}
	pgtest.CreateStatements(t, goEnv.conn(), 1000)
	sqlEnv.exec(`CREATE EXTENSION pg_stat_statements`) // snapshot() reads it from its own database
	activeSessions(t, srv.NewDatabase(t), 50)

	goCtl, sqlConn := goEnv.conn(), pgtest.Connect(t, sqlEnv.dsn, "bench sql mode")
	var goDB string
	if err := goCtl.QueryRow(ctx, `SELECT current_database()`).Scan(&goDB); err != nil {
		t.Fatal(err)
	}
	// goBackends is the CPU so far of each backend of the Go mode's pools, by pid.
	goBackends := func() map[uint32]time.Duration {
		return proctest.BackendsCPU(t, goCtl, `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'pg-batch-exporter%'`, goDB)
	}
	type cost struct {
		wall           []time.Duration
		server, client time.Duration
	}
	costs := map[string]*cost{}
	add := func(k string, wall, server, client time.Duration) {
		if costs[k] == nil {
			costs[k] = &cost{}
		}
		costs[k].wall = append(costs[k].wall, wall)
		costs[k].server += server
		costs[k].client += client
	}
	goCollect := func(tier collectors.Tier, measured bool) {
		if tier == collectors.TierSample {
			// The wait sampler's readings go with the sample tier (it reads every second: its own cost
			// is make bench's wait sampler row), untimed: pg_cron mode has no wait sampler.
			if err := goEnv.runner.Waits().Sample(ctx); err != nil {
				t.Fatal(err)
			}
		}
		b0, c0, w0 := goBackends(), processCPU(), time.Now()
		goEnv.record(tier)
		w, c1, b1 := time.Since(w0), processCPU(), goBackends()
		if !measured {
			return
		}
		var server time.Duration
		for pid, cpu := range b1 {
			server += cpu - b0[pid] // a backend opened meanwhile counts from 0
		}
		add("Go mode "+string(tier), w, server, c1-c0)
	}
	sqlCollect := func(tier collectors.Tier, measured bool) {
		pid := sqlConn.PgConn().PID()
		s0, _ := proctest.Stat(t, pid)
		w0 := time.Now()
		pgtest.MustExec(t, sqlConn, `SELECT telemetry.`+string(tier)+`()`) // sample() or snapshot()
		w := time.Since(w0)
		s1, _ := proctest.Stat(t, pid)
		if measured {
			add("SQL mode "+string(tier), w, s1-s0, 0)
		}
	}

	envs := map[string]*env{"Go mode": goEnv, "SQL mode": sqlEnv}
	empty := map[string]map[string]tableSize{"Go mode": tableSizes(t, goEnv), "SQL mode": tableSizes(t, sqlEnv)}
	// Warm-up, not measured: the first snapshot of each mode stores every statement and its
	// text (the statements row of the storage table), the caches fill.
	for range 2 {
		goCollect(collectors.TierSnapshot, false)
		sqlCollect(collectors.TierSnapshot, false)
		goCollect(collectors.TierSample, false)
		sqlCollect(collectors.TierSample, false)
	}
	warm := map[string]map[string]tableSize{"Go mode": tableSizes(t, goEnv), "SQL mode": tableSizes(t, sqlEnv)}
	for i := range samples {
		goCollect(collectors.TierSample, true)
		sqlCollect(collectors.TierSample, true)
		if i%2 == 1 {
			sqlCollect(collectors.TierSnapshot, true)
			goCollect(collectors.TierSnapshot, true)
		}
	}
	collections := map[string]int{"sample": samples, "snapshot": samples / 2}

	var report strings.Builder
	fmt.Fprintf(&report, "\n## Recorder (Go mode) against pg_cron mode's SQL functions: PostgreSQL %d, the same server, alternating, %d samples and %d snapshots each; 50 active sessions, 10 tracked tables, 1000 statements\n",
		srv.Major, samples, samples/2)
	fmt.Fprintf(&report, "| mode | tier | wall p50 / p99 | server CPU per collection (its backends) | exporter process CPU per collection |\n|---|---|---|---|---|\n")
	for _, k := range []string{"Go mode sample", "SQL mode sample", "Go mode snapshot", "SQL mode snapshot"} {
		c := costs[k]
		client := "-"
		if strings.HasPrefix(k, "Go") {
			client = (c.client / time.Duration(len(c.wall))).Round(10 * time.Microsecond).String()
		}
		mode, tier, _ := strings.Cut(k, " mode ")
		fmt.Fprintf(&report, "| %s mode | %s | %s / %s | %s | %s |\n", mode, tier, pct(c.wall, 0.5), pct(c.wall, 0.99),
			(c.server / time.Duration(len(c.wall))).Round(10*time.Microsecond), client)
	}

	// Rows and bytes a day: what the measured collections added, per collection, times the
	// collections a day of the table's tier; the statements' tables from the warm-up's first
	// snapshot, which stored every entry (texts are stored once per statement, not a day).
	fmt.Fprintf(&report, "\n## Recorder storage a day, Go mode against SQL mode, from the collections above at the default intervals\n")
	fmt.Fprintf(&report, "| table | Go mode rows a day | Go mode MiB a day | SQL mode rows a day | SQL mode MiB a day |\n|---|---:|---:|---:|---:|\n")
	var names []string
	for name := range warm["Go mode"] {
		names = append(names, name)
	}
	sort.Strings(names)
	totals := map[string]float64{}
	for _, name := range names {
		if name == "statement_texts" {
			continue
		}
		fmt.Fprintf(&report, "| %s |", name)
		for _, mode := range []string{"Go mode", "SQL mode"} {
			var rows, bytes float64
			if tier := tierOf(name); tier == "statements" {
				d := warm[mode][name].minus(empty[mode][name]) // the first warm-up snapshot's store
				rows, bytes = float64(d.rows)*perDay[tier], float64(d.bytes)*perDay[tier]
			} else {
				d := tableSizes(t, envs[mode])[name].minus(warm[mode][name])
				n := float64(collections[tier])
				rows, bytes = float64(d.rows)/n*perDay[tier], float64(d.bytes)/n*perDay[tier]
			}
			totals[mode] += bytes
			fmt.Fprintf(&report, " %.0f | %.1f |", rows, bytes/(1<<20))
		}
		fmt.Fprintln(&report)
	}
	fmt.Fprintf(&report, "| **total** | | **%.1f** | | **%.1f** |\n", totals["Go mode"]/(1<<20), totals["SQL mode"]/(1<<20))
	fmt.Print(report.String())
}

type tableSize struct{ rows, bytes int64 }

func (a tableSize) minus(b tableSize) tableSize { return tableSize{a.rows - b.rows, a.bytes - b.bytes} }

// tableSizes is each partitioned table of the schema's rows and on-disk size (all its leaf
// partitions with their indexes and TOAST).
func tableSizes(t *testing.T, e *env) map[string]tableSize {
	t.Helper()
	c := e.conn()
	out := map[string]tableSize{}
	for _, r := range pgtest.Query(t, c, `SELECT table_name FROM telemetry._partitioned_tables()`) {
		name := r["table_name"].(string)
		var s tableSize
		if err := c.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM telemetry.`+pgx.Identifier{name}.Sanitize()+`),
			(SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::bigint FROM pg_partition_tree($1::regclass) WHERE isleaf)`,
			"telemetry."+name).Scan(&s.rows, &s.bytes); err != nil {
			t.Fatal(err)
		}
		out[name] = s
	}
	return out
}

// tierOf is the collection that fills a table: its declaration's tier, the parents' own, and
// the statements' (stored hourly) for statement_snapshots.
func tierOf(table string) string {
	for _, d := range collectors.RecordedTables {
		if d.Name == table {
			return string(d.Tier)
		}
	}
	switch table {
	case "samples":
		return "sample"
	case "statement_snapshots", "statement_info_snapshots":
		return "statements"
	}
	return "snapshot"
}

// activeSessions keeps n sessions active in pg_sleep until the test ends.
func activeSessions(t *testing.T, dsn string, n int) {
	t.Helper()
	const app = "bench active session"
	var wg sync.WaitGroup
	for range n {
		c := pgtest.Connect(t, dsn, app)
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = c.Exec(context.Background(), `SELECT pg_sleep(3600)`) }()
	}
	ctl := pgtest.Connect(t, dsn, "")
	t.Cleanup(func() {
		_, _ = ctl.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, app)
		wg.Wait()
	})
	pgtest.Eventually(t, 30*time.Second, "the sessions active", func() bool {
		var k int
		return ctl.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state = 'active'`, app).Scan(&k) == nil && k == n
	})
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pct is the q quantile of ds.
func pct(ds []time.Duration, q float64) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))].Round(10 * time.Microsecond).String()
}
