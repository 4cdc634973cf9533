package e2e

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestAlertsDocumented: every alert carries severity, summary, description and a
// runbook_url whose section exists in docs/runbook.md, and has promtool test cases.
func TestAlertsDocumented(t *testing.T) {
	read := func(p string) string {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	rules, tests, runbook := read("../alerts/pgbatch.rules.yml"), read("../alerts/pgbatch.rules.test.yml"), read("../docs/runbook.md")
	// The rule file's alerts, each with its text up to the next rule.
	starts := regexp.MustCompile(`(?m)^\s*- alert: (\w+)$`).FindAllStringSubmatchIndex(rules, -1)
	if len(starts) < 8 {
		t.Fatalf("found %d alerts, want at least 8", len(starts))
	}
	for i, m := range starts {
		name, end := rules[m[2]:m[3]], len(rules)
		if i+1 < len(starts) {
			end = starts[i+1][0]
		}
		body := rules[m[0]:end]
		for _, field := range []string{"severity:", "summary:", "description:", "runbook_url:"} {
			if !strings.Contains(body, field) {
				t.Errorf("%s has no %s", name, field)
			}
		}
		anchor := "docs/runbook.md#" + strings.ToLower(name)
		if !strings.Contains(body, anchor+`"`) {
			t.Errorf("%s: runbook_url does not point at %s", name, anchor)
		}
		if !strings.Contains(runbook, "\n## "+name+"\n") {
			t.Errorf("docs/runbook.md has no section '## %s'", name)
		}
		if n := strings.Count(tests, "alertname: "+name+"\n"); n < 2 {
			t.Errorf("%s has %d promtool test cases, want firing and not-firing ones", name, n)
		}
	}
}
