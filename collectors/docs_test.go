package collectors_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/pg-batch-exporter/pg-batch-exporter/internal/pgtest"
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
	for _, v := range pgtest.Versions() {
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
	names := make([]string, 0, len(families))
	for n := range families {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("# Metrics reference\n\n")
	b.WriteString("Generated from what the exporter really exposed on each PostgreSQL version " +
		"(`collectors/testdata/metrics-pg*.golden`; regenerate with `go test ./collectors -update`). " +
		"Replication lag families appear only while a standby or subscriber is connected; batch and " +
		"recorder families are listed in their own docs.\n\n")
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
