package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// The PgBatchRunOverdue parameters of the scenario: test-sized, where the shipped rule has
// a factor of 1.5 and a minimum of 15 minutes.
const (
	overdueFactor     = 2
	overdueMinSeconds = 3
)

// overdueRules is the rule file time-compressed, with PgBatchRunOverdue's factor and minimum
// replaced by the scenario's.
func overdueRules(t *testing.T) string {
	t.Helper()
	file := compressRules(t, "../alerts/pgbatch.rules.yml", ruleCompression)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for param, want := range map[string]int{`}) * 1.5`: 1, `}) + 15 * 60`: 2} {
		if n := strings.Count(text, param); n != want {
			t.Fatalf("PgBatchRunOverdue's parameter %q occurs %d times in the rule file, want %d", param, n, want)
		}
	}
	text = strings.NewReplacer(`}) * 1.5`, fmt.Sprintf(`}) * %d`, overdueFactor),
		`}) + 15 * 60`, fmt.Sprintf(`}) + %d`, overdueMinSeconds)).Replace(text)
	out := filepath.Join(t.TempDir(), "pgbatch.rules.yml")
	if err := os.WriteFile(out, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// normalRuns records n runs of the batch in the session conn, each inserting rows and
// lasting about d: the baseline a later run is compared with.
func normalRuns(t testing.TB, conn *pgx.Conn, batch, table string, n int, d time.Duration) {
	t.Helper()
	for range n {
		beginBatch(t, conn, batch)
		pgtest.MustExec(t, conn, fmt.Sprintf(`INSERT INTO %s (payload) SELECT repeat('x', 100) FROM generate_series(1, 1000)`, table))
		pgtest.MustExec(t, conn, `SELECT pg_sleep($1)`, d.Seconds())
		pgtest.MustExec(t, conn, `SELECT telemetry.batch_end($1)`, batch)
	}
}

// TestRunOverdueEndToEnd: a batch has three normal runs of about 2 s, then a run that hangs
// on a lock another session holds. While it still runs: the exporter shows it running with
// its elapsed seconds and usual duration; PgBatchRunOverdue (factor and minimum test-sized)
// fires on every Prometheus build within its `for` after the margin; `diagnose --run current`
// says the run is still going and names the lock; the report page the alert's report_url
// annotation links to (made absolute by --web.external-url) answers and says the same. The
// batch-window panel of the run against its usual returns the run's series.
func TestRunOverdueEndToEnd(t *testing.T) {
	ctx := context.Background()
	builds := prometheusBuilds(t, "prometheus")
	srv := pgtest.Start(t, e2eMajor)
	dsn := srv.NewDatabase(t)
	const batch, table = "overdue_nightly", "public.overdue_items"
	addr := freeAddr(t)
	external := "http://" + addr + "/"
	exporter := startExporterAt(t, addr, dsn, "--web.external-url="+external)
	instance := strings.TrimPrefix(exporter, "http://")
	rules := overdueRules(t)
	var proms []*prometheus
	for _, b := range builds {
		proms = append(proms, startPrometheus(t, b, exporter, rules))
	}

	conn := pgtest.Connect(t, dsn, batch)
	pgtest.MustExec(t, conn, `CREATE TABLE `+table+` (id bigserial PRIMARY KEY, payload text NOT NULL)`)
	normalRuns(t, conn, batch, table, 3, 2*time.Second)

	// Another session holds the table; the run's insert queues behind it.
	blocker := pgtest.Connect(t, dsn, "overdue_blocker")
	pgtest.MustExec(t, blocker, `BEGIN`)
	pgtest.MustExec(t, blocker, `LOCK TABLE `+table+` IN ACCESS EXCLUSIVE MODE`)
	began := beginBatch(t, conn, batch)
	var runID int64
	if err := conn.QueryRow(ctx, `SELECT run_id FROM telemetry.batch_runs WHERE batch = $1 AND status = 'running'`, batch).Scan(&runID); err != nil {
		t.Fatal(err)
	}
	hung := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, `INSERT INTO `+table+` (payload) SELECT 'x' FROM generate_series(1, 10)`)
		hung <- err
	}()
	t.Cleanup(func() {
		_, _ = blocker.Exec(ctx, `ROLLBACK`)
		<-hung
	})

	var p90 float64
	pgtest.Eventually(t, 30*time.Second, "the exporter to show the run with its elapsed time and usual duration", func() bool {
		body, err := httpGet(exporter + "/metrics")
		if err != nil {
			return false
		}
		running := strings.Contains(body, fmt.Sprintf("pgbatch_batch_running{batch=%q} 1\n", batch))
		info := strings.Contains(body, fmt.Sprintf(`pgbatch_batch_run_info{batch=%q,report_url="%sreport/run/%d",run_id="%d"} 1`, batch, external, runID, runID))
		elapsed := strings.Contains(body, fmt.Sprintf("pgbatch_batch_run_elapsed_seconds{batch=%q} ", batch))
		_, err = fmt.Sscanf(after(body, fmt.Sprintf(`pgbatch_batch_usual_duration_seconds{batch=%q,quantile="0.9"} `, batch)), "%g", &p90)
		return running && info && elapsed && err == nil
	})
	threshold := max(p90*overdueFactor, p90+overdueMinSeconds)
	forDuration := 2 * time.Minute / ruleCompression
	t.Logf("usual p90 %.1f s: overdue past %.1f s, firing %s later", p90, threshold, forDuration)

	for _, p := range proms {
		var a alert
		pgtest.Eventually(t, time.Duration(threshold)*time.Second+forDuration+30*time.Second, "PgBatchRunOverdue to fire ("+p.name+")", func() bool {
			var ok bool
			a, ok = p.active(t, "PgBatchRunOverdue", batch)
			return ok && a.State == "firing"
		})
		// Not before the margin and its `for`, and within a few scrapes and evaluations after.
		firedAt := time.Since(began).Seconds()
		earliest, latest := threshold+forDuration.Seconds(), threshold+forDuration.Seconds()+10*scrapeEvery.Seconds()
		t.Logf("%s: firing %.1f s into the run (margin and for: %.1f s): %s", p.name, firedAt, earliest, a.Annotations["summary"])
		if p == proms[0] && (firedAt < earliest-2 || firedAt > latest) {
			t.Errorf("%s: PgBatchRunOverdue fired %.1f s into the run, want between %.1f and %.1f s", p.name, firedAt, earliest, latest)
		}
		if a.Labels["instance"] != instance {
			t.Errorf("%s: alert instance %q, want %q", p.name, a.Labels["instance"], instance)
		}
		if want := "pg-batch-exporter diagnose --batch " + batch + " --run current"; a.Annotations["command"] != want {
			t.Errorf("%s: command annotation %q, want %q", p.name, a.Annotations["command"], want)
		}
		if !strings.Contains(a.Annotations["summary"], " late: running for ") {
			t.Errorf("%s: the summary does not say how late: %q", p.name, a.Annotations["summary"])
		}
		reportURL := a.Annotations["report_url"]
		if want := fmt.Sprintf("%sreport/run/%d", external, runID); reportURL != want {
			t.Fatalf("%s: report_url annotation %q, want %q", p.name, reportURL, want)
		}
		page, err := httpGet(reportURL)
		if err != nil {
			t.Fatalf("%s: the report page of the alert's report_url: %v", p.name, err)
		}
		for _, want := range []string{"still running", "lock_contention", "overdue_items"} {
			if !strings.Contains(page, want) {
				t.Errorf("%s: the report page %s does not say %q", p.name, reportURL, want)
			}
		}
	}

	out, err := exec.Command(exporterBinary(t), "diagnose", "--postgres.dsn="+dsn, "--batch="+batch, "--run=current").CombinedOutput()
	if err != nil {
		t.Fatalf("diagnose --run current: %v\n%s", err, out)
	}
	for _, want := range []string{"STILL RUNNING", "lock_contention", "overdue_blocker", "overdue_items", "So far against the median of 3 previous normal run(s)"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("diagnose --run current does not say %q:\n%s", want, out)
		}
	}
	select {
	case err := <-hung:
		t.Fatalf("the run's insert ended while the lock was held: %v", err)
	default:
	}
	t.Logf("diagnose --run current:\n%s", out)

	// The batch window's panel of the run against its usual shows the run's series.
	vars := grafanaVars{Instance: instance, Range: time.Since(began).Round(time.Second), RateInterval: 4 * scrapeEvery}
	checked := 0
	for _, d := range loadDashboards(t) {
		for _, q := range d.queries() {
			if q.Kind != promDatasource || !strings.Contains(q.Text, "pgbatch_batch_run_elapsed_seconds") && !strings.Contains(q.Text, "pgbatch_batch_usual_duration_seconds") {
				continue
			}
			for _, p := range proms {
				checked++
				res := p.query(t, expandPromQL(q.Text, vars), time.Time{})
				if len(res) == 0 || res[0].Metric["batch"] != batch {
					t.Errorf("%s: %s: %v, want the run of %s", p.name, q, res, batch)
				}
			}
		}
	}
	if checked == 0 {
		t.Error("no dashboard query of the run's elapsed time and usual duration")
	}
}

// after is the text following the first occurrence of prefix in s ("" without one).
func after(s, prefix string) string {
	if _, rest, ok := strings.Cut(s, prefix); ok {
		return rest
	}
	return ""
}
