package exposition_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/exposition"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// collectedExporter is an exporter tracking n tables whose runner collected both tiers and
// sampled waits once, and does nothing more: its metrics stay put between scrapes.
func collectedExporter(t testing.TB, tables int) (*collectors.Runner, http.Handler) {
	t.Helper()
	srv := pgtest.Start(t, pgtest.Versions()[len(pgtest.Versions())-1])
	dsn := srv.NewDatabase(t)
	track := pgtest.CreateTables(t, pgtest.Connect(t, dsn, ""), tables)
	ts, r, _ := startExporterTracking(t, dsn, time.Hour, track...)
	ts.Close()
	if err := r.Waits().Sample(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, tier := range []collectors.Tier{collectors.TierSample, collectors.TierSnapshot} {
		if _, err := r.Collect(context.Background(), tier); err != nil {
			t.Fatal(err)
		}
	}
	h, err := exposition.Handler(r, exposition.Options{MetricsPath: "/metrics", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return r, h
}

// canonical writes a family as sorted lines "name{labels} type value", the _total of
// counters dropped (OpenMetrics names the family without it).
func canonical(mf *dto.MetricFamily) []string {
	name := strings.TrimSuffix(mf.GetName(), "_total")
	var out []string
	for _, m := range mf.GetMetric() {
		var ls []string
		for _, lp := range m.GetLabel() {
			ls = append(ls, lp.GetName()+"="+lp.GetValue())
		}
		sort.Strings(ls)
		v := m.GetGauge().GetValue() + m.GetCounter().GetValue() + m.GetUntyped().GetValue()
		out = append(out, fmt.Sprintf("%s{%s} %s %g", name, strings.Join(ls, ","), mf.GetType(), v))
	}
	sort.Strings(out)
	return out
}

// TestServedExpositionEquivalent: every view, in every format and with or without gzip,
// parses to the families and values the runner's metrics give through a registry.
func TestServedExpositionEquivalent(t *testing.T) {
	r, h := collectedExporter(t, 20)
	views := map[string][]collectors.Tier{
		"":         {collectors.TierSample, collectors.TierSnapshot},
		"sample":   {collectors.TierSample},
		"snapshot": {collectors.TierSnapshot},
	}
	formats := []expfmt.Format{expfmt.FmtOpenMetrics_1_0_0, expfmt.FmtOpenMetrics_0_0_1, expfmt.FmtProtoDelim, expfmt.FmtText}
	for tier, tiers := range views {
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(r.Metrics(tiers...), versioncollector.NewCollector(exposition.Program))
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		want := map[string][]string{}
		for _, mf := range mfs {
			want[strings.TrimSuffix(mf.GetName(), "_total")] = canonical(mf)
		}
		if len(want["pgbatch_table_size_bytes"]) != 20 && tier != "sample" {
			t.Fatalf("view %q: the reference has %d table sizes, want 20", tier, len(want["pgbatch_table_size_bytes"]))
		}
		for _, f := range formats {
			for _, gz := range []bool{false, true} {
				name := fmt.Sprintf("tier=%s/%s/gzip=%v", tier, strings.Split(string(f), ";")[0:2], gz)
				t.Run(name, func(t *testing.T) {
					got := served(t, h, "/metrics?tier="+tier, f, gz, tier == "")
					for name, lines := range want {
						if g := got[name]; strings.Join(g, "\n") != strings.Join(lines, "\n") {
							t.Errorf("%s: served\n%s\nwant\n%s", name, strings.Join(g, "\n"), strings.Join(lines, "\n"))
						}
					}
					for name := range got {
						if want[name] == nil {
							t.Errorf("%s served, not in the registry's", name)
						}
					}
				})
			}
		}
	}
}

// served scrapes path in a format and decodes the families, failing on a family served twice.
// With runtime, the Go and process families must be there and are left out: their values
// move, and OpenMetrics cannot tell go_memstats_alloc_bytes from its _total.
func served(t *testing.T, h http.Handler, path string, f expfmt.Format, gz, runtime bool) map[string][]string {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	req.Header.Set("Accept", string(f))
	req.Header.Set("Accept-Encoding", map[bool]string{true: "gzip", false: "identity"}[gz])
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	ct := expfmt.ResponseFormat(rec.Header())
	if ct.FormatType() != f.FormatType() || !strings.HasPrefix(rec.Header().Get("Content-Type"), strings.Split(string(f), ";")[0]) {
		t.Fatalf("Content-Type %q for Accept %q", rec.Header().Get("Content-Type"), f)
	}
	body := rec.Body.Bytes()
	if got := rec.Header().Get("Content-Encoding") == "gzip"; got != gz {
		t.Fatalf("gzip %v, want %v", got, gz)
	}
	if gz {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		zr.Multistream(false) // one member, so any gzip reader sees the whole body
		if body, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
		if err := zr.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if f.FormatType() == expfmt.TypeOpenMetrics && (!bytes.HasSuffix(body, []byte("\n# EOF\n")) || bytes.Count(body, []byte("# EOF")) != 1) {
		t.Fatalf("OpenMetrics exposition must end in one # EOF")
	}
	if runtime {
		var kept []string
		for _, line := range strings.SplitAfter(string(body), "\n") {
			fields := strings.Fields(strings.TrimPrefix(strings.TrimPrefix(line, "# HELP "), "# TYPE "))
			if len(fields) > 0 && (strings.HasPrefix(fields[0], "go_") || strings.HasPrefix(fields[0], "process_")) {
				continue
			}
			kept = append(kept, line)
		}
		if f.FormatType() != expfmt.TypeProtoDelim {
			for _, series := range []string{"\ngo_goroutines ", "\nprocess_resident_memory_bytes "} {
				if !strings.Contains(string(body), series) {
					t.Errorf("%s missing", series)
				}
			}
			body = []byte(strings.Join(kept, ""))
		}
	}
	dec := expfmt.NewDecoder(bytes.NewReader(body), ct)
	out := map[string][]string{}
	runtimeSeen := map[string]bool{}
	defer func() {
		if f.FormatType() == expfmt.TypeProtoDelim && runtime && (!runtimeSeen["go_goroutines"] || !runtimeSeen["process_resident_memory_bytes"]) {
			t.Errorf("runtime families missing")
		}
	}()
	for {
		var mf dto.MetricFamily
		err := dec.Decode(&mf)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		name := strings.TrimSuffix(mf.GetName(), "_total")
		if runtime && (strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_")) {
			runtimeSeen[name] = true
			continue
		}
		if out[name] != nil {
			t.Fatalf("family %s served twice", name)
		}
		out[name] = canonical(&mf)
	}
	return out
}

// TestScrapeCostIndependentOfTables: a scrape serves the tier data as encoded at collection,
// so its allocations do not grow with the series (2,600 series here; building them took
// about 15 allocations each).
func TestScrapeCostIndependentOfTables(t *testing.T) {
	_, h := collectedExporter(t, 200)
	for _, path := range []string{"/metrics?tier=snapshot", "/metrics"} {
		for _, gz := range []string{"identity", "gzip"} {
			req := httptest.NewRequest("GET", path, nil)
			req.Header.Set("Accept-Encoding", gz)
			allocs := testing.AllocsPerRun(20, func() { h.ServeHTTP(httptest.NewRecorder(), req) })
			if allocs > 2000 {
				t.Errorf("%s %s: %.0f allocations per scrape, want the live part's only (< 2000)", path, gz, allocs)
			}
		}
	}
}
