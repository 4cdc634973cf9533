package recorder

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/proctest"
)

// fleetMinutes are the minutes of recording at the default intervals that TestMeasureFleet
// writes for each server.
const fleetMinutes = 20

// TestMeasureFleet is issue 22's fleet row: PGBATCH_FLEET_SERVERS servers (10 by default)
// recorded into one recorder database. One runner reads one monitored database (10 tracked
// tables, 1000 statements, 20 active sessions); each server's recorder (a pool of its own,
// naming its rows as a server of its own) writes every collection, all of them at once, at
// the default intervals' proportions: per minute of recording two samples (each after a wait
// sampler reading) and a snapshot, with statements stored hourly and at the first snapshot.
// Measured: the recorder database's CPU (its backends serving the recorders' pools,
// /proc/<pid>/stat) and the rows written, per server and minute of recording; then the
// analysis functions for one server over what was written, the others' rows present.
func TestMeasureFleet(t *testing.T) {
	if os.Getenv("PGBATCH_MEASURE_RECORDER") == "" {
		t.Skip("a measurement, not a test: make bench-recorder (PGBATCH_MEASURE_RECORDER=1)")
	}
	servers := 10
	if v := os.Getenv("PGBATCH_FLEET_SERVERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("PGBATCH_FLEET_SERVERS=%q: a number of servers, at least 1", v)
		}
		servers = n
	}
	versions := pgtest.Versions()
	srv := pgtest.Start(t, versions[len(versions)-1])
	ctx := context.Background()
	e := newEnvWith(t, srv, srv.NewDatabase(t), time.Hour)
	e.exec(`DO $$ BEGIN FOR i IN 1..10 LOOP
		EXECUTE format('CREATE TABLE bench_%1$s (id int PRIMARY KEY, v text);
			INSERT INTO bench_%1$s SELECT g, ''x'' FROM generate_series(1, 1000) g', i);
		PERFORM telemetry.track_table('bench_' || i);
	END LOOP; END $$`)
	ctl := e.conn()
	pgtest.CreateStatements(t, ctl, 1000)
	activeSessions(t, srv.NewDatabase(t), 20)
	var db string
	if err := ctl.QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil {
		t.Fatal(err)
	}

	const app = "pg-batch-exporter fleet recorder"
	var recs []*Recorder
	for i := range servers {
		r := New(Options{Pool: newPool(t, e.dsn, false, app), Retention: 7 * 24 * time.Hour, BufferRows: 100000,
			Trigger: e.runner.Trigger, StatementsEvery: time.Hour, ServerName: fmt.Sprintf("fleet-%02d", i+1)})
		e.runner.Subscribe(r.Consume)
		recs = append(recs, r)
	}
	collect := func(tier collectors.Tier) {
		if tier == collectors.TierSample {
			if err := e.runner.Waits().Sample(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := e.runner.Collect(ctx, tier); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for _, r := range recs {
			wg.Go(func() {
				if err := r.drain(ctx); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		e.rec.mu.Lock()
		e.rec.queue, e.rec.queuedRows = nil, 0 // the environment's own recorder is not part of the fleet
		e.rec.mu.Unlock()
	}
	backends := func() map[uint32]time.Duration {
		return proctest.BackendsCPU(t, ctl, `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2`, db, app)
	}
	rowsWritten := func() (all, rollups int64) {
		if err := ctl.QueryRow(ctx, `SELECT sum(n), sum(n) FILTER (WHERE table_name LIKE '%rollups')
			FROM (SELECT t.table_name, (xpath('/row/n/text()', query_to_xml(format(
				'SELECT count(*) AS n FROM telemetry.%I WHERE server LIKE ''fleet-%%''', t.table_name), false, true, '')))[1]::text::bigint AS n
			FROM telemetry._partitioned_tables() t) x`).Scan(&all, &rollups); err != nil {
			t.Fatal(err)
		}
		return all, rollups
	}

	// Warm-up, not measured: the first snapshot stores every statement and its text.
	collect(collectors.TierSnapshot)
	collect(collectors.TierSample)
	rows0, rollups0 := rowsWritten()
	b0, w0 := backends(), time.Now()
	from := time.Now()
	for range fleetMinutes {
		collect(collectors.TierSample)
		collect(collectors.TierSample)
		collect(collectors.TierSnapshot)
	}
	wall, b1 := time.Since(w0), backends()
	// The window analysed ends before a batch's boundary: a snapshot storing every statement.
	to := time.Now()
	for _, r := range recs {
		r.mu.Lock()
		r.statements.fullFrom = time.Now()
		r.mu.Unlock()
	}
	collect(collectors.TierSnapshot)
	var cpu time.Duration
	for pid, c := range b1 {
		cpu += c - b0[pid]
	}
	rows1, rollups1 := rowsWritten()
	recorded := time.Duration(fleetMinutes) * time.Minute
	perServer := cpu / time.Duration(servers*fleetMinutes) // per minute of recording
	rowsPerSecond := float64(rows1-rows0) / float64(servers) / recorded.Seconds()

	fmt.Printf("\n## Fleet: %d servers recorded into one recorder database (PostgreSQL %d), %d minutes of recording each at the default intervals (a sample every 30 s, a snapshot a minute), written at once in %s\n",
		servers, srv.Major, fleetMinutes, wall.Round(time.Millisecond))
	fmt.Printf("| servers | recorder database CPU per server (a minute of recording) | share of a core per server | servers per core | rows a second per server (rollups among them) | rows a second, all servers |\n|---:|---:|---:|---:|---:|---:|\n")
	fmt.Printf("| %d | %s | %.3f%% | %.0f | %.2f (%.2f) | %.1f |\n", servers, ms(perServer),
		100*perServer.Seconds()/60, 60/perServer.Seconds(), rowsPerSecond,
		float64(rollups1-rollups0)/float64(servers)/recorded.Seconds(), rowsPerSecond*float64(servers))

	fmt.Printf("\n## Analysis for one server (fleet-01) over the fleet's %s, the other %d servers' rows present: median of 5 runs after one (slowest)\n| function | time |\n|---|---:|\n",
		to.Sub(from).Round(time.Second), servers-1)
	for _, call := range []struct{ name, sql string }{
		{"compare", `SELECT * FROM telemetry.compare($1, $2, 'fleet-01')`},
		{"wait_summary", `SELECT * FROM telemetry.wait_summary($1, $2, 'fleet-01')`},
		{"client_wait_summary", `SELECT * FROM telemetry.client_wait_summary($1, $2, 'fleet-01')`},
		{"statement_compare", `SELECT * FROM telemetry.statement_compare($1, $2, 'fleet-01')`},
		{"diagnose", `SELECT * FROM telemetry.diagnose($1, $2, 'fleet-01')`},
	} {
		times := timeRuns(t, ctl, call.sql, from, to)
		fmt.Printf("| %s | %s (%s) |\n", call.name, ms(times[len(times)/2]), ms(times[len(times)-1]))
	}
}
