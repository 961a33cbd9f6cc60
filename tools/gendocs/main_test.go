package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigurationDocIsFresh fails when docs/configuration.md is not what gendocs writes from
// today's config.go: run go generate in the repository root.
func TestConfigurationDocIsFresh(t *testing.T) {
	root := filepath.Join("..", "..")
	src, err := os.ReadFile(filepath.Join(root, "config.go"))
	if err != nil {
		t.Fatal(err)
	}
	vars, err := parseEnvVars("config.go", src)
	if err != nil {
		t.Fatal(err)
	}
	if len(vars) < 10 {
		t.Fatalf("read %d variables from config.go: the parser missed the table", len(vars))
	}
	got, err := os.ReadFile(filepath.Join(root, "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	if want := render(vars); !bytes.Equal(got, want) {
		t.Errorf("docs/configuration.md is stale: run go generate in the repository root")
	}
}

// TestParseEnvVarsRefusesComputedRows: a row the parser cannot read is an error, not a row lost.
func TestParseEnvVarsRefusesComputedRows(t *testing.T) {
	for name, src := range map[string]string{
		"computed help": `package main
func envVars() []envVar { return []envVar{{name: "A", help: fmt.Sprint(1)}} }`,
		"unknown field": `package main
func envVars() []envVar { return []envVar{{name: "A", group: "x"}} }`,
		"no table": `package main
func other() {}`,
	} {
		if _, err := parseEnvVars("x.go", []byte(src)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	vars, err := parseEnvVars("x.go", []byte(`package main
func envVars() []envVar { return []envVar{{name: "A", def: "1", help: "a " + "b|<c>*"}, {name: "S", secret: true}} }`))
	if err != nil {
		t.Fatal(err)
	}
	page := string(render(vars))
	for _, want := range []string{"| `A` | `1` | a b\\|&lt;c&gt;\\* |\n", "| `S` | (secret) |  |\n"} {
		if !strings.Contains(page, want) {
			t.Errorf("page has no %q:\n%s", want, page)
		}
	}
}
