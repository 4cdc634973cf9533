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

// e2eMajor is the PostgreSQL version of the end-to-end test: the newest whose statistics
// views are all in the batch window (pg_stat_io, pg_stat_checkpointer).
const e2eMajor = 17

// ruleCompression shrinks the alerts' windows and `for` durations for a set-up that
// scrapes every second: the 2m batch window becomes 10s.
const ruleCompression = 12

// TestBatchWindowEndToEnd runs real Prometheus servers (every build of prometheusBuilds,
// side by side) scraping the exporter binary (both tiers, every second) against PostgreSQL
// 17, with alerts/pgbatch.rules.yml (time-compressed). A batch marked with
// telemetry.batch_begin gets a CHECKPOINT and a temp-file spill: the checkpoint and
// temp-spill alerts must reach firing in /api/v1/alerts, counting one checkpoint. After the
// batch a CHECKPOINT must not fire the batch alert. Then every query of the batch-window
// dashboard must return data for the batch's window, and the SQL panels must run on the
// recorded data.
func TestBatchWindowEndToEnd(t *testing.T) {
	ctx := context.Background()
	builds := prometheusBuilds(t, "prometheus")
	srv := pgtest.StartWith(t, e2eMajor, logicalServer)
	dsn := srv.NewDatabase(t)
	replicaSetup(t, srv, dsn)
	exporter := startExporter(t, dsn, "--collector.tables.track=public.batch_items")
	instance := strings.TrimPrefix(exporter, "http://")
	rules := compressRules(t, "../alerts/pgbatch.rules.yml", ruleCompression)
	var proms []*prometheus
	for _, b := range builds {
		proms = append(proms, startPrometheus(t, b, exporter, rules))
	}
	// every waits until cond holds on every server.
	every := func(d time.Duration, what string, cond func(p *prometheus) bool) {
		t.Helper()
		for _, p := range proms {
			pgtest.Eventually(t, d, what+" ("+p.name+")", func() bool { return cond(p) })
		}
	}
	every(30*time.Second, "Prometheus to scrape both tiers", func(p *prometheus) bool {
		return len(p.query(t, `pgbatch_up == 1`, time.Time{})) == 2
	})
	window := promDuration(2 * time.Minute / ruleCompression)

	const batch = "e2e_nightly"
	conn := pgtest.Connect(t, dsn, "")
	// Normal runs before: the batch's usual duration, which the batch window draws the run against.
	normalRuns(t, conn, batch, "public.batch_items", 3, time.Second)
	begin := beginBatch(t, conn, batch)
	stopWork := runBatchWork(t, dsn)

	// The alerts need the batch to have run for their whole window before the event.
	every(60*time.Second, "Prometheus to see the batch running for a whole alert window", func(p *prometheus) bool {
		return len(p.query(t, fmt.Sprintf(`min_over_time(pgbatch_batch_running{batch=%q}[%s]) == 1 and pgbatch_batch_running{batch=%q} offset %s == 1`,
			batch, window, batch, window), time.Time{})) > 0
	})
	events := time.Now()
	pgtest.MustExec(t, conn, `CHECKPOINT`)
	spill(t, conn)
	for _, p := range proms {
		fired := map[string]time.Duration{}
		pgtest.Eventually(t, 60*time.Second, "the checkpoint and temp-spill alerts to fire ("+p.name+")", func() bool {
			for _, name := range []string{"PgBatchCheckpointDuringBatch", "PgBatchTempSpillDuringBatch"} {
				if _, done := fired[name]; done {
					continue
				}
				if a, ok := p.active(t, name, batch); ok && a.State == "firing" {
					fired[name] = time.Since(events)
					if name == "PgBatchCheckpointDuringBatch" && !strings.HasPrefix(a.Annotations["description"], "1 checkpoint(s) completed") {
						t.Errorf("%s: one CHECKPOINT, but %s says: %s", p.name, name, a.Annotations["description"])
					}
				}
			}
			return len(fired) == 2
		})
		for name, d := range fired {
			t.Logf("%s: %s firing %.1fs after the event", p.name, name, d.Seconds())
		}
	}

	stopWork()
	var run int64
	if err := conn.QueryRow(ctx, `SELECT telemetry.batch_end($1)`, batch).Scan(&run); err != nil {
		t.Fatal(err)
	}
	var end time.Time
	if err := conn.QueryRow(ctx, `SELECT ended_at FROM telemetry.batch_runs WHERE run_id = $1`, run).Scan(&end); err != nil {
		t.Fatal(err)
	}

	// A checkpoint after the batch: Prometheus sees it, and the batch alert stays silent.
	every(60*time.Second, "the batch alerts to resolve after the batch", func(p *prometheus) bool {
		_, active := p.active(t, "PgBatchCheckpointDuringBatch", batch)
		return !active && len(p.query(t, fmt.Sprintf(`pgbatch_batch_running{batch=%q} == 1`, batch), time.Time{})) == 0
	})
	requested := func(p *prometheus) float64 {
		r := p.query(t, `max(pgbatch_checkpoints_requested_total)`, time.Time{})
		if len(r) == 0 {
			t.Fatalf("no pgbatch_checkpoints_requested_total in %s", p.name)
		}
		return r[0].float()
	}
	before := map[*prometheus]float64{}
	for _, p := range proms {
		before[p] = requested(p)
	}
	pgtest.MustExec(t, conn, `CHECKPOINT`)
	every(30*time.Second, "Prometheus to see the checkpoint after the batch", func(p *prometheus) bool { return requested(p) > before[p] })
	for quiet := time.Now().Add(2*time.Minute/ruleCompression + 3*scrapeEvery); time.Now().Before(quiet); time.Sleep(250 * time.Millisecond) {
		for _, p := range proms {
			for _, a := range p.alerts(t) {
				if a.Labels["alertname"] == "PgBatchCheckpointDuringBatch" {
					t.Fatalf("%s: a checkpoint outside any batch made %s %s", p.name, a.Labels["alertname"], a.State)
				}
			}
		}
	}

	vars := grafanaVars{
		Instance:     instance,
		Range:        end.Sub(begin).Round(time.Second) + time.Second,
		RateInterval: 4 * scrapeEvery,
		From:         begin,
		To:           end,
		Run:          fmt.Sprint(run),
	}
	for _, p := range proms {
		checkBatchWindowPanels(t, p, vars)
	}
	// Runs out of range, stored by hand (issue 17), overlapping the window: the panels leave them out.
	if _, err := conn.Exec(context.Background(), `INSERT INTO telemetry.batch_runs (batch, started_at, ended_at, status, source)
		VALUES ('intruder', '-infinity', now(), 'abandoned', 'marker'), ('intruder', now() - interval '1 day', '12000-01-01', 'failed', 'marker')`); err != nil {
		t.Fatal(err)
	}
	checkSQLPanels(t, conn, vars)
}

