package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/proctest"
)

// scrapeEvery is the scrape, evaluation and collection interval of the end-to-end set-up.
const scrapeEvery = time.Second

// exporterBinary builds cmd/pg-batch-exporter once per test process.
func exporterBinary(t testing.TB) string { return proctest.ExporterBinary(t) }

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// logBuffer keeps a process's output for the failure message.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) tail() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	if len(s) > 4000 {
		s = "..." + s[len(s)-4000:]
	}
	return s
}

// startProcess runs a command until the test ends and returns its output buffer.
func startProcess(t testing.TB, name string, args ...string) *logBuffer {
	t.Helper()
	out := &logBuffer{}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(name), out.tail())
		}
	})
	return out
}

// startExporter runs the exporter binary against dsn with 1-second tiers and the recorder
// on, and returns its base URL once it serves metrics.
func startExporter(t testing.TB, dsn string, extra ...string) string {
	t.Helper()
	return startExporterAt(t, freeAddr(t), dsn, extra...)
}

// startExporterAt is startExporter listening on addr.
func startExporterAt(t testing.TB, addr, dsn string, extra ...string) string {
	t.Helper()
	args := append([]string{
		"--postgres.dsn=" + dsn,
		"--web.listen-address=" + addr,
		"--tier.sample-interval=" + scrapeEvery.String(),
		"--tier.snapshot-interval=" + scrapeEvery.String(),
		"--collector.waits.interval=250ms",
		"--recorder.enabled",
		"--log.level=warn",
	}, extra...)
	out := startProcess(t, exporterBinary(t), args...)
	base := "http://" + addr
	pgtest.Eventually(t, 30*time.Second, "the exporter to serve pgbatch_up 1 ("+out.tail()+")", func() bool {
		body, err := httpGet(base + "/metrics")
		return err == nil && strings.Contains(body, "\npgbatch_up 1\n")
	})
	return base
}

// prometheus is a running Prometheus server.
type prometheus struct {
	name string // the build's name, for messages
	api  string // http://127.0.0.1:PORT/api/v1
	out  *logBuffer
}

// startPrometheus runs the build's prometheus scraping the exporter's two tiers as two
// jobs, as docs/prometheus-grafana.md recommends, every scrapeEvery, with the given rule file.
func startPrometheus(t testing.TB, build prometheusBuild, exporterURL, rules string) *prometheus {
	t.Helper()
	bin := filepath.Join(build.Dir, "prometheus")
	u, err := url.Parse(exporterURL)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: %[1]s
  evaluation_interval: %[1]s
rule_files: [%[2]q]
scrape_configs:
  - job_name: pgbatch-sample
    params: {tier: [sample]}
    static_configs: [{targets: [%[3]q]}]
  - job_name: pgbatch-snapshot
    params: {tier: [snapshot]}
    static_configs: [{targets: [%[3]q]}]
`, scrapeEvery, rules, u.Host)
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	out := startProcess(t, bin, "--config.file="+cfgFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	p := &prometheus{name: build.Name + " " + build.version(t, "prometheus"), api: "http://" + addr + "/api/v1", out: out}
	pgtest.Eventually(t, 30*time.Second, p.name+" to be ready", func() bool {
		_, err := httpGet("http://" + addr + "/-/ready")
		return err == nil
	})
	return p
}

// sample is one series of a query result with its values.
type sample struct {
	Metric map[string]string `json:"metric"`
	Value  []any             `json:"value"`  // instant: [time, "value"]
	Values [][]any           `json:"values"` // range: [[time, "value"], ...]
}

func (s sample) float() float64 {
	if len(s.Value) != 2 {
		return 0
	}
	f, _ := strconv.ParseFloat(fmt.Sprint(s.Value[1]), 64)
	return f
}

// query runs an instant query at t (zero: now).
func (p *prometheus) query(t testing.TB, expr string, at time.Time) []sample {
	t.Helper()
	v := url.Values{"query": {expr}}
	if !at.IsZero() {
		v.Set("time", formatTime(at))
	}
	return p.result(t, "/query?"+v.Encode())
}

// queryRange runs a range query with a 1-second step.
func (p *prometheus) queryRange(t testing.TB, expr string, start, end time.Time) []sample {
	t.Helper()
	v := url.Values{"query": {expr}, "start": {formatTime(start)}, "end": {formatTime(end)}, "step": {"1"}}
	return p.result(t, "/query_range?"+v.Encode())
}

func (p *prometheus) result(t testing.TB, path string) []sample {
	t.Helper()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []sample `json:"result"`
		} `json:"data"`
	}
	p.get(t, path, &r)
	if r.Status != "success" {
		t.Fatalf("%s %s: %s", p.name, path, r.Error)
	}
	return r.Data.Result
}

// alert is one entry of /api/v1/alerts.
type alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"` // pending or firing
}

