package main

import (
	"encoding/json"
	"os"
	"slices"
	"testing"
)

// notInAppJSON are the variables that app.json leaves out, and why.
var notInAppJSON = map[string]string{
	"PORT":                     "Heroku sets it for each dyno",
	"CLOUD_NAME":               "CLOUDINARY_URL is required on Heroku, and wins over the three separate variables",
	"API_KEY":                  "as CLOUD_NAME",
	"API_SECRET":               "as CLOUD_NAME",
	"CLOUDINARY_UPLOAD_PREFIX": "only used with the three separate variables",
	"REDIS_URL":                "the heroku-redis add-on sets it; app.json's description says so, it is optional (it costs)",
}

// herokuValues are the values app.json gives instead of the defaults, and why.
var herokuValues = map[string]string{
	"STORAGE":          "cloudinary", // a dyno's disk is wiped on every restart: never fall back to the local store
	"TRUST_PROXY":      "true",       // behind Heroku's router every connection comes from the router
	"REDIS_TLS_VERIFY": "false",      // Heroku Key-Value Store's certificates are self-signed (docs/heroku.md: Scaling out)
	"LOG_FORMAT":       "json",       // what auto picks on a dyno (no terminal), said outright
}

// TestAppJSON keeps the Heroku Button's app.json in step with envVars: each variable with its
// meaning and default, CLOUDINARY_URL required, the Go buildpack and one web dyno.
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
	var names []string
	for _, v := range envVars() {
		names = append(names, v.name)
		e, listed := app.Env[v.name]
		if why := notInAppJSON[v.name]; why != "" {
			if listed {
				t.Errorf("app.json lists %s, which it should not: %s", v.name, why)
			}
			continue
		}
		if !listed {
			t.Errorf("app.json lacks %s", v.name)
			continue
		}
		if e.Description != v.help {
			t.Errorf("app.json's description of %s = %q, want the table's %q", v.name, e.Description, v.help)
		}
		if e.Required == nil || *e.Required != (v.name == "CLOUDINARY_URL") {
			t.Errorf("app.json: %s must say \"required\": %v", v.name, v.name == "CLOUDINARY_URL")
		}
		def := v.def
		if hv, ok := herokuValues[v.name]; ok {
			def = hv
		}
		switch {
		case v.secret && (e.Value != nil || e.Generator != ""):
			t.Errorf("app.json gives the secret %s a value", v.name)
		case def != "" && (e.Value == nil || *e.Value != def):
			t.Errorf("app.json's value of %s must be %q", v.name, def)
		case def == "" && e.Value != nil && *e.Value != "":
			t.Errorf("app.json's value of %s = %q, but it has no default", v.name, *e.Value)
		}
	}
	for name := range app.Env {
		if !slices.Contains(names, name) {
			t.Errorf("app.json lists %s, which the server does not read", name)
		}
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
