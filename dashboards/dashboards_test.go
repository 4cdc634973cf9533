package dashboards

import (
	"os"
	"path/filepath"
	"testing"
)

// TestGeneratedInSync fails when a dashboard's JSON file no longer matches its Go source,
// or when a JSON file here has no source: go generate ./dashboards/... rewrites them.
func TestGeneratedInSync(t *testing.T) {
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		if got, err := os.ReadFile(name); err != nil || string(got) != string(want) {
			t.Errorf("%s is stale: run go generate ./dashboards/...", name)
		}
	}
	committed, err := filepath.Glob("*.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range committed {
		if _, ok := files[name]; !ok {
			t.Errorf("%s has no Go source in package dashboards: add it there (see dashboards.go)", name)
		}
	}
}
