package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// The dashboards and their uids: links between them and users' bookmarks rely on the uids.
var dashboardUIDs = map[string]string{
	"batch-window.json": "pgbatch-batch-window",
	"overview.json":     "pgbatch-overview",
	"recorder.json":     "pgbatch-recorder",
}

const (
	promDatasource = "prometheus"
	pgDatasource   = "grafana-postgresql-datasource"
)

// query is one query of a dashboard: a panel target, an annotation or a variable.
type query struct {
	Dashboard string
	Where     string // panel title, "annotation X" or "variable X"
	Kind      string // promDatasource or pgDatasource
	Text      string
	Instant   bool // a PromQL query Grafana runs at the end of the range only
}

func (q query) String() string { return fmt.Sprintf("%s / %s: %s", q.Dashboard, q.Where, q.Text) }

type dashboard struct {
	File string
	Raw  map[string]any
}

func loadDashboards(t testing.TB) []dashboard {
	t.Helper()
	files, err := filepath.Glob("../dashboards/*.json")
	if err != nil {
		t.Fatal(err)
	}
	var out []dashboard
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		d := dashboard{File: filepath.Base(f)}
		if err := json.Unmarshal(data, &d.Raw); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, d)
	}
	if len(out) != len(dashboardUIDs) {
		t.Fatalf("found %d dashboards in dashboards/, want %d", len(out), len(dashboardUIDs))
	}
	return out
}

// panels returns every panel, rows' nested panels included, rows themselves excluded.
func (d dashboard) panels() []map[string]any {
	var out []map[string]any
	var walk func([]any)
	walk = func(ps []any) {
		for _, p := range ps {
			m := p.(map[string]any)
			if m["type"] == "row" {
				walk(list(m["panels"]))
				continue
			}
			out = append(out, m)
		}
	}
	walk(list(d.Raw["panels"]))
	return out
}

func (d dashboard) templating() []map[string]any { return maps(dig(d.Raw, "templating", "list")) }
func (d dashboard) annotations() []map[string]any {
	return maps(dig(d.Raw, "annotations", "list"))
}

// queries lists every query of the dashboard.
func (d dashboard) queries() []query {
	var out []query
	for _, p := range d.panels() {
		for _, tg := range maps(p["targets"]) {
			kind := str(dig(tg, "datasource", "type"))
			if kind == "" {
				kind = str(dig(p, "datasource", "type"))
			}
			q := query{Dashboard: d.File, Where: str(p["title"]), Kind: kind, Instant: tg["instant"] == true}
			if kind == promDatasource {
				q.Text = str(tg["expr"])
			} else {
				q.Text = str(tg["rawSql"])
			}
			out = append(out, q)
		}
	}
	for _, a := range d.annotations() {
		kind := str(dig(a, "datasource", "type"))
		switch kind {
		case promDatasource:
			out = append(out, query{Dashboard: d.File, Where: "annotation " + str(a["name"]), Kind: kind, Text: str(a["expr"])})
		case pgDatasource:
			out = append(out, query{Dashboard: d.File, Where: "annotation " + str(a["name"]), Kind: kind, Text: str(dig(a, "target", "rawSql"))})
		}
	}
	for _, v := range d.templating() {
		if v["type"] != "query" {
			continue
		}
		kind := str(dig(v, "datasource", "type"))
		text := str(v["query"])
		if kind == promDatasource {
			text = str(dig(v, "query", "query"))
		}
		out = append(out, query{Dashboard: d.File, Where: "variable " + str(v["name"]), Kind: kind, Text: text})
	}
	return out
}

// TestDashboardsImportable: what makes a dashboard importable as it is and usable anywhere:
// its stable uid, data-source variables instead of fixed data sources, a unit on every
// panel, $__rate_interval in every rate, unique panel ids.
func TestDashboardsImportable(t *testing.T) {
	for _, d := range loadDashboards(t) {
		t.Run(d.File, func(t *testing.T) {
			if uid, want := str(d.Raw["uid"]), dashboardUIDs[d.File]; uid != want {
				t.Errorf("uid = %q, want %q", uid, want)
			}
			if d.Raw["id"] != nil {
				t.Errorf("id = %v: an exported dashboard must not carry its database id", d.Raw["id"])
			}
			dsVars := map[string]string{} // name -> plugin
			for _, v := range d.templating() {
				if v["type"] == "datasource" {
					dsVars[str(v["name"])] = str(v["query"])
				}
			}
			if len(dsVars) == 0 {
				t.Fatal("no data-source variable")
			}
			checkDatasource := func(where string, ds any) {
				uid, typ := str(dig(ds, "uid")), str(dig(ds, "type"))
				name := strings.TrimSuffix(strings.TrimPrefix(uid, "${"), "}")
				if plugin, ok := dsVars[name]; !ok || plugin != typ {
					t.Errorf("%s: data source %v is not one of the dashboard's data-source variables %v", where, ds, dsVars)
				}
			}
			ids := map[float64]string{}
			for _, p := range d.panels() {
				title := str(p["title"])
				checkDatasource(title, p["datasource"])
				if unit := str(dig(p, "fieldConfig", "defaults", "unit")); unit == "" {
					t.Errorf("panel %q has no unit", title)
				}
				if id, ok := p["id"].(float64); !ok {
					t.Errorf("panel %q has no id", title)
				} else if other, dup := ids[id]; dup {
					t.Errorf("panels %q and %q share id %v", title, other, id)
				} else {
					ids[id] = title
				}
				if len(maps(p["targets"])) == 0 {
					t.Errorf("panel %q has no query", title)
				}
				for _, tg := range maps(p["targets"]) {
					if tg["datasource"] != nil {
						checkDatasource(title, tg["datasource"])
					}
				}
			}
			for _, a := range d.annotations() {
				if a["builtIn"] == nil {
					checkDatasource("annotation "+str(a["name"]), a["datasource"])
				}
			}
			rateRange := regexp.MustCompile(`\b(?:rate|irate)\([^\[]*\[([^\]]*)\]`)
			for _, q := range d.queries() {
				if q.Kind != promDatasource {
					continue
				}
				for _, m := range rateRange.FindAllStringSubmatch(q.Text, -1) {
					if m[1] != "$__rate_interval" {
						t.Errorf("%s: rate over [%s], want [$__rate_interval]", q, m[1])
					}
				}
			}
		})
	}
}

