package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// prometheusBuild is one Prometheus whose binaries (prometheus, promtool) the tests run.
type prometheusBuild struct {
	Name string // "pinned" or "debian"
	Dir  string // the directory holding prometheus and promtool
}

// prometheusBuilds are the Prometheus releases the dashboards and alerts are tested on:
// the pinned Prometheus 3 that `make tools` builds into .tools/bin (PGBATCH_PROMETHEUS_BIN
// names another directory), and Debian's 2.x package in /usr/bin. A missing one is skipped
// with a note, except with CI=true: there it fails the test.
func prometheusBuilds(t *testing.T, binary string) []prometheusBuild {
	t.Helper()
	pinned := os.Getenv("PGBATCH_PROMETHEUS_BIN")
	if pinned == "" {
		pinned = filepath.Join("..", ".tools", "bin")
	}
	var found []prometheusBuild
	for _, b := range []prometheusBuild{{"pinned", pinned}, {"debian", "/usr/bin"}} {
		if _, err := os.Stat(filepath.Join(b.Dir, binary)); err != nil {
			msg := "no " + binary + " in " + b.Dir + " (`make tools` builds the pinned one, scripts/ci-deps.sh installs Debian's): " + err.Error()
			if os.Getenv("CI") == "true" {
				t.Error(msg)
			} else {
				t.Log(msg + "; not tested on it")
			}
			continue
		}
		found = append(found, b)
	}
	if len(found) == 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("no Prometheus to test against") // CI must not skip (each missing build is an error above)
		}
		t.Skip("no Prometheus to test against")
	}
	return found
}

// version is the first line of `binary --version`, for the log.
func (b prometheusBuild) version(t testing.TB, binary string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(b.Dir, binary), "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v\n%s", binary, err, out)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return line
}
