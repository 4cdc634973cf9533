package recorder

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
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

// envCount is the whole number of what the environment variable name says (at least 1), def
// where it is unset.
func envCount(t *testing.T, name string, def int, what string) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: a number of %s, at least 1", name, v, what)
	}
	return n
}

// TestMeasureFleet is issue 22's fleet row: PGBATCH_FLEET_SERVERS servers (10 by default)
// recorded into one recorder database. One runner reads one monitored database (10 tracked
// tables, 1000 statements, 20 active sessions); each server's recorder (a pool of its own,
// naming its rows as a server of its own) writes every collection, all of them at once, at
// the default intervals' proportions: per minute of recording two samples (each after a wait
// sampler reading) and a snapshot, with statements stored hourly and at the first snapshot.
// Measured: the recorder database's CPU (its backends serving the recorders' pools,
// /proc/<pid>/stat) and the rows written, per server and minute of recording. Then, as the
// 20 minutes are written in seconds and say nothing of the analysis, each server is given
// PGBATCH_FLEET_DAYS days (1 by default) of TestMeasureStorageAndTimings' data before its
// recording (measureData, rollups summed in one pass), and the analysis functions are timed
// for one server (fleet-01) over its whole generated days: once with its own days only, once
// with the other servers' days present too.
func TestMeasureFleet(t *testing.T) {
	if os.Getenv("PGBATCH_MEASURE_RECORDER") == "" {
		t.Skip("a measurement, not a test: make bench-recorder (PGBATCH_MEASURE_RECORDER=1)")
	}
	servers := envCount(t, "PGBATCH_FLEET_SERVERS", 10, "servers")
	days := envCount(t, "PGBATCH_FLEET_DAYS", 1, "days")
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

	// The generated days end a minute before the first collection recorded: the rollups that
	// the recorders keep from their first sample's hour on then cover them too once rebuilt.
	genEnd := time.Now().UTC().Truncate(time.Minute).Add(-time.Minute)
	genStart := genEnd.Add(-time.Duration(days) * 24 * time.Hour)

	// Warm-up, not measured: the first snapshot stores every statement and its text.
	collect(collectors.TierSnapshot)
	collect(collectors.TierSample)
	rows0, rollups0 := rowsWritten()
	b0, w0 := backends(), time.Now()
	for range fleetMinutes {
		collect(collectors.TierSample)
		collect(collectors.TierSample)
		collect(collectors.TierSnapshot)
	}
	wall, b1 := time.Since(w0), backends()
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

	// Each server's days, generated one server after another, their rollups summed, the
	// tables vacuumed and analyzed, their runs settled; fleet-01's analysis timed with its own days only (and the
	// others' 20 minutes recorded), then with every server's.
	var generated, rebuilt time.Duration
	generate := func(rs []*Recorder) {
		began := time.Now()
		for _, r := range rs {
			generateMeasureData(t, ctl, r.o.ServerName, days, genStart)
		}
		generated += time.Since(began)
		began = time.Now()
		for _, r := range rs {
			pgtest.MustExec(t, ctl, `SELECT telemetry.rollup_rebuild($1, $2, $3)`, r.o.ServerName, genStart, genEnd)
		}
		rebuilt += time.Since(began)
		pgtest.MustExec(t, ctl, measureVacuum)
		for _, r := range rs {
			settleGenerated(t, ctl, r.o.ServerName)
		}
	}
	timings := make([][]string, len(measureCalls))
	analyse := func() {
		for i, call := range measureCalls {
			if call.view && days > measureViewDays {
				continue
			}
			times := timeRuns(t, ctl, call.sql, genStart, genEnd, recs[0].o.ServerName)
			timings[i] = append(timings[i], fmt.Sprintf("%s (%s)", ms(times[len(times)/2]), ms(times[len(times)-1])))
		}
	}
	columns := []string{"fleet-01's days only"}
	generate(recs[:1])
	analyse()
	if servers > 1 {
		columns = append(columns, fmt.Sprintf("the other %d servers' days too", servers-1))
		generate(recs[1:])
		analyse()
	}
	fmt.Printf("\nGenerated %d day(s) of data for each of the %d servers in %s, their rollups summed in %s\n",
		days, servers, generated.Round(time.Second), rebuilt.Round(time.Second))

	fmt.Printf("\n## Fleet analysis: %d servers with %d generated day(s) each at default settings (PostgreSQL %d), one server's (fleet-01) analysis over its %d day(s): median of 5 runs after one (slowest)\n",
		servers, days, srv.Major, days)
	fmt.Printf("| function | %s |\n|---|%s\n", strings.Join(columns, " | "), strings.Repeat("---:|", len(columns)))
	for i, call := range measureCalls {
		if timings[i] != nil {
			fmt.Printf("| %s | %s |\n", call.name, strings.Join(timings[i], " | "))
		}
	}
}
