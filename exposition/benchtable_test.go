package exposition_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/proctest"
)

// TestBenchTable prints the `make bench` table, one section per row of issue 12 it measures:
// collection and scrape cost at several numbers of tracked tables with peak RSS, the
// database time the exporter costs the server (benchDatabaseTime, issue 22), the wait
// sampler's cost (benchWaitSamplerCost), its fidelity against a scripted workload
// (benchWaitFidelity), the statements collector's cost (benchStatements) and pgbench's
// throughput with and without the exporter (benchWorkloadOverhead).
// PGBATCH_BENCH=full (make bench) measures at full size; otherwise (make test) a short run
// of each keeps it from rotting.
func TestBenchTable(t *testing.T) {
	full := os.Getenv("PGBATCH_BENCH") == "full"
	var sections []benchSection
	for _, bench := range []struct {
		name string
		run  func(*testing.T, bool) benchSection
	}{
		{"collection and scrape", benchCollectionAndScrape},
		{"database time", benchDatabaseTime},
		{"wait sampler cost", benchWaitSamplerCost},
		{"idle sessions read", benchIdleSessionsCost},
		{"wait fidelity", benchWaitFidelity},
		{"statements", benchStatements},
		{"workload overhead", benchWorkloadOverhead},
	} {
		t.Run(bench.name, func(t *testing.T) { sections = append(sections, bench.run(t, full)) })
	}
	w := bufio.NewWriter(os.Stdout)
	for _, s := range sections {
		s.print(w)
	}
	fmt.Fprintln(w, "\n## The recorder against SQL mode, its storage and the analysis functions: make bench-recorder, below")
	w.Flush()
}

// benchSection is one part of the table: a title line (a markdown heading, which make bench
// keeps with the table lines) and a markdown table.
type benchSection struct {
	title  string
	header []string
	rows   [][]string
}

func (s benchSection) print(w io.Writer) {
	fmt.Fprintf(w, "\n## %s\n| %s |\n|%s\n", s.title, strings.Join(s.header, " | "), strings.Repeat("---|", len(s.header)))
	for _, row := range s.rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
}

// latestMajor is the newest PostgreSQL major under test, which the table measures.
func latestMajor() int { return pgtest.Versions()[len(pgtest.Versions())-1] }

// benchCollectionAndScrape measures collection cost per tier and scrape cost at several
// numbers of tracked tables (10 to 10,000; short: 10 and 100), and peak RSS: of this process,
// and of the exporter binary alone serving the same database (measureBinary). CPU is measured
// as this process's user+system time (getrusage), which survives a loaded machine better than
// wall time; it includes the HTTP client, so it bounds the exporter's from above.
func benchCollectionAndScrape(t *testing.T, full bool) benchSection {
	sizes, collections, scrapes := []int{10, 100}, 3, 50
	if full {
		sizes, collections, scrapes = []int{10, 100, 1000, 10000}, 10, 500
	}
	srv := pgtest.Start(t, latestMajor())
	var rows [][]string
	for _, n := range sizes {
		dsn := srv.NewDatabase(t)
		track := pgtest.CreateTables(t, pgtest.Connect(t, dsn, ""), n)
		ts, r, _ := startExporterTracking(t, dsn, time.Hour, track...)
		row := []string{fmt.Sprint(n)}
		for _, tier := range []collectors.Tier{collectors.TierSample, collectors.TierSnapshot} {
			var took []time.Duration
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			for range collections {
				start := time.Now()
				if _, err := r.Collect(context.Background(), tier); err != nil {
					t.Fatal(err)
				}
				took = append(took, time.Since(start))
			}
			runtime.ReadMemStats(&ms1)
			row = append(row, fmt.Sprintf("%s / %s", quantile(took, 0.5), quantile(took, 0.99)),
				fmt.Sprintf("%.1f", float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(collections)/(1<<20)))
		}
		series, p50, p99, cpu := measureScrapes(t, ts.URL+"/metrics", scrapes, cpuTime)
		row = append(row, fmt.Sprint(series), p50.String(), p99.String(), cpu.String(), peakRSS())
		ts.Close()
		rows = append(rows, append(row, measureBinary(t, dsn, track, scrapes)...))
	}
	return benchSection{
		title: fmt.Sprintf("Collection and scrape cost: PostgreSQL %d, %d cores, GOMAXPROCS %d; %d collections and %d scrapes of /metrics (keep-alive, gzip) per size, in this process; "+
			"then the same scrapes of the exporter binary (defaults, --tier.sample-interval=1s, the tables tracked by flag) after its first collections",
			latestMajor(), runtime.NumCPU(), runtime.GOMAXPROCS(0), collections, scrapes),
		header: []string{"tracked tables", "sample tier p50 / p99", "MiB alloc", "snapshot tier p50 / p99", "MiB alloc", "series",
			"scrape p50", "scrape p99", "CPU per scrape", "peak RSS (test process)",
			"binary: series", "binary: scrape p50 / p99", "binary: exporter CPU per scrape", "binary: RSS after / peak RSS (VmHWM)"},
		rows: rows,
	}
}

