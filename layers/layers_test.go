// Package layers holds the test of the packages' layers that README.md's architecture section
// writes down.
package layers

import (
	"errors"
	"go/build"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const module = "github.com/pg-batch-exporter/pg-batch-exporter"

// harnessLayer is the README row of the test harnesses: no layer of production code.
const harnessLayer = "test harnesses"

// layers is README.md's table: each package's layer (0 the lowest), the test harnesses, and the
// production packages allowed to import a harness (from -> to).
type layers struct {
	names   []string       // top first, as written
	layerOf map[string]int // package (from the module's root) -> layer, 0 the lowest
	harness map[string]bool
	allowed map[[2]string]bool
}

var (
	backquoted = regexp.MustCompile("`([^`]+)`")
	allowedUse = regexp.MustCompile("`([^`]+)` -> `([^`]+)`")
)

// readLayers parses the rows after README.md's "<!-- layers" comment up to the first blank line.
func readLayers(t *testing.T, readme string) layers {
	t.Helper()
	_, table, ok := strings.Cut(readme, "<!-- layers:")
	if !ok {
		t.Fatal("README.md has no <!-- layers: table")
	}
	table, _, _ = strings.Cut(table, "\n\n")
	l := layers{layerOf: map[string]int{}, harness: map[string]bool{}, allowed: map[[2]string]bool{}}
	var rows [][]string // the packages of each layer, top first
	for _, line := range strings.Split(table, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 5 || !strings.Contains(cells[2], "`") {
			continue // the comment, the header, the separator
		}
		name := strings.TrimSpace(cells[1])
		var pkgs []string
		for _, m := range backquoted.FindAllStringSubmatch(cells[2], -1) {
			pkgs = append(pkgs, m[1])
		}
		if name == harnessLayer {
			for _, p := range pkgs {
				l.harness[p] = true
			}
			for _, m := range allowedUse.FindAllStringSubmatch(cells[3], -1) {
				l.allowed[[2]string{m[1], m[2]}] = true
			}
			continue
		}
		l.names = append(l.names, name)
		rows = append(rows, pkgs)
	}
	if len(rows) < 3 || len(l.harness) == 0 {
		t.Fatalf("README.md's layers: %v, harnesses %v: the table no longer reads as this test expects", l.names, l.harness)
	}
	for i, pkgs := range rows {
		for _, p := range pkgs {
			if _, dup := l.layerOf[p]; dup {
				t.Errorf("README.md's layers: %s is in two rows", p)
			}
			l.layerOf[p] = len(rows) - 1 - i
		}
	}
	return l
}

// productionImports are the module's packages that have non-test Go files, by their path from
// the module's root, each with the module's packages its non-test files import. Folders go
// leaves out (testdata, names starting with . or _) are left out.
func productionImports(t *testing.T, root string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := filepath.WalkDir(root, func(dir string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		if dir != root && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") || strings.HasPrefix(d.Name(), "_")) {
			return filepath.SkipDir
		}
		pkg, err := build.ImportDir(dir, 0)
		if errors.As(err, new(*build.NoGoError)) || err == nil && len(pkg.GoFiles) == 0 {
			return nil // no Go files, or tests only
		}
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		out[rel] = nil
		for _, imp := range pkg.Imports {
			if p, ok := strings.CutPrefix(imp, module+"/"); ok {
				out[rel] = append(out[rel], p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestLayers: every production package is in a row of README.md's layers and imports only
// packages on the layers below its own; none imports a test harness but the pairs the table
// allows; every package the table names exists.
func TestLayers(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	l := readLayers(t, string(readme))
	imports := productionImports(t, "..")
	if len(imports) < 15 {
		t.Fatalf("only %d packages found: %v", len(imports), imports)
	}
	for pkg, deps := range imports {
		layer, layered := l.layerOf[pkg]
		if !layered && !l.harness[pkg] {
			t.Errorf("%s is in no row of README.md's layers: give it the row of what it is", pkg)
			continue
		}
		for _, dep := range deps {
			switch {
			case l.harness[dep]:
				if layered && !l.allowed[[2]string{pkg, dep}] {
					t.Errorf("%s imports the test harness %s: production code imports no harness", pkg, dep)
				}
			case !layered: // a harness may use production code
			case l.layerOf[dep] >= layer:
				t.Errorf("%s (layer %s) imports %s (layer %s): a package imports only the layers below its own",
					pkg, l.names[len(l.names)-1-layer], dep, l.names[len(l.names)-1-l.layerOf[dep]])
			}
		}
	}
	for pkg := range l.layerOf {
		if _, ok := imports[pkg]; !ok {
			t.Errorf("README.md's layers name %s, which is not a package with production code", pkg)
		}
	}
	for pkg := range l.harness {
		if _, ok := imports[pkg]; !ok {
			t.Errorf("README.md's layers name the harness %s, which is not a package", pkg)
		}
	}
}