// grafanaVars are the values the tests give Grafana's variables and macros.
type grafanaVars struct {
	Instance     string
	Range        time.Duration // $__range: the selected time range
	RateInterval time.Duration // $__rate_interval: four scrape intervals at least
	From, To     time.Time     // for SQL macros
	Server       string        // the recorder dashboard's $server
	Run          string        // the batch window's $run
}

func promDuration(d time.Duration) string { return fmt.Sprintf("%dms", d.Milliseconds()) }

// expandPromQL substitutes Grafana's macros and the dashboards' variables as Grafana would.
func expandPromQL(q string, v grafanaVars) string {
	return strings.NewReplacer(
		"$__rate_interval", promDuration(v.RateInterval),
		"$__range_s", fmt.Sprint(int(v.Range.Seconds())),
		"$__range", promDuration(v.Range),
		"$__interval", promDuration(v.RateInterval),
		"$instance", v.Instance,
	).Replace(q)
}

var timeFilter = regexp.MustCompile(`\$__timeFilter\(([^)]+)\)`)

// expandSQL substitutes the PostgreSQL data source's macros and the dashboards' variables.
func expandSQL(q string, v grafanaVars) string {
	from, to := "'"+v.From.UTC().Format(time.RFC3339Nano)+"'", "'"+v.To.UTC().Format(time.RFC3339Nano)+"'"
	q = timeFilter.ReplaceAllString(q, "$1 BETWEEN "+from+" AND "+to)
	return strings.NewReplacer(
		"$__timeFrom()", from,
		"$__timeTo()", to,
		"$server", v.Server,
		"$run", v.Run,
	).Replace(q)
}

// labelValues matches a Prometheus variable query, label_values(metric, label).
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)

// promExpr is the PromQL a Prometheus query stands for (a variable's metric selector).
func promExpr(q query) string {
	if m := labelValues.FindStringSubmatch(q.Text); m != nil {
		return m[1]
	}
	return q.Text
}

// TestDashboardPromQLParses: every PromQL query of every dashboard, macros expanded as
// Grafana would, is valid PromQL to Prometheus's own parser (promtool check rules), on
// every build of prometheusBuilds.
func TestDashboardPromQLParses(t *testing.T) {
	builds := prometheusBuilds(t, "promtool")
	vars := grafanaVars{Instance: "127.0.0.1:9188", Range: time.Hour, RateInterval: 2 * time.Minute}
	var b strings.Builder
	b.WriteString("groups:\n")
	n := 0
	for _, d := range loadDashboards(t) {
		for _, q := range d.queries() {
			if q.Kind != promDatasource {
				continue
			}
			n++
			name, _ := json.Marshal(fmt.Sprintf("%d %s / %s", n, q.Dashboard, q.Where))
			expr, _ := json.Marshal(expandPromQL(promExpr(q), vars))
			fmt.Fprintf(&b, "  - name: %s\n    rules:\n      - record: dashboard_query_%d\n        expr: %s\n", name, n, expr)
		}
	}
	if n < 30 {
		t.Fatalf("found %d PromQL queries in the dashboards, expected more", n)
	}
	file := filepath.Join(t.TempDir(), "queries.yml")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, b := range builds {
		version := b.version(t, "promtool")
		out, err := exec.Command(filepath.Join(b.Dir, "promtool"), "check", "rules", file).CombinedOutput()
		if err != nil {
			t.Errorf("%s: promtool check rules: %v\n%s", version, err, out)
			continue
		}
		if want := fmt.Sprintf("SUCCESS: %d rules found", n); !strings.Contains(string(out), want) {
			t.Errorf("%s: promtool check rules: want %q in\n%s", version, want, out)
			continue
		}
		t.Logf("%s: %d PromQL queries parse", version, n)
	}
}

// metricName matches the exporter's metric names in a query.
var metricName = regexp.MustCompile(`\b(?:pgbatch|pg_batch_exporter)_[a-zA-Z0-9_]+\b`)

// dashboardMetrics maps each metric named by a dashboard query to the queries naming it.
func dashboardMetrics(t testing.TB) map[string][]string {
	out := map[string][]string{}
	for _, d := range loadDashboards(t) {
		for _, q := range d.queries() {
			if q.Kind != promDatasource {
				continue
			}
			for _, name := range metricName.FindAllString(q.Text, -1) {
				out[name] = append(out[name], q.Dashboard+" / "+q.Where)
			}
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// JSON helpers for the dashboards' untyped trees.

func dig(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func maps(v any) []map[string]any {
	var out []map[string]any
	for _, e := range list(v) {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func str(v any) string {
	s, _ := v.(string)
	return s
}
