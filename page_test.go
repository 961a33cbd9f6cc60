package main

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestUploadPage(t *testing.T) {
	t.Parallel()
	h := newServer(discardLogger(), testConfig(), testStorage(acceptAllUploader{}), newHealthState())
	rec := serve(h, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	page := rec.Body.String()
	csp := rec.Header().Get("Content-Security-Policy")
	for _, tag := range []string{"script", "style"} {
		m := regexp.MustCompile(`(?s)<`+tag+`>(.*?)</`+tag+`>`).FindAllStringSubmatch(page, -1)
		if len(m) != 1 {
			t.Fatalf("page has %d <%s> elements, want 1", len(m), tag)
		}
		if want := tag + "-src '" + cspHash([]byte(m[0][1])) + "'"; !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	for _, want := range []string{"default-src 'none'", "connect-src 'self'", "img-src 'self' https://res.cloudinary.com data: blob:", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if regexp.MustCompile(`(?i)\son[a-z]+=|<script[^>]*src=|https?://`).MatchString(strings.ReplaceAll(page, "http://www.w3.org/2000/svg", "")) {
		t.Errorf("page has an inline handler or an external resource")
	}
	if r := serve(h, httptest.NewRequest(http.MethodGet, "/index.html", nil)); r.Code != http.StatusNotFound {
		t.Errorf("GET /index.html: %d, want 404", r.Code)
	}

	cfg := testConfig()
	cfg.DemoPage = false
	off := newServer(discardLogger(), cfg, testStorage(acceptAllUploader{}), newHealthState())
	if r := serve(off, httptest.NewRequest(http.MethodGet, "/", nil)); r.Code != http.StatusNotFound {
		t.Errorf("DEMO_PAGE=false: GET / is %d, want 404", r.Code)
	}

	cfg = testConfig()
	cfg.PublicURL = "https://uploads.example.com/base"
	withPublic := newServer(discardLogger(), cfg, testStorage(acceptAllUploader{}), newHealthState())
	csp = serve(withPublic, httptest.NewRequest(http.MethodGet, "/", nil)).Header().Get("Content-Security-Policy")
	if want := "img-src 'self' https://uploads.example.com https://res.cloudinary.com"; !strings.Contains(csp, want) {
		t.Errorf("with PUBLIC_URL, CSP %q lacks %q", csp, want)
	}
}