// measureScrapes scrapes the whole /metrics view as Prometheus does (keep-alive, gzip): series
// in it, latency quantiles, CPU per scrape. The client leaves the body compressed, so the CPU
// measured is the exporter's and the HTTP round trip's, not the decompression Prometheus pays.
// cpuTime is the CPU clock it reads (this process's, or the exporter binary's).
func measureScrapes(t *testing.T, metricsURL string, n int, cpuTime func() time.Duration) (series int, p50, p99, cpu time.Duration) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	get := func(encoding string) string {
		req, _ := http.NewRequest("GET", metricsURL, nil)
		req.Header.Set("Accept-Encoding", encoding)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	for _, line := range strings.Split(get("identity"), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			series++
		}
	}
	var took []time.Duration
	cpu0 := cpuTime()
	for range n {
		start := time.Now()
		get("gzip")
		took = append(took, time.Since(start))
	}
	return series, quantile(took, 0.5), quantile(took, 0.99), (cpuTime() - cpu0) / time.Duration(n)
}

// measureBinary runs the exporter binary at its defaults tracking the tables (the sample tier
// every second, so that both tiers have collected within seconds; the snapshot tier collects
// at start), waits for both tiers, and scrapes it as measureScrapes does: series, latency,
// the exporter process's own CPU per scrape (/proc/<pid>/stat over the scrapes, less its CPU
// over as long a window without scrapes just before: the wait sampler and the sample tier
// run meanwhile), and its RSS at the end and peak RSS (VmHWM).
func measureBinary(t *testing.T, dsn string, track []string, scrapes int) []string {
	t.Helper()
	args := []string{"--postgres.dsn=" + dsn, "--tier.sample-interval=1s"}
	for _, name := range track {
		args = append(args, "--collector.tables.track="+name)
	}
	p := startExporterBinary(t, args...)
	defer p.stop(t)
	pgtest.Eventually(t, 2*time.Minute, "both tiers collected by the exporter binary", func() bool {
		_, body := scrape(t, p.url)
		return strings.Contains(body, `pgbatch_collector_success{collector="tables"} 1`) &&
			strings.Contains(body, `pgbatch_collector_success{collector="sessions"} 1`)
	})
	exporterCPU := func() time.Duration { return p.cpu(t) }
	measureScrapes(t, p.url, 20, exporterCPU) // warm: the formats asked for are encoded
	start := time.Now()
	series, p50, p99, cpu := measureScrapes(t, p.url, scrapes, exporterCPU)
	took := time.Since(start)
	idle0 := exporterCPU()
	time.Sleep(took)
	idle := exporterCPU() - idle0
	perScrape := max(0, cpu-idle/time.Duration(scrapes)).Round(time.Microsecond)
	return []string{fmt.Sprint(series), fmt.Sprintf("%s / %s", p50, p99), perScrape.String(),
		fmt.Sprintf("%d / %d kB", proctest.Status(t, p.pid(), "VmRSS"), proctest.Status(t, p.pid(), "VmHWM"))}
}

func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))].Round(10 * time.Microsecond)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakRSS is the process's VmHWM.
func peakRSS() string {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
