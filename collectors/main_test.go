package collectors_test

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/internal/postgres"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// testOptions are the exporter's defaults, with a short lock timeout to keep tests quick.
var testOptions = postgres.Options{MaxConns: 2, StatementTimeout: 5 * time.Second, LockTimeout: time.Second, ReadOnly: true}

// newRunner builds a runner with every collector on, connected as the exporter would be, and
// series for the top 10 statements.
func newRunner(t testing.TB, dsn string, track ...string) *collectors.Runner {
	t.Helper()
	return newRunnerWith(t, dsn, nil, collectors.StatementsConfig{Top: 10, TopMinCalls: 1}, track...)
}

// newRunnerWith is newRunner logging to logger (nil: nowhere), with these statement settings.
func newRunnerWith(t testing.TB, dsn string, logger *slog.Logger, statements collectors.StatementsConfig, track ...string) *collectors.Runner {
	t.Helper()
	pool := testPool(t, dsn)
	ccfg := collectors.Config{Statements: statements}
	for _, name := range track {
		n, err := collectors.ParseTableName(name)
		if err != nil {
			t.Fatal(err)
		}
		ccfg.TrackTables = append(ccfg.TrackTables, n)
	}
	return collectors.NewRunner(collectors.RunnerOptions{
		Pool: pool, Logger: logger, Selection: collectors.AllEnabled(), Config: ccfg,
		SampleEvery: time.Minute, SnapshotEvery: time.Minute, WaitSampleEvery: 200 * time.Millisecond,
	})
}

// testPool connects as the exporter would.
func testPool(t testing.TB, dsn string) *pgxpool.Pool {
	t.Helper()
	o := testOptions
	o.DSN = dsn
	pool := pgtest.PoolWith(t, o)
	t.Cleanup(pool.Close)
	return pool
}

// collect runs one collection of a tier and fails the test if any collector failed.
func collect(t testing.TB, r *collectors.Runner, tier collectors.Tier) *collectors.Collection {
	t.Helper()
	c, err := r.Collect(context.Background(), tier)
	if err != nil {
		t.Fatalf("collect %s: %v", tier, err)
	}
	for _, res := range c.Results {
		if res.Err != nil {
			t.Errorf("collector %s failed on %d: %v", res.Collector, c.Server.VersionNum, res.Err)
		}
	}
	return c
}

// gather scrapes the runner's metrics as Prometheus would.
func gather(t testing.TB, r *collectors.Runner, tiers ...collectors.Tier) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(r.Metrics(tiers...))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// value returns the value of the series with the given labels (nil: absent).
func value(mfs map[string]*dto.MetricFamily, name string, labels map[string]string) *float64 {
	mf := mfs[name]
	if mf == nil {
		return nil
	}
next:
	for _, m := range mf.GetMetric() {
		for _, lp := range m.GetLabel() {
			if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
				continue next
			}
		}
		var v float64
		switch {
		case m.Counter != nil:
			v = m.GetCounter().GetValue()
		case m.Gauge != nil:
			v = m.GetGauge().GetValue()
		}
		return &v
	}
	return nil
}

// signature lists each family as "name type{sorted label names} help", one per line.
func signature(mfs map[string]*dto.MetricFamily) string {
	var lines []string
	for name, mf := range mfs {
		labels := map[string]bool{}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = true
			}
		}
		var ls []string
		for l := range labels {
			ls = append(ls, l)
		}
		sort.Strings(ls)
		lines = append(lines, fmt.Sprintf("%s %s{%s} %s", name, strings.ToLower(mf.GetType().String()), strings.Join(ls, ","), mf.GetHelp()))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

// forEachVersion runs f as a parallel subtest per PostgreSQL version, each in a fresh database.
func forEachVersion(t *testing.T, f func(t *testing.T, srv *pgtest.Server, dsn string)) {
	for _, v := range pgtest.Versions() {
		t.Run(fmt.Sprintf("pg%d", v), func(t *testing.T) {
			t.Parallel()
			srv := pgtest.Start(t, v)
			f(t, srv, srv.NewDatabase(t))
		})
	}
}
