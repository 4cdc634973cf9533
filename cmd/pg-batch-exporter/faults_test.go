package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// exporterConnections counts the exporter's sessions on the server (a test session asks).
func exporterConnections(t *testing.T, dsn string) int {
	t.Helper()
	c, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		return -1
	}
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(context.Background(),
		`SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pg-batch-exporter%'`).Scan(&n); err != nil {
		return -1
	}
	return n
}

// TestBinaryServerCrashRestart: the server crashes (pg_ctl stop -m immediate) and stays down
// 20 s while the exporter records into it: pgbatch_up 0, one log line for the outage, /metrics
// answers throughout; once the server is back the exporter reconnects on its own, its
// goroutines and connections come back to their count (never above its pools' bound), and
// the recorder listens again: a batch's boundary triggers its snapshot.
func TestBinaryServerCrashRestart(t *testing.T) {
	bin := buildBinary(t)
	for _, major := range pgtest.Versions() {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
			t.Parallel()
			srv := pgtest.StartWith(t, major, pgtest.Options{Private: true})
			dsn := srv.NewDatabase(t)
			p := startExporterProcess(t, bin, nil, "--postgres.dsn="+dsn, "--recorder.enabled",
				"--tier.sample-interval=500ms", "--tier.snapshot-interval=1h", "--recorder.request-min-interval=100ms")
			up := func() bool { return p.metric("pgbatch_up") == 1 }
			p.waitFor("pgbatch_up 1 and the schema", 30*time.Second, func() bool {
				return up() && p.metric(`pgbatch_recorder_rows_written_total{table="snapshots"}`) >= 1
			})
			time.Sleep(2 * time.Second) // every pool in use once
			goroutines, conns := p.metric("go_goroutines"), exporterConnections(t, dsn)
			limit := 0.0
			for _, pool := range []string{"collect", "recorder", "batch", "report"} {
				limit += p.metric(`pgbatch_exporter_connections_max{pool="` + pool + `"}`)
			}
			t.Logf("before the crash: %v goroutines, %d connections (pools allow %v)", goroutines, conns, limit)
			if conns < 1 || float64(conns) > limit {
				t.Fatalf("%d exporter connections before the crash, pools allow %v", conns, limit)
			}

			srv.Crash(t)
			p.waitFor("pgbatch_up 0", 15*time.Second, func() bool { return p.metric("pgbatch_up") == 0 })
			for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(time.Second) {
				if code, _ := p.get("/metrics"); code != 200 {
					t.Fatalf("/metrics answered %d while the server was down", code)
				}
			}
			srv.Restart(t)
			p.waitFor("pgbatch_up 1 after the restart", 45*time.Second, up)
			// Each loop logs the outage once, again only when its error changes (reset, refused,
			// starting up): a handful of lines, not one per retry.
			for _, line := range []string{"PostgreSQL cannot be reached", "recorder write failed", "recorder lost its LISTEN connection", "cannot read telemetry.batch_runs"} {
				if n := strings.Count(p.logs.String(), line); n > 5 {
					t.Errorf("%q logged %d times in the outage, want a line per distinct error:\n%s", line, n, p.logs.String())
				}
			}
			if !strings.Contains(p.logs.String(), "PostgreSQL cannot be reached") {
				t.Errorf("the outage is not logged:\n%s", p.logs.String())
			}
			if !strings.Contains(p.logs.String(), "PostgreSQL answers again") {
				t.Errorf("no line for the server answering again:\n%s", p.logs.String())
			}

			// The recorder's LISTEN session is new: a boundary's request reaches it.
			c := pgtest.Connect(t, dsn, "batch job")
			snapshots := p.metric(`pgbatch_recorder_rows_written_total{table="snapshots"}`)
			p.waitFor("a batch boundary's snapshot after the restart", 45*time.Second, func() bool {
				if _, err := c.Exec(context.Background(), `SELECT telemetry.request_snapshot()`); err != nil {
					t.Fatal(err)
				}
				time.Sleep(500 * time.Millisecond)
				return p.metric(`pgbatch_recorder_rows_written_total{table="snapshots"}`) > snapshots
			})
			c.Close(context.Background())

			// The pools open connections as work needs them: back within their bound, which a
			// leak of the crashed ones would exceed.
			var n int
			var g float64
			deadline := time.Now().Add(30 * time.Second)
			for {
				n, g = exporterConnections(t, dsn), p.metric("go_goroutines")
				if float64(n) > limit {
					t.Fatalf("%d exporter connections after the restart, pools allow %v", n, limit)
				}
				if g <= goroutines+5 && n >= 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("30 s after recovering: %v goroutines (%v before), %d connections", g, goroutines, n)
				}
				time.Sleep(200 * time.Millisecond)
			}
			t.Logf("after: %v goroutines, %d connections", g, n)
		})
	}
}

