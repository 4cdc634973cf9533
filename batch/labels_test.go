package batch

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// exposition is the tracker's metrics as /metrics serves them.
func exposition(t *testing.T, c prometheus.Collector) string {
	t.Helper()
	var b bytes.Buffer
	for _, mf := range gather(t, c) {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

// batchLabels are the batch label values of the tracker's pgbatch_batch_runs_total.
func batchLabels(t *testing.T, c prometheus.Collector) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, line := range strings.Split(exposition(t, c), "\n") {
		if rest, ok := strings.CutPrefix(line, `pgbatch_batch_runs_total{batch="`); ok {
			out[rest[:strings.IndexByte(rest, '"')]] = true
		}
	}
	return out
}

// Any role that may call batch_begin names batches, each a label value of every batch metric
// (issue 17 finding 5: 20,000 names took /metrics from 72 KB to 18 MB, and their series
// stayed after the rows went). At the default --batch.max-batches the series are bounded,
// the batches left out counted and logged once; a batch's series go when its rows do, and a
// rule's batch keeps its series whatever is recorded.
func TestBatchLabelsBounded(t *testing.T) {
	_, pool := db(t, 17, "pg-batch-exporter batch")
	ctx := context.Background()
	var logs bytes.Buffer
	rules, err := ParseRules([]string{"nightly=application_name:^nightly$"})
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTracker(Options{Rules: rules, QuietPeriod: time.Second, RunsDB: pool, RefreshEvery: time.Hour,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	exec := func(sql string) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`SELECT telemetry.batch_begin('weekly'), telemetry.batch_end('weekly')`)
	if err := tr.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	small := len(exposition(t, tr))
	exec(`INSERT INTO telemetry.batch_runs (batch, started_at, ended_at, status, source)
		SELECT 'junk-' || i, now() - interval '1 minute', now(), 'succeeded', 'marker' FROM generate_series(1, 20000) i`)
	start := time.Now()
	for range 2 {
		if err := tr.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
	}
	refresh := time.Since(start) / 2
	labels := batchLabels(t, tr)
	if len(labels) != DefaultMaxBatches+1 || !labels["nightly"] || !labels["weekly"] {
		t.Errorf("%d batches have series (nightly %v, weekly %v), want the rule's and %d recorded ones, weekly among them",
			len(labels), labels["nightly"], labels["weekly"], DefaultMaxBatches)
	}
	if v := metric(t, tr, "pgbatch_batch_names_dropped"); !is(v, 20000-DefaultMaxBatches+1) {
		t.Errorf("pgbatch_batch_names_dropped = %v, want %d", v, 20000-DefaultMaxBatches+1)
	}
	if n := strings.Count(logs.String(), "max-batches"); n != 1 {
		t.Errorf("the limit logged %d times, want once:\n%s", n, logs.String())
	}
	bounded := len(exposition(t, tr))
	t.Logf("/metrics' batch series: %d bytes with one recorded batch, %d with 20,000 (%d shown); a read of batch_runs %v",
		small, bounded, DefaultMaxBatches, refresh)

	// The rows go: their series go, and a batch recorded since gets its series.
	exec(`DELETE FROM telemetry.batch_runs WHERE batch LIKE 'junk-%'`)
	exec(`SELECT telemetry.batch_begin('monthly')`)
	if err := tr.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if labels := batchLabels(t, tr); len(labels) != 3 || !labels["nightly"] || !labels["weekly"] || !labels["monthly"] {
		t.Errorf("after the rows went, series of %v, want nightly, weekly and monthly", labels)
	}
	if v := metric(t, tr, "pgbatch_batch_names_dropped"); !is(v, 0) {
		t.Errorf("pgbatch_batch_names_dropped = %v after the rows went, want 0", v)
	}
	exec(`SELECT telemetry.batch_end('monthly')`)
	exec(`DELETE FROM telemetry.batch_runs WHERE batch = 'weekly'`)
	if err := tr.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if labels := batchLabels(t, tr); labels["weekly"] || !labels["monthly"] {
		t.Errorf("after weekly's rows went, series of %v", labels)
	}
}

// A batch role names its batch after another batch's application_name (red team of issue 17
// finding 5): the session that began the other's run stays that run's, its seconds are not
// booked to the namesake.
func TestBeginningSessionStaysItsRuns(t *testing.T) {
	dsn, pool := db(t, 17, "pg-batch-exporter batch")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := NewTracker(Options{QuietPeriod: time.Second, RunsDB: pool, RefreshEvery: 100 * time.Millisecond})
	follow(ctx, tr, pool)
	squatter := pgtest.Connect(t, dsn, "psql")
	pgtest.MustExec(t, squatter, `SELECT telemetry.batch_begin('loader'), telemetry.batch_end('loader')`)
	eventually(t, "the namesake batch's series", func() bool { return metric(t, tr, "pgbatch_batch_runs_total", "loader") != nil })
	marker := pgtest.Connect(t, dsn, "loader")
	pgtest.MustExec(t, marker, `SELECT telemetry.batch_begin('monthly')`)
	eventually(t, "the marker run", func() bool { return is(metric(t, tr, "pgbatch_batch_running", "monthly"), 1) })
	pgtest.MustExec(t, marker, `SELECT pg_sleep(0.5)`)
	own := metric(t, tr, "pgbatch_batch_wait_event_seconds_total", "monthly", "PgSleep", "Timeout")
	stolen := metric(t, tr, "pgbatch_batch_wait_event_seconds_total", "loader", "PgSleep", "Timeout")
	if own == nil || *own < 0.3 || stolen != nil {
		t.Errorf("the beginning session's sleep: %s session-seconds to its run, %s to the batch named after its application_name; want about 0.5 and none",
			show(own), show(stolen))
	}
	pgtest.MustExec(t, marker, `SELECT telemetry.batch_end('monthly')`)
}

// show is a metric's value, or "none".
func show(v *float64) string {
	if v == nil {
		return "none"
	}
	return fmt.Sprintf("%.2f", *v)
}
