package patterns

import (
	"os"
	"path"
	"strings"
	"testing"
	"testing/fstest"
)

// TestEachPatternIsOneFolder: every pattern folder holds its rule, defining the function
// _diagnose_findings calls, and its page; Combine calls each pattern once.
func TestEachPatternIsOneFolder(t *testing.T) {
	names, err := Names(Files)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 7 {
		t.Fatalf("patterns: %v", names)
	}
	combined := Combine(names)
	for _, n := range names {
		rule, err := Files.ReadFile(path.Join(n, RuleFile))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(rule), "CREATE OR REPLACE FUNCTION telemetry._pattern_"+n+"(") {
			t.Errorf("%s/%s does not define telemetry._pattern_%s", n, RuleFile, n)
		}
		if !strings.Contains(string(rule), "SET search_path = pg_catalog, pg_temp") {
			t.Errorf("%s/%s: its function must pin search_path", n, RuleFile)
		}
		page, err := os.ReadFile(path.Join(n, "README.md"))
		if err != nil || !strings.HasPrefix(string(page), "# "+n+"\n") {
			t.Errorf("%s/README.md: want the pattern's page, titled %q (%v)", n, n, err)
		}
		if strings.Count(combined, "telemetry._pattern_"+n+"(") != 1 {
			t.Errorf("Combine calls %s %d times", n, strings.Count(combined, "telemetry._pattern_"+n+"("))
		}
	}
	if _, err := Names(fstest.MapFS{"Bad-Name/pattern.sql": {}}); err == nil {
		t.Error("a folder name that is not an SQL identifier is accepted")
	}
}
