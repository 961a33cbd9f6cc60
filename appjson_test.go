package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	envconfig "cloudinary-upload-api/internal/config"
)

// appJSONVars are the only variables the Heroku Button's form shows (every other keeps its
// default, and is set later with heroku config:set), with what app.json gives each, and why.
var appJSONVars = map[string]struct {
	value     string // "": none (the default, or nothing)
	required  bool
	generator string
}{
	"CLOUDINARY_URL":   {required: true},      // the one thing only the user knows
	"UPLOAD_TOKENS":    {generator: "secret"}, // never an open /upload: Heroku generates a token
	"STORAGE":          {value: "cloudinary"}, // a dyno's disk is wiped on every restart: a missing URL must stop the server
	"TRUST_PROXY":      {value: "true"},       // behind Heroku's router every connection comes from the router
	"REDIS_TLS_VERIFY": {value: "false"},      // Heroku Key-Value Store's certificates are self-signed (docs/heroku.md: Scaling out)
	"ALLOWED_ORIGINS":  {value: "*"},          // the default, shown: the user's own pages belong here
	"UPLOAD_FOLDER":    {},                    // the user's choice
	"MAX_UPLOAD_BYTES": {value: "104857600"},  // the default, shown: the limit people change first
}

// appJSONMaxVars is how many variables the button's form may ask for.
const appJSONMaxVars = 8

// TestAppJSON keeps the Heroku Button's app.json short and in step with internal/config's
// table (gendocs writes its env; this checks what it wrote): only the variables a user sets there
// (at most eight, ENV_FILE not among them), each with the table's meaning, CLOUDINARY_URL required, UPLOAD_TOKENS generated, STORAGE=cloudinary; the Go
// buildpack and one web dyno.
func TestAppJSON(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("app.json")
	if err != nil {
		t.Fatal(err)
	}
	var app struct {
		Name        string
		Description string
		Env         map[string]struct {
			Description string
			Value       *string
			Required    *bool
			Generator   string
		}
		Formation  map[string]struct{ Quantity int }
		Buildpacks []struct{ URL string }
		Addons     []any
	}
	if err := json.Unmarshal(b, &app); err != nil {
		t.Fatalf("app.json: %v", err)
	}
	if app.Name == "" || len(app.Name) > 30 || app.Description == "" {
		t.Errorf("app.json needs a name of at most 30 characters and a description")
	}
	if len(app.Env) > appJSONMaxVars {
		t.Errorf("app.json asks for %d variables, more than %d: leave the rest at their defaults", len(app.Env), appJSONMaxVars)
	}
	vars := map[string]envconfig.Var{}
	for _, v := range envconfig.Vars() {
		vars[v.Name] = v
	}
	for name, want := range appJSONVars {
		e, listed := app.Env[name]
		if !listed {
			t.Errorf("app.json lacks %s", name)
			continue
		}
		v, ok := vars[name]
		if !ok {
			t.Errorf("app.json lists %s, which the server does not read", name)
			continue
		}
		if e.Description != v.Help {
			t.Errorf("app.json's description of %s = %q, want the table's %q", name, e.Description, v.Help)
		}
		if e.Required == nil || *e.Required != want.required {
			t.Errorf("app.json: %s must say \"required\": %v", name, want.required)
		}
		if e.Generator != want.generator {
			t.Errorf("app.json: %s's generator = %q, want %q", name, e.Generator, want.generator)
		}
		got := ""
		if e.Value != nil {
			got = *e.Value
		}
		if got != want.value {
			t.Errorf("app.json's value of %s = %q, want %q", name, got, want.value)
		}
		if want.value == "" && v.Default != "" && !v.Secret {
			t.Errorf("%s has the default %q: app.json must show it", name, v.Default)
		}
		if v.Secret && got != "" {
			t.Errorf("app.json gives the secret %s a value", name)
		}
	}
	for name := range app.Env {
		if _, ok := appJSONVars[name]; !ok {
			t.Errorf("app.json asks for %s, which a user does not set there (it keeps its default)", name)
		}
	}
	// What the button deploys starts: the values above, a URL, and a token as Heroku generates
	// one (a 64-digit hex string), load as a configuration.
	env := map[string]string{"CLOUDINARY_URL": "cloudinary://123456789012345:abcdefghijklmnopqrstuvwxyz0@cloud",
		"UPLOAD_TOKENS": strings.Repeat("0123456789abcdef", 4)}
	for name, e := range app.Env {
		if e.Value != nil && *e.Value != "" {
			env[name] = *e.Value
		}
	}
	cfg, err := loadConfig(mapGetenv(env))
	if err != nil {
		t.Fatalf("app.json's configuration does not load: %v", err)
	}
	if cfg.Storage != "cloudinary" || cfg.uploadTokens == nil {
		t.Errorf("app.json deploys storage %q, tokens %v; want cloudinary and a token", cfg.Storage, cfg.uploadTokens != nil)
	}
	if len(app.Buildpacks) != 1 || app.Buildpacks[0].URL != "heroku/go" {
		t.Errorf("app.json buildpacks = %+v, want heroku/go", app.Buildpacks)
	}
	if app.Formation["web"].Quantity != 1 {
		t.Errorf("app.json formation = %+v, want one web dyno", app.Formation)
	}
	// An add-on that sets CLOUDINARY_URL would collide with the required value the button asks for.
	if len(app.Addons) != 0 {
		t.Errorf("app.json provisions add-ons %v: CLOUDINARY_URL is asked for instead", app.Addons)
	}
}

// TestProcfile checks that the Procfile starts the binary that Heroku's Go buildpack builds.
func TestProcfile(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("Procfile")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), "web: bin/cloudinary-upload-api\n"; got != want {
		t.Errorf("Procfile = %q, want %q (the buildpack builds bin/<last element of the module path>)", got, want)
	}
}
