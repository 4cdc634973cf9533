package main

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestNoKnownBadModuleVersions: no module of the build graph is below a version that
// docs/security.md lists as known-bad.
func TestNoKnownBadModuleVersions(t *testing.T) {
	doc, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(doc), "<!-- known-bad:begin -->")
	table, _, ok2 := strings.Cut(table, "<!-- known-bad:end -->")
	if !ok || !ok2 {
		t.Fatal("docs/security.md lacks the known-bad table markers")
	}
	badBelow := map[string]string{}
	for _, line := range strings.Split(table, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(cells[2]), "v") {
			continue
		}
		badBelow[strings.TrimSpace(cells[1])] = strings.TrimSpace(cells[2])
	}
	if len(badBelow) < 5 {
		t.Fatalf("read %d rows of the known-bad table", len(badBelow))
	}
	out, err := exec.Command("go", "list", "-m", "all").Output()
	if err != nil {
		t.Fatalf("go list -m all: %v", err)
	}
	seen := 0
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		if fixed, ok := badBelow[f[0]]; ok {
			seen++
			if versionLess(f[1], fixed) {
				t.Errorf("%s %s is known-bad (docs/security.md): upgrade to %s or later", f[0], f[1], fixed)
			}
		}
	}
	if seen == 0 {
		t.Error("no module of the known-bad table is in the build graph: is the table stale?")
	}
}

// versionLess compares the release parts of two semantic versions (v1.2.3-pre counts as v1.2.3).
func versionLess(a, b string) bool {
	pa, pb := versionParts(a), versionParts(b)
	for i := range pa {
		if pa[i] != pb[i] {
			return pa[i] < pb[i]
		}
	}
	return false
}

func versionParts(v string) [3]int {
	var p [3]int
	v, _, _ = strings.Cut(strings.TrimPrefix(v, "v"), "-")
	for i, s := range strings.SplitN(v, ".", 3) {
		p[i], _ = strconv.Atoi(s)
	}
	return p
}
