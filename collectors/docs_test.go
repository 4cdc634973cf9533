package collectors_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pg-batch-exporter/pg-batch-exporter/batch"
	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/exposition"
	"github.com/pg-batch-exporter/pg-batch-exporter/recorder"
	"github.com/pg-batch-exporter/pg-batch-exporter/schema"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

const metricsDoc = "../docs/metrics.md"

// TestMetricsReference: docs/metrics.md is generated from the golden files, which the real
// exporter wrote on each version (go test ./collectors -update rewrites both).
func TestMetricsReference(t *testing.T) {
	type family struct {
		kind, labels, help string
		versions           []string
	}
	families := map[string]*family{}
	// Every supported version, whichever the run tests: the golden files are there for each.
	for _, v := range pgtest.DefaultVersions {
		data, err := os.ReadFile(filepath.Join("testdata", fmt.Sprintf("metrics-pg%d.golden", v)))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			name, rest, _ := strings.Cut(line, " ")
			kindLabels, help, _ := strings.Cut(rest, " ")
			kind, labels, _ := strings.Cut(strings.TrimSuffix(kindLabels, "}"), "{")
			f := families[name]
			if f == nil {
				f = &family{kind: kind, labels: labels, help: help}
				families[name] = f
			}
			f.versions = append(f.versions, fmt.Sprint(v))
		}
	}
	// The batch tracker's and the recorder's families, the same on every version.
	for name, mf := range batchAndRecorderFamilies(t) {
		var labels []string
		for _, lp := range mf.GetMetric()[0].GetLabel() {
			labels = append(labels, lp.GetName())
		}
		sort.Strings(labels)
		families[name] = &family{kind: strings.ToLower(mf.GetType().String()), labels: strings.Join(labels, ","),
			help: mf.GetHelp(), versions: []string{"all"}}
	}
	names := make([]string, 0, len(families))
	for n := range families {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("# Metrics reference\n\n")
	b.WriteString("Generated from what the exporter really exposed on each PostgreSQL version " +
		"(`collectors/testdata/metrics-pg*.golden`; regenerate with `go test ./collectors -update`). " +
		"Replication lag families appear only while a standby or subscriber is connected; batch " +
		"families once a batch is known, recorder families with `--recorder.enabled`.\n\n")
	b.WriteString("| name | type | labels | versions | meaning |\n|---|---|---|---|---|\n")
	for _, n := range names {
		f := families[n]
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", n, f.kind, strings.ReplaceAll(f.labels, ",", ", "),
			strings.Join(f.versions, ", "), strings.ReplaceAll(f.help, "|", `\|`))
	}
	got := b.String()
	if *update {
		if err := os.WriteFile(metricsDoc, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(metricsDoc)
	if err != nil || string(want) != got {
		t.Errorf("%s is out of date (go test ./collectors -run 'Golden|MetricsReference' -update): %v", metricsDoc, err)
	}
}

// batchAndRecorderFamilies gathers the metrics of a batch tracker that has seen one run
// begin, and a recorded run in progress after three normal ones (its run_id and usual
// duration), and of a recorder.
func batchAndRecorderFamilies(t *testing.T) map[string]*dto.MetricFamily {
	rules, err := batch.ParseRules([]string{"nightly=application_name:^etl"})
	if err != nil {
		t.Fatal(err)
	}
	runs := pgtest.Pool(t, pgtest.Start(t, pgtest.Versions()[0]).NewDatabase(t), false, "pg-batch-exporter batch")
	defer runs.Close()
	ctx, cancel := context.WithCancel(context.Background()) // the tracker stops before its pool closes
	defer cancel()
	if err := schema.Migrate(ctx, runs); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := runs.Exec(ctx, `SELECT telemetry.batch_begin('weekly'); SELECT telemetry.batch_end('weekly')`); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := runs.Exec(ctx, `SELECT telemetry.batch_begin('weekly')`); err != nil {
		t.Fatal(err)
	}
	tracker := batch.NewTracker(batch.Options{Rules: rules, QuietPeriod: time.Minute, RunsDB: runs, RefreshEvery: 50 * time.Millisecond,
		ReportURL: func(id int64) string { return fmt.Sprintf("http://localhost:9188/report/run/%d", id) }})
	go tracker.Run(ctx)
	tracker.Observe(time.Now(), time.Second, []collectors.SessionWait{{ApplicationName: "etl_load", State: collectors.SessionActive, WaitEventType: "IO", WaitEvent: "DataFileRead", Count: 1}}, nil)
	pgtest.Eventually(t, 10*time.Second, "the recorded run's usual duration", func() bool {
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(tracker)
		mfs, err := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "pgbatch_batch_usual_duration_seconds" {
				return true
			}
		}
		return err != nil
	})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(tracker)
	reg.MustRegister(recorder.New(recorder.Options{}).Metrics()...)
	pools := exposition.NewConnectionPools()
	pool, err := pgxpool.New(context.Background(), "host=/nonexistent pool_max_conns=2") // connects lazily: never here
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	pools.Add("collect", pool)
	reg.MustRegister(pools)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		if len(mf.GetMetric()) > 0 {
			out[mf.GetName()] = mf
		}
	}
	return out
}