func (p *prometheus) alerts(t testing.TB) []alert {
	t.Helper()
	var r struct {
		Data struct {
			Alerts []alert `json:"alerts"`
		} `json:"data"`
	}
	p.get(t, "/alerts", &r)
	return r.Data.Alerts
}

// active returns the named alert with the given batch label, if pending or firing.
func (p *prometheus) active(t testing.TB, name, batch string) (alert, bool) {
	t.Helper()
	for _, a := range p.alerts(t) {
		if a.Labels["alertname"] == name && a.Labels["batch"] == batch {
			return a, true
		}
	}
	return alert{}, false
}

func (p *prometheus) get(t testing.TB, path string, into any) {
	t.Helper()
	body, err := httpGet(p.api + path)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", p.name, path, err, p.out.tail())
	}
	if err := json.Unmarshal([]byte(body), into); err != nil {
		t.Fatalf("%s %s: %v", p.name, path, err)
	}
}

func formatTime(at time.Time) string {
	return strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64)
}

func httpGet(u string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode/100 != 2 && resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusUnprocessableEntity {
		return "", fmt.Errorf("%s: %s", resp.Status, body)
	}
	return string(body), nil
}

// compressRules returns the rule file with every range, offset and `for` duration divided by
// factor: the end-to-end set-up scrapes every second instead of every 30s/1m, so the
// alerts' windows shrink with it. Thresholds are left alone.
func compressRules(t testing.TB, src string, factor int) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	scale := func(d string) string {
		dur, err := time.ParseDuration(d)
		if err != nil {
			t.Fatalf("%s: duration %q: %v", src, d, err)
		}
		return fmt.Sprintf("%dms", (dur / time.Duration(factor)).Milliseconds())
	}
	text := regexp.MustCompile(`\[(\d+[smh])\]`).ReplaceAllStringFunc(string(data), func(m string) string {
		return "[" + scale(m[1:len(m)-1]) + "]"
	})
	text = regexp.MustCompile(`\boffset (\d+[smh])\b`).ReplaceAllStringFunc(text, func(m string) string {
		return "offset " + scale(strings.TrimPrefix(m, "offset "))
	})
	text = regexp.MustCompile(`(?m)^(\s*for:\s*)(\S+)$`).ReplaceAllStringFunc(text, func(m string) string {
		i := strings.LastIndex(m, " ")
		return m[:i+1] + scale(m[i+1:])
	})
	out := filepath.Join(t.TempDir(), "pgbatch.rules.yml")
	if err := os.WriteFile(out, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// replicaSetup gives dsn's server a connected replica: a logical subscription from a second
// database of the same server, which streams through a walsender like a standby and holds
// a replication slot. The server needs wal_level=logical. The published table is
// public.batch_items.
func replicaSetup(t testing.TB, srv *pgtest.Server, dsn string) {
	t.Helper()
	subDSN := srv.NewDatabase(t)
	slot := fmt.Sprintf("e2e_%d_%d", os.Getpid(), time.Now().UnixNano())
	for _, d := range []string{dsn, subDSN} {
		srv.Exec(t, d, `CREATE TABLE public.batch_items (id bigserial PRIMARY KEY, payload text NOT NULL)`)
	}
	srv.Exec(t, dsn, `CREATE PUBLICATION e2e_pub FOR TABLE public.batch_items`)
	// A subscription to its own server cannot create its slot (it would wait on itself).
	srv.Exec(t, dsn, fmt.Sprintf(`SELECT pg_create_logical_replication_slot('%s', 'pgoutput')`, slot))
	srv.Exec(t, subDSN, fmt.Sprintf(`CREATE SUBSCRIPTION %s CONNECTION '%s' PUBLICATION e2e_pub WITH (create_slot = false, slot_name = '%s')`,
		slot, dsn, slot))
	t.Cleanup(func() {
		ctx := context.Background()
		if c, err := pgx.Connect(ctx, subDSN); err == nil {
			_, _ = c.Exec(ctx, `DROP SUBSCRIPTION `+slot)
			c.Close(ctx)
		}
	})
}