// TestBinaryMaxConnectionsExhausted: with every connection slot of the server taken, the
// exporter says so in one line per distinct error (not one per retry of each schedule), serves pgbatch_up 0, and once
// slots free up connects with no more connections than --postgres.max-connections.
func TestBinaryMaxConnectionsExhausted(t *testing.T) {
	bin := buildBinary(t)
	major := pgtest.Versions()[len(pgtest.Versions())-1]
	srv := pgtest.StartWith(t, major, pgtest.Options{Private: true, Settings: map[string]string{"max_connections": "12"}})
	dsn := srv.NewDatabase(t)
	var hogs []*pgx.Conn
	for {
		c, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			if !strings.Contains(err.Error(), "too many clients") && !strings.Contains(err.Error(), "remaining connection slots") {
				t.Fatal(err)
			}
			break
		}
		hogs = append(hogs, c)
	}
	t.Logf("%d connections fill the server", len(hogs))
	p := startExporterProcess(t, bin, nil, "--postgres.dsn="+dsn, "--tier.sample-interval=200ms",
		"--tier.snapshot-interval=300ms", "--collector.waits.interval=100ms", "--postgres.max-connections=2")
	p.waitFor("pgbatch_up 0 and the failure logged", 15*time.Second, func() bool {
		return p.metric("pgbatch_up") == 0 && strings.Contains(p.logs.String(), "PostgreSQL cannot be reached")
	})
	time.Sleep(5 * time.Second) // retries of three schedules
	logs := p.logs.String()
	// Three schedules retrying for 5 s were a dozen lines; now a line per distinct error (a
	// loaded machine may add a connect timeout to "too many clients").
	if n := strings.Count(logs, "collection failed"); n < 1 || n > 2 || !strings.Contains(logs, "too many clients") {
		t.Errorf("%d failure lines in 5 s of retries, want one (two at most) saying too many clients:\n%s", n, logs)
	}
	for _, c := range hogs[:4] {
		c.Close(context.Background())
	}
	p.waitFor("pgbatch_up 1 once slots are free", 45*time.Second, func() bool { return p.metric("pgbatch_up") == 1 })
	for range 10 {
		if n := exporterConnections(t, dsn); n > 2 {
			t.Fatalf("%d exporter connections, --postgres.max-connections=2", n)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := p.metric(`pgbatch_exporter_connections_max{pool="collect"}`); got != 2 {
		t.Errorf(`pgbatch_exporter_connections_max{pool="collect"} = %v, want 2`, got)
	}
	for _, c := range hogs[4:] {
		c.Close(context.Background())
	}
}

// TestBinarySIGKILLMidWrite: the exporter killed (SIGKILL) six times while it records, at
// random moments of its writes, and started again each time: every stored collection is
// whole (each snapshot has its pg_stat_statements row and its tracked table's row, each sample
// its sessions' rows) and none is stored twice.
func TestBinarySIGKILLMidWrite(t *testing.T) {
	bin := buildBinary(t)
	major := pgtest.Versions()[len(pgtest.Versions())-1]
	dsn := pgtest.Start(t, major).NewDatabase(t)
	c := pgtest.Connect(t, dsn, "")
	pgtest.MustExec(t, c, `CREATE EXTENSION pg_stat_statements; CREATE TABLE public.orders (id int)`)
	for i := range 6 {
		// Statements at every snapshot: each snapshot then has a statements row to check.
		p := startExporterProcess(t, bin, nil, "--postgres.dsn="+dsn, "--recorder.enabled", "--collector.tables.track=public.orders",
			"--tier.sample-interval=100ms", "--tier.snapshot-interval=100ms", "--collector.waits.interval=100ms",
			"--recorder.statements-interval=0")
		p.waitFor("collections written", 30*time.Second, func() bool {
			return p.metric(`pgbatch_recorder_rows_written_total{table="snapshots"}`) >= 2
		})
		time.Sleep(time.Duration(i*37%100) * time.Millisecond)
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-p.exited
	}
	var snapshots, samples, partialSnapshots, partialSamples, twice int
	if err := c.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM telemetry.snapshots),
		(SELECT count(*) FROM telemetry.samples),
		(SELECT count(*) FROM telemetry.snapshots s
		 WHERE (SELECT count(*) FROM telemetry.statement_info_snapshots i WHERE i.snapshot_id = s.id AND i.captured_at = s.captured_at) <> 1
		    OR (SELECT count(*) FROM telemetry.table_snapshots x WHERE x.snapshot_id = s.id AND x.captured_at = s.captured_at) <> 1),
		(SELECT count(*) FROM telemetry.samples s
		 WHERE NOT EXISTS (SELECT FROM telemetry.wait_samples w WHERE w.sample_id = s.id AND w.captured_at = s.captured_at)),
		(SELECT count(*) - count(DISTINCT (server, captured_at)) FROM telemetry.snapshots)
		  + (SELECT count(*) - count(DISTINCT (server, captured_at)) FROM telemetry.samples)`).
		Scan(&snapshots, &samples, &partialSnapshots, &partialSamples, &twice); err != nil {
		t.Fatal(err)
	}
	t.Logf("after six kills: %d snapshots, %d samples", snapshots, samples)
	if snapshots < 12 || samples < 6 || partialSnapshots != 0 || partialSamples != 0 || twice != 0 {
		t.Errorf("%d snapshots (%d partial), %d samples (%d partial), %d stored twice: want at least 12 and 6, none partial or twice",
			snapshots, partialSnapshots, samples, partialSamples, twice)
	}
}
