package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"

	"cloudinary-upload-api/internal/localstore"
)

// The spec check. openapi.yaml must describe exactly the routes that addRoutes registers, and every
// answer that any test gets from a server (through run or newServer) must be documented for its route.
// After a full run (no -run, -skip, -short or -fuzz), every documented answer must also have been seen
// in some test. Answers are collected from the servers' request log lines, which name the mux route.

// undocumentedAnswers are answers the tests may see that openapi.yaml deliberately leaves out.
// A method or route of "*" matches any.
var undocumentedAnswers = []struct {
	method, route string
	status        int
	why           string
}{
	{"OPTIONS", "*", http.StatusNoContent, "a CORS preflight, answered by the CORS middleware for any route"},
	{"OPTIONS", "*", errTwoOrigins.status, "a preflight with two Origin headers, refused before CORS (the description says so)"},
	{"*", "POST /upload", errClientGone.status, "logged when the client went away: nobody receives it"},
	{"*", "*", http.StatusTemporaryRedirect, "the mux sends a path with . or .. segments to its cleaned form"},
}

// unseenDocumentedAnswers are documented answers that no test produces yet, with the reason. Keep it short.
var unseenDocumentedAnswers = map[answerKey]string{}

// answerKey is one kind of answer: a mux route (as in the log's "route") and a status.
type answerKey struct {
	route  string
	status int
}

// answerLog collects what the tests' servers answered. It is the one piece of state the tests share:
// every server started by any test writes into it, so that TestMain can check the whole run.
type answerLog struct {
	mu   sync.Mutex
	seen map[answerKey]map[string]bool // route+status → methods
}

var observed = &answerLog{seen: map[answerKey]map[string]bool{}}

func (l *answerLog) add(method, route string, status int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := answerKey{route, status}
	if l.seen[k] == nil {
		l.seen[k] = map[string]bool{}
	}
	l.seen[k][method] = true
}

// addLogLine notes the answer of a JSON request log line; other lines are ignored.
func (l *answerLog) addLogLine(line string) {
	var e struct {
		Msg, Method, Route string
		Status             int
	}
	if json.Unmarshal([]byte(line), &e) == nil && e.Msg == "request" {
		l.add(e.Method, e.Route, e.Status)
	}
}

func (l *answerLog) snapshot() map[answerKey][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[answerKey][]string{}
	for k, methods := range l.seen {
		for m := range methods {
			out[k] = append(out[k], m)
		}
		slices.Sort(out[k])
	}
	return out
}

// observingHandler is a slog.Handler that writes nothing but notes request lines in observed.
type observingHandler struct{}

func (observingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h observingHandler) WithAttrs([]slog.Attr) slog.Handler     { return h }
func (h observingHandler) WithGroup(string) slog.Handler          { return h }
func (observingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "request" {
		return nil
	}
	var method, route string
	var status int
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "method":
			method = a.Value.String()
		case "route":
			route = a.Value.String()
		case "status":
			status = int(a.Value.Int64())
		}
		return true
	})
	observed.add(method, route, status)
	return nil
}

// checkSpecAfter runs the tests, then checks the answers they saw against openapi.yaml.
type checkSpecAfter struct{ m *testing.M }

func (c checkSpecAfter) Run() int {
	code := c.m.Run()
	if code != 0 {
		return code
	}
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		return code // fuzzing explores inputs; the check is for the tests' own requests
	}
	full := true
	for _, name := range []string{"test.run", "test.skip"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" {
			full = false
		}
	}
	if testing.Short() {
		full = false
	}
	spec, err := loadSpec()
	if err == nil {
		err = checkAnswers(spec, observed.snapshot(), full)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "--- FAIL: the spec check (openapi_test.go)\n%v\nFAIL\n", err)
		return 1
	}
	return 0
}

