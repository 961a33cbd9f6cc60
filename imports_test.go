package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// goPackage is what the import rules need of `go list -deps -json`.
type goPackage struct {
	ImportPath   string
	Standard     bool
	Deps         []string // every package it needs, transitively, tests not included
	TestImports  []string
	XTestImports []string
}

const module = "cloudinary-upload-api"

// The import rules of ARCHITECTURE.md: arrows point down, from the root into internal/; the two
// stores never import each other; formstream, store and imageguard import only the standard
// library (imageguard also golang.org/x/image); cloudinarytest never imports cloudinary, so the
// oracle stays independent of what it checks.
func TestImportRules(t *testing.T) {
	t.Parallel()
	pkgs := listPackages(t)
	standard := func(path string) bool { p, ok := pkgs[path]; return ok && p.Standard }
	internal := func(name string) string { return module + "/internal/" + name }
	var checked int
	for path, p := range pkgs {
		if !strings.HasPrefix(path, module+"/internal/") {
			continue
		}
		checked++
		all := slices.Concat(p.Deps, p.TestImports, p.XTestImports)
		if slices.Contains(all, module) {
			t.Errorf("%s imports the root package", path)
		}
		for _, rule := range []struct{ from, to string }{
			{"localstore", "cloudinary"},
			{"cloudinary", "localstore"},
			{"cloudinary/cloudinarytest", "cloudinary"},
		} {
			if path != internal(rule.from) && !strings.HasPrefix(path, internal(rule.from)+"/") {
				continue
			}
			deps := p.Deps
			if rule.from == "cloudinary/cloudinarytest" {
				deps = all // the oracle's tests too
			}
			if slices.Contains(deps, internal(rule.to)) {
				t.Errorf("%s imports %s", path, internal(rule.to))
			}
		}
		switch path {
		case internal("formstream"), internal("store"), internal("imageguard"):
			for _, d := range p.Deps {
				if !standard(d) && !(path == internal("imageguard") && strings.HasPrefix(d, "golang.org/x/image/")) {
					t.Errorf("%s imports %s: only the standard library is allowed", path, d)
				}
			}
		}
	}
	for _, want := range []string{"formstream", "store", "imageguard", "cloudinary", "localstore"} {
		if _, ok := pkgs[internal(want)]; !ok {
			t.Errorf("no package %s: the rules check nothing of it", internal(want))
		}
	}
	if checked == 0 {
		t.Fatal("no internal packages listed")
	}
}

// listPackages runs `go list -deps -json ./...` in the module and returns every package, by path.
func listPackages(t *testing.T) map[string]goPackage {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goTool, "list", "-deps", "-json", "./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	pkgs := map[string]goPackage{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p goPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs[p.ImportPath] = p
	}
	return pkgs
}

// internal/testkit is for tests: no package imports it outside its tests, but those that serve
// tests (their names end in "test", as redistest).
func TestTestkitOnlyInTests(t *testing.T) {
	t.Parallel()
	pkgs := listPackages(t)
	testkit := module + "/internal/testkit"
	if _, ok := pkgs[testkit]; !ok {
		t.Fatalf("no package %s: the rule checks nothing", testkit)
	}
	for path, p := range pkgs {
		if path == testkit || !strings.HasPrefix(path, module) || strings.HasSuffix(path, "test") {
			continue
		}
		if slices.Contains(p.Deps, testkit) { // Deps are transitive: through redistest too
			t.Errorf("%s imports %s outside its tests", path, testkit)
		}
	}
}
