package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	envconfig "cloudinary-upload-api/internal/config"
)

// TestGeneratedFilesAreFresh fails when docs/configuration.md, .env.example or app.json is not
// what gendocs writes from today's table: run go generate ./... in the repository root.
func TestGeneratedFilesAreFresh(t *testing.T) {
	root := filepath.Join("..", "..")
	files, err := generate(root, envconfig.Vars())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		got, err := os.ReadFile(filepath.Join(root, f.path))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, f.content) {
			t.Errorf("%s is stale: run go generate ./... in the repository root", f.path)
		}
	}
}

func TestRender(t *testing.T) {
	vars := []envconfig.Var{
		{Name: "A", Default: "1", Help: "a b|<c>*", Heroku: &envconfig.Heroku{Order: 2}},
		{Name: "S", Secret: true, Help: "s", Example: "x://k:s@c", Heroku: &envconfig.Heroku{Order: 1, Required: true}},
		{Name: "T", Secret: true, Help: "t", Heroku: &envconfig.Heroku{Order: 3, Generator: "secret"}},
		{Name: "U", Help: "u & <v>"},
	}
	page := string(renderDoc(vars))
	for _, want := range []string{"| `A` | `1` | a b\\|&lt;c&gt;\\* |\n", "| `S` | (secret) | s |\n", "| `U` |  | u & &lt;v&gt; |\n"} {
		if !strings.Contains(page, want) {
			t.Errorf("page has no %q:\n%s", want, page)
		}
	}
	example := string(renderEnvExample(vars))
	for _, want := range []string{"# a b|<c>*\n# A=1\n", "# s\n# S=x://k:s@c\n", "# t\n# T=\n", "# u & <v>\n# U=\n"} {
		if !strings.Contains(example, want) {
			t.Errorf(".env.example has no %q:\n%s", want, example)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(example), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			t.Errorf(".env.example sets %q: every line must be a comment", line)
		}
	}

	app, err := renderAppJSON([]byte(`{"name": "x", "env": {"OLD": {}}, "formation": {"web": {"quantity": 1}}}`), vars)
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "name": "x",
  "env": {
    "S": {
      "description": "s",
      "required": true
    },
    "A": {
      "description": "a b|<c>*",
      "required": false,
      "value": "1"
    },
    "T": {
      "description": "t",
      "required": false,
      "generator": "secret"
    }
  },
  "formation": {
    "web": {
      "quantity": 1
    }
  }
}
`
	if string(app) != want {
		t.Errorf("app.json:\n%s\nwant:\n%s", app, want)
	}
	var decoded map[string]any
	if err := json.Unmarshal(app, &decoded); err != nil {
		t.Errorf("app.json is not JSON: %v", err)
	}
}

// A table the generator cannot write faithfully is an error, not a file quietly wrong.
func TestRenderAppJSONRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		app  string
		vars []envconfig.Var
	}{
		"secret with a value": {`{}`, []envconfig.Var{{Name: "S", Secret: true, Heroku: &envconfig.Heroku{Order: 1, Value: "x"}}}},
		"order with a gap":    {`{}`, []envconfig.Var{{Name: "A", Heroku: &envconfig.Heroku{Order: 2}}}},
		"order twice":         {`{}`, []envconfig.Var{{Name: "A", Heroku: &envconfig.Heroku{Order: 1}}, {Name: "B", Heroku: &envconfig.Heroku{Order: 1}}}},
		"not an object":       {`[1]`, nil},
		"two values":          {`{} {}`, nil},
		"key twice":           {`{"a": 1, "a": 2}`, nil},
	} {
		if _, err := renderAppJSON([]byte(tc.app), tc.vars); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