// spec is the part of openapi.yaml that the checks read.
type spec struct {
	ops                map[string]map[string]map[string]any // path → method → responses
	otherMethods       map[string]map[string]any            // path → x-other-methods
	unknownPaths       map[string]any                       // x-unknown-paths
	componentResponses map[string]any
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

func loadSpec() (*spec, error) {
	b, err := os.ReadFile("openapi.yaml")
	if err != nil {
		return nil, err
	}
	var doc struct {
		Paths        map[string]map[string]any `yaml:"paths"`
		UnknownPaths map[string]any            `yaml:"x-unknown-paths"`
		Components   struct {
			Responses map[string]any `yaml:"responses"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	s := &spec{
		ops:                map[string]map[string]map[string]any{},
		otherMethods:       map[string]map[string]any{},
		unknownPaths:       doc.UnknownPaths,
		componentResponses: doc.Components.Responses,
	}
	for path, item := range doc.Paths {
		for key, v := range item {
			m, _ := v.(map[string]any)
			switch {
			case key == "x-other-methods":
				s.otherMethods[path] = m
			case slices.Contains(httpMethods, key):
				if s.ops[path] == nil {
					s.ops[path] = map[string]map[string]any{}
				}
				responses, _ := m["responses"].(map[string]any)
				s.ops[path][key] = responses
			}
		}
	}
	return s, nil
}

// specPath turns a mux pattern's path into an OpenAPI path: {name...} → {name}, a final {$} dropped.
func specPath(muxPath string) string {
	p := strings.TrimSuffix(muxPath, "{$}")
	if p == "" {
		p = "/"
	}
	return strings.ReplaceAll(p, "...}", "}")
}

// specRoute writes a mux pattern with its path in OpenAPI's syntax: "GET /{$}" → "GET /".
func specRoute(pattern string) string {
	if method, path, ok := strings.Cut(pattern, " "); ok {
		return method + " " + specPath(path)
	}
	return specPath(pattern)
}

// documented returns the statuses openapi.yaml gives for a mux route, and whether the route is in it.
func (s *spec) documented(route string) (statuses []int, ok bool) {
	method, path, hasMethod := strings.Cut(route, " ")
	var responses map[string]any
	switch {
	case !hasMethod && route == "/":
		responses = s.unknownPaths
	case !hasMethod:
		responses = s.otherMethods[specPath(route)]
	default:
		responses = s.ops[specPath(path)][strings.ToLower(method)]
	}
	if responses == nil {
		return nil, false
	}
	for code := range responses {
		n, err := strconv.Atoi(code)
		if err == nil {
			statuses = append(statuses, n)
		}
	}
	slices.Sort(statuses)
	return statuses, true
}

// checkAnswers compares the answers seen with the spec; with full, also the other way round.
func checkAnswers(s *spec, seen map[answerKey][]string, full bool) error {
	var problems []error
	documented := map[answerKey]bool{}
	for k, methods := range seen {
		k.route = specRoute(k.route)
		statuses, ok := s.documented(k.route)
		if slices.Contains(statuses, k.status) {
			documented[k] = true
			continue
		}
		for _, m := range methods {
			if !exempt(m, k.route, k.status) {
				if !ok {
					problems = append(problems, fmt.Errorf("%s got %d through route %q, which openapi.yaml does not describe", m, k.status, k.route))
				} else {
					problems = append(problems, fmt.Errorf("%s got %d through route %q: add %d to its responses in openapi.yaml", m, k.status, k.route, k.status))
				}
			}
		}
	}
	if full {
		for _, route := range specRoutes(s) {
			statuses, _ := s.documented(route)
			for _, st := range statuses {
				k := answerKey{route, st}
				if !documented[k] && unseenDocumentedAnswers[k] == "" {
					problems = append(problems, fmt.Errorf("openapi.yaml documents %d for %q, but no test got it: add a test (or a line to unseenDocumentedAnswers)", st, route))
				}
			}
		}
	}
	slices.SortFunc(problems, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(problems...)
}

func exempt(method, route string, status int) bool {
	for _, u := range undocumentedAnswers {
		if (u.method == "*" || u.method == method) && (u.route == "*" || u.route == route) && u.status == status {
			return true
		}
	}
	return false
}

// specRoutes lists the mux routes that openapi.yaml describes, in the mux's own pattern syntax.
func specRoutes(s *spec) []string {
	var routes []string
	for path, ops := range s.ops {
		for m := range ops {
			routes = append(routes, strings.ToUpper(m)+" "+path)
		}
	}
	for path := range s.otherMethods {
		routes = append(routes, path)
	}
	if s.unknownPaths != nil {
		routes = append(routes, "/")
	}
	slices.Sort(routes)
	return routes
}

// patternList is a routeMux that only lists the patterns.
type patternList []string

func (l *patternList) Handle(pattern string, _ http.Handler) { *l = append(*l, pattern) }

// TestSpecRoutesMatchServer: every route the server registers (with every feature on) is in openapi.yaml,
// and every route there is registered.
func TestSpecRoutesMatchServer(t *testing.T) {
	t.Parallel()
	s, err := loadSpec()
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.Metrics = true
	cfg.DemoPage = true
	local, err := localstore.New(t.TempDir(), "", "", nil) // the local store adds GET /files/{name}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = local.Close() })
	var got patternList
	addRoutes(&got, cfg, localStorage(local), newHealthState(), newMetrics("test"))
	var registered []string
	for _, p := range got {
		method, path, hasMethod := strings.Cut(p, " ")
		if hasMethod {
			p = method + " " + specPath(path)
		}
		registered = append(registered, p)
	}
	slices.Sort(registered)
	if want := specRoutes(s); !slices.Equal(registered, want) {
		t.Errorf("routes registered by addRoutes:\n  %s\nroutes in openapi.yaml:\n  %s",
			strings.Join(registered, "\n  "), strings.Join(want, "\n  "))
	}
	// The extensions' references must resolve, as the linter does not follow them.
	refs := map[string]bool{}
	for _, responses := range append(slices.Collect(maps.Values(s.otherMethods)), s.unknownPaths) {
		for code, r := range responses {
			if _, err := strconv.Atoi(code); err != nil {
				t.Errorf("x-other-methods/x-unknown-paths key %q is not a status", code)
			}
			m, _ := r.(map[string]any)
			ref, _ := m["$ref"].(string)
			refs[ref] = true
		}
	}
	for ref := range refs {
		name, ok := strings.CutPrefix(ref, "#/components/responses/")
		if _, found := s.componentResponses[name]; !ok || !found {
			t.Errorf("reference %q does not resolve", ref)
		}
	}
}

// TestSpecCheckCatchesDrift makes sure the check would fail on an undocumented or an unseen answer.
func TestSpecCheckCatchesDrift(t *testing.T) {
	t.Parallel()
	s, err := loadSpec()
	if err != nil {
		t.Fatal(err)
	}
	err = checkAnswers(s, map[answerKey][]string{
		{"POST /upload", 418}:  {"POST"},
		{"GET /nowhere", 200}:  {"GET"},
		{"/upload", 204}:       {"OPTIONS"}, // exempt: preflight
		{"POST /upload", 200}:  {"POST"},
		{"POST /upload", 499}:  {"POST"}, // exempt: client gone
		{"/", http.StatusOK}:   {"GET"},
		{"GET /healthz", 200}:  {"GET", "HEAD"},
		{"/healthz", 405}:      {"POST"},
		{"/", 404}:             {"GET"},
		{"GET /metrics", 401}:  {"GET"},
		{"/openapi.yaml", 405}: {"PUT"},
	}, true)
	if err == nil {
		t.Fatal("no drift found")
	}
	for _, want := range []string{
		`POST got 418 through route "POST /upload"`,
		`GET got 200 through route "GET /nowhere", which openapi.yaml does not describe`,
		`GET got 200 through route "/"`,
		`documents 413 for "POST /upload", but no test got it`,
		`documents 200 for "GET /metrics", but no test got it`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the check did not report %q:\n%v", want, err)
		}
	}
	for _, notWant := range []string{"OPTIONS got", "499", `documents 405 for "/healthz"`} { // a preflight: OPTIONS of any route
		if strings.Contains(err.Error(), notWant) {
			t.Errorf("the check reported %q, which it should accept:\n%v", notWant, err)
		}
	}
}

func TestOpenAPIServed(t *testing.T) {
	fake := newFakeCloudinary(t)
	srv := startServer(t, baseEnv(t, fake))
	client := newClient(t)
	want, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}

	resp, err := client.Get(srv.url + "/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, want) {
		t.Errorf("GET /openapi.yaml = %d, %d bytes; want 200 and openapi.yaml's %d bytes", resp.StatusCode, len(got), len(want))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/yaml" {
		t.Errorf("Content-Type = %q, want application/yaml", ct)
	}
	var doc struct {
		OpenAPI string `yaml:"openapi"`
	}
	if err := yaml.Unmarshal(got, &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Errorf("served document is not OpenAPI 3.1: %q, %v", doc.OpenAPI, err)
	}

	var e apiErrorBody
	resp = doJSON(t, client, http.MethodPut, srv.url+"/openapi.yaml", &e)
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("PUT /openapi.yaml = %d Allow %q, want 405 with Allow: GET, HEAD", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// openapi.yaml says what the server is: both stores, its own client (not the Go SDK), and every
// file field name of FILE_FIELDS in the upload form.
func TestSpecDescribesStoresAndFileFields(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Info struct {
			Summary, Description string
		}
		Paths map[string]map[string]struct {
			RequestBody struct {
				Content map[string]struct {
					Schema struct {
						Properties map[string]struct {
							Ref string `yaml:"$ref"`
						}
					}
					Encoding map[string]any
				}
			} `yaml:"requestBody"`
		}
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(doc.Info.Description, "local store") || !strings.Contains(doc.Info.Summary, "local store") {
		t.Error("openapi.yaml's info does not mention the local store")
	}
	if strings.Contains(string(b), "Go SDK") {
		t.Error("openapi.yaml speaks of the Go SDK: uploads go through the server's own client")
	}
	form := doc.Paths["/upload"]["post"].RequestBody.Content["multipart/form-data"]
	for name := range strings.SplitSeq(envDefault(t, "FILE_FIELDS"), ",") {
		if p, ok := form.Schema.Properties[name]; !ok || p.Ref != "#/components/schemas/FilePart" {
			t.Errorf("POST /upload's form has no file field %q (a FilePart)", name)
		}
		if _, ok := form.Encoding[name]; !ok {
			t.Errorf("POST /upload's form has no encoding for %q", name)
		}
	}
}
