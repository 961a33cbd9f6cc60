package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRequestID(t *testing.T) {
	t.Parallel()
	h := newServer(discardLogger(), testConfig(), testStorage(acceptAllUploader{}), newHealthState())
	herokuID := "f9ed4675-f1c6-4d8b-a1e2-2a1e7d3f6c0a"
	for _, tc := range []struct {
		name, sent string
		reused     bool
	}{
		{"heroku_id_reused", herokuID, true},
		{"missing_id_made", "", false},
		{"hostile_id_replaced", "abc\"><script>", false},
		{"short_id_replaced", "abc", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/healthz", nil)
			if tc.sent != "" {
				req.Header.Set("X-Request-Id", tc.sent)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			got := rec.Header().Get("X-Request-Id")
			if tc.reused && got != tc.sent {
				t.Errorf("X-Request-Id = %q, want the router's %q", got, tc.sent)
			}
			if !tc.reused && (got == tc.sent || !validRequestID(got)) {
				t.Errorf("X-Request-Id = %q, want a fresh valid id", got)
			}
		})
	}
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	health := newHealthState()
	h := newServer(discardLogger(), testConfig(), testStorage(acceptAllUploader{}), health)
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		return rec.Code, strings.TrimSpace(rec.Body.String())
	}
	if code, body := get(); code != http.StatusOK || body != `{"status":"ok"}` {
		t.Errorf("healthz = %d %s, want 200 {\"status\":\"ok\"}", code, body)
	}
	health.drain()
	if code, _ := get(); code != http.StatusServiceUnavailable {
		t.Errorf("healthz while draining = %d, want 503", code)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/healthz", nil))
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /healthz = %d Allow %q, want 405 with Allow", rec.Code, rec.Header().Get("Allow"))
	}
}

func TestCORS(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, allowed, origin string
		wantAllowed           bool
	}{
		{"any_origin_by_default", "", "https://app.example", true},
		{"listed_origin", "https://app.example,https://other.example", "https://app.example", true},
		{"unlisted_origin", "https://app.example", "https://evil.example", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"CLOUD_NAME": "c", "API_KEY": "k", "API_SECRET": "s"}
			if tc.allowed != "" {
				env["ALLOWED_ORIGINS"] = tc.allowed
			}
			cfg, err := loadConfig(mapGetenv(env))
			if err != nil {
				t.Fatal(err)
			}
			h := newServer(discardLogger(), cfg, testStorage(acceptAllUploader{}), newHealthState())

			req := httptest.NewRequest(http.MethodOptions, "/upload", nil)
			req.Header.Set("Origin", tc.origin)
			req.Header.Set("Access-Control-Request-Method", "POST")
			req.Header.Set("Access-Control-Request-Headers", "authorization,content-type") // sorted, as browsers send it
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			allowOrigin := rec.Header().Get("Access-Control-Allow-Origin")
			if !tc.wantAllowed {
				if allowOrigin != "" {
					t.Errorf("preflight from %s allowed: %q", tc.origin, allowOrigin)
				}
				return
			}
			if rec.Code != http.StatusNoContent {
				t.Errorf("preflight status %d, want 204", rec.Code)
			}
			if allowOrigin != "*" && allowOrigin != tc.origin {
				t.Errorf("Access-Control-Allow-Origin = %q", allowOrigin)
			}
			if got := rec.Header().Get("Access-Control-Allow-Methods"); got != "POST" {
				t.Errorf("Access-Control-Allow-Methods = %q, want POST", got)
			}
			if got := strings.ToLower(rec.Header().Get("Access-Control-Allow-Headers")); got != "authorization,content-type" {
				t.Errorf("Access-Control-Allow-Headers = %q", got)
			}

			// The actual request exposes the request ID to the page.
			req = httptest.NewRequest(http.MethodGet, "/healthz", nil)
			req.Header.Set("Origin", tc.origin)
			rec = httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if got := rec.Header().Get("Access-Control-Expose-Headers"); !strings.Contains(got, "X-Request-Id") {
				t.Errorf("Access-Control-Expose-Headers = %q, want X-Request-Id", got)
			}
		})
	}
}

func TestCORSAllowsUploadLibraryHeaders(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(mapGetenv(map[string]string{"CLOUD_NAME": "c", "API_KEY": "k", "API_SECRET": "s", "ALLOWED_ORIGINS": "https://app.example"}))
	if err != nil {
		t.Fatal(err)
	}
	h := newServer(discardLogger(), cfg, testStorage(acceptAllUploader{}), newHealthState())
	for _, asked := range []string{
		"cache-control,x-requested-with", // Dropzone's preflight, as Chromium sends it: lower case, sorted
		"x-requested-with",               // blueimp's
		"authorization,cache-control,content-type,x-request-id,x-requested-with",
	} {
		req := httptest.NewRequest(http.MethodOptions, "/upload", nil)
		req.Header.Set("Origin", "https://app.example")
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", asked)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusNoContent || rec.Header().Get("Access-Control-Allow-Origin") != "https://app.example" ||
			strings.ToLower(rec.Header().Get("Access-Control-Allow-Headers")) != asked {
			t.Errorf("preflight asking for %s: %d, allow-origin %q, allow-headers %q", asked, rec.Code,
				rec.Header().Get("Access-Control-Allow-Origin"), rec.Header().Get("Access-Control-Allow-Headers"))
		}
	}
}