// runBatchWork keeps a batch busy until the returned function is called: rows inserted
// into the tracked, replicated table, in short transactions that also wait a little.
func runBatchWork(t testing.TB, dsn string) (stop func()) {
	t.Helper()
	conn := pgtest.Connect(t, dsn, "")
	pgtest.MustExec(t, conn, `SET application_name = 'e2e_nightly'`)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			_, err := conn.Exec(ctx, `INSERT INTO public.batch_items (payload) SELECT repeat('x', 200) FROM generate_series(1, 2000);
				SELECT pg_sleep(0.1)`)
			if err != nil && ctx.Err() == nil {
				t.Errorf("batch work: %v", err)
				return
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// spill runs a sort that cannot fit in work_mem, so it writes temporary files.
func spill(t testing.TB, conn *pgx.Conn) {
	t.Helper()
	pgtest.MustExec(t, conn, `SET work_mem = '64kB'`)
	pgtest.MustExec(t, conn, `SELECT count(*) FROM (SELECT g FROM generate_series(1, 200000) g ORDER BY g DESC) s`)
	pgtest.MustExec(t, conn, `RESET work_mem`)
}

// checkBatchWindowPanels: every PromQL query of the batch-window dashboard (panels and
// annotations) returns data for the batch's window, queried as Grafana would: instant
// queries at the window's end, the others over the window. The compare() stat panels that
// the batch's events decide must also show them.
func checkBatchWindowPanels(t *testing.T, prom *prometheus, vars grafanaVars) {
	t.Helper()
	var n int
	for _, d := range loadDashboards(t) {
		if d.File != "batch-window.json" {
			continue
		}
		for _, q := range d.queries() {
			if q.Kind != promDatasource || strings.HasPrefix(q.Where, "variable ") {
				continue
			}
			n++
			expr := expandPromQL(q.Text, vars)
			var res []sample
			if q.Instant {
				res = prom.query(t, expr, vars.To)
			} else {
				res = prom.queryRange(t, expr, vars.From, vars.To)
			}
			if len(res) == 0 {
				t.Errorf("%s: no data for the batch window: %s\n(expanded: %s)", prom.name, q, expr)
			}
			if want, ok := expectInBatch[q.Where]; ok && q.Instant {
				if len(res) == 0 || res[0].float() < want {
					t.Errorf("%s: %s = %v over the batch window, want at least %v", prom.name, q.Where, res, want)
				}
			}
		}
	}
	t.Logf("%s: %d batch-window PromQL queries returned data for the window", prom.name, n)
}

// expectInBatch are the batch-window stat panels the test's events set, with their minimum.
var expectInBatch = map[string]float64{
	"Checkpoint occurred":   1,
	"Requested checkpoints": 1,
	"Temp files":            1,
	"Temp bytes":            1,
	"WAL generated":         1,
}

// checkSQLPanels: every SQL query of the dashboards (panels, annotations, variables) runs
// on the recorder's schema for the batch's window; the recorder dashboard's compare,
// diagnose and run list return rows.
func checkSQLPanels(t *testing.T, conn *pgx.Conn, vars grafanaVars) {
	t.Helper()
	ctx := context.Background()
	if err := conn.QueryRow(ctx, `SELECT server FROM telemetry.servers`).Scan(&vars.Server); err != nil {
		t.Fatal(err)
	}
	mustReturnRows := map[string]bool{"telemetry.compare": true, "Diagnosis: telemetry.diagnose": true, "Batch runs": true, "Runs in the range": true, "variable run": true,
		// The run, longer than its normal runs before it, is slow.
		"Run durations": true, "Slow runs": true, "annotation Run starts": true, "annotation Run ends": true}
	var n int
	for _, d := range loadDashboards(t) {
		for _, q := range d.queries() {
			if q.Kind != pgDatasource {
				continue
			}
			n++
			rows, err := conn.Query(ctx, expandSQL(q.Text, vars))
			if err != nil {
				t.Errorf("%s: %v", q, err)
				continue
			}
			var count int
			for rows.Next() {
				count++
			}
			if err := rows.Err(); err != nil {
				t.Errorf("%s: %v", q, err)
			}
			if mustReturnRows[q.Where] && count == 0 {
				t.Errorf("%s returned no rows for the batch window", q)
			}
		}
	}
	t.Logf("%d SQL queries ran on the recorder's schema", n)
}
