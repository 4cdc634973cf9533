package main

import (
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestMakeBuildStampsVersion builds the binary as `make build` does (the Makefile's
// ldflags) and checks that --version and the build_info metric carry the git revision,
// branch and describe-version, the build user and date.
func TestMakeBuildStampsVersion(t *testing.T) {
	git := func(args ...string) string {
		out, err := exec.Command("git", args...).Output()
		if err != nil {
			t.Skipf("not a git checkout (git %s: %v)", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out))
	}
	revision, branch := git("rev-parse", "HEAD"), git("rev-parse", "--abbrev-ref", "HEAD")
	bin := filepath.Join(t.TempDir(), "pg-batch-exporter")
	if out, err := exec.Command("make", "-s", "-C", "../..", "exporter", "EXPORTER_BIN="+bin).CombinedOutput(); err != nil {
		t.Fatalf("make exporter: %v\n%s", err, out)
	}
	// describe is read after the build: the Makefile's own call saw the same tree.
	describe := git("describe", "--tags", "--always", "--dirty")

	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("--version: %v\n%s", err, out)
	}
	for _, want := range []string{
		"pg-batch-exporter, version " + describe + " (branch: " + branch + ", revision: " + revision + ")",
		"build user:       ",
		"build date:       " + time.Now().UTC().Format("20060102"),
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("--version lacks %q:\n%s", want, out)
		}
	}
	if regexp.MustCompile(`build user:\s*\n`).Match(out) {
		t.Errorf("--version has no build user:\n%s", out)
	}

	// The exporter serves its build info even while PostgreSQL is unreachable.
	addr := freeAddr(t)
	cmd := exec.Command(bin, "--postgres.dsn=postgres://nobody@127.0.0.1:1/none?connect_timeout=1", "--web.listen-address="+addr, "--log.level=error")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	want := regexp.MustCompile(`(?m)^pg_batch_exporter_build_info\{.*branch="` + regexp.QuoteMeta(branch) + `".*revision="` + regexp.QuoteMeta(revision) + `".*version="` + regexp.QuoteMeta(describe) + `"\} 1$`)
	var body string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if body = string(b); want.MatchString(body) {
				return
			}
		}
	}
	t.Fatalf("no %s in /metrics:\n%s", want, grepLines(body, "build_info"))
}

func grepLines(s, substr string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(s, "\n") {
		if strings.Contains(line, substr) {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
