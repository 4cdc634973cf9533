package patterns

import (
	"os"
	"path"
	"strings"
	"testing"
	"testing/fstest"
)

// TestEachPatternIsOneFolder: every pattern folder holds its rule, defining the function
// _diagnose_findings calls, its page and, where it has any, its measures; Combine calls each
// pattern once.
func TestEachPatternIsOneFolder(t *testing.T) {
	registered, err := Read(Files)
	if err != nil {
		t.Fatal(err)
	}
	if len(registered) < 7 {
		t.Fatalf("patterns: %v", registered)
	}
	combined := Combine(registered)
	for _, p := range registered {
		n := p.Name
		rule, err := Files.ReadFile(path.Join(n, RuleFile))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(rule), "CREATE OR REPLACE FUNCTION telemetry._pattern_"+n+"(") {
			t.Errorf("%s/%s does not define telemetry._pattern_%s", n, RuleFile, n)
		}
		for _, f := range p.Files() {
			text, err := Files.ReadFile(f)
			if err != nil || strings.Count(string(text), "CREATE OR REPLACE FUNCTION") != strings.Count(string(text), "SET search_path = pg_catalog, pg_temp") {
				t.Errorf("%s: each function must pin search_path (%v)", f, err)
			}
		}
		page, err := os.ReadFile(path.Join(n, "README.md"))
		if err != nil || !strings.HasPrefix(string(page), "# "+n+"\n") {
			t.Errorf("%s/README.md: want the pattern's page, titled %q (%v)", n, n, err)
		}
		if strings.Count(combined, "telemetry._pattern_"+n+"(") != 1 {
			t.Errorf("Combine calls %s %d times", n, strings.Count(combined, "telemetry._pattern_"+n+"("))
		}
	}
	if _, err := Read(fstest.MapFS{"Bad-Name/pattern.sql": {}}); err == nil {
		t.Error("a folder name that is not an SQL identifier is accepted")
	}
	if _, err := Read(fstest.MapFS{"x/pattern.sql": {}, "x/measures.sql": {Data: []byte("SELECT 1;")}}); err == nil {
		t.Error("a measures.sql that declares nothing is accepted")
	}
}
