package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	envconfig "cloudinary-upload-api/internal/config"
	"cloudinary-upload-api/internal/formstream"
	"cloudinary-upload-api/internal/store"
)

func tokenConfig(t testing.TB, tokens string) config {
	t.Helper()
	cfg, err := loadConfig(mapGetenv(map[string]string{"CLOUD_NAME": "c", "API_KEY": "k", "API_SECRET": "s", "RATE_LIMIT": "off", "UPLOAD_TOKENS": tokens}))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestUploadTokens(t *testing.T) {
	t.Parallel()
	const tokA, tokB = "aaaaaaaaaaaaaaaa-first", "bbbbbbbbbbbbbbbb-second"
	h := newServer(discardLogger(), tokenConfig(t, tokA+" , "+tokB), testStorage(acceptAllUploader{}), newHealthState())
	ct, body := multipartBody(t, nil, "a.png", testPNG(t, 2, 2))
	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"first_token", "Bearer " + tokA, 200},
		{"second_token", "Bearer " + tokB, 200},
		{"scheme_case_insensitive", "bearer " + tokA, 200},
		{"no_header", "", 401},
		{"wrong_token", "Bearer " + tokA + "x", 401},
		{"prefix_of_token", "Bearer " + tokA[:16], 401},
		{"both_tokens", "Bearer " + tokA + "," + tokB, 401},
		{"basic_scheme", "Basic " + tokA, 401},
		{"empty_bearer", "Bearer ", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/upload", bytes.NewReader(body))
			req.Header.Set("Content-Type", ct)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.want, rec.Body)
			}
			if tc.want == 401 && (rec.Header().Get("WWW-Authenticate") == "" || !strings.Contains(rec.Body.String(), `"message"`)) {
				t.Errorf("401 without WWW-Authenticate or JSON error: %v %s", rec.Header(), rec.Body)
			}
		})
	}

	// Browsers send preflights without Authorization: they must pass.
	req := httptest.NewRequest(http.MethodOptions, "/upload", nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "authorization")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNoContent || rec.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("preflight: %d %v, want 204 with security headers", rec.Code, rec.Header())
	}
	// /healthz needs no token.
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != 200 {
		t.Errorf("/healthz = %d", rec.Code)
	}
}

func TestUploadTokensConfig(t *testing.T) {
	t.Parallel()
	const short = "short-tok"
	_, err := loadConfig(mapGetenv(map[string]string{"UPLOAD_TOKENS": "aaaaaaaaaaaaaaaaaaaa," + short}))
	if err == nil || !strings.Contains(err.Error(), "UPLOAD_TOKENS: token 2 of 2") {
		t.Fatalf("err = %v, want token 2 named by position", err)
	}
	if strings.Contains(err.Error(), short) {
		t.Errorf("the error quotes a token: %v", err)
	}
	if _, err := loadConfig(mapGetenv(map[string]string{"UPLOAD_TOKENS": "has space in the token value"})); err == nil {
		t.Errorf("a token with spaces accepted")
	}
	for _, v := range envconfig.Vars() {
		if v.Name == "UPLOAD_TOKENS" && !v.Secret {
			t.Errorf("UPLOAD_TOKENS is not marked secret")
		}
	}
}

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{"127.0.0.1:80": true, "[::1]:80": true, "[::]:80": false, "0.0.0.0:80": false, "192.0.2.1:80": false} {
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := isLoopback(a); got != want {
			t.Errorf("isLoopback(%s) = %v", addr, got)
		}
	}
}

func TestOpenServerWarnsAtStartup(t *testing.T) {
	fake := newFakeCloudinary(t)
	srv := startServer(t, baseEnv(t, fake)) // listens on all interfaces, no tokens
	srv.stop(t)
	if !strings.Contains(srv.logs.String(), "UPLOAD_TOKENS is not set") {
		t.Errorf("no start-up warning for an open server on all interfaces")
	}
}

func FuzzBearerToken(f *testing.F) {
	const tok = "fuzz-token-0123456789"
	for _, s := range []string{"Bearer " + tok, "bearer  " + tok, "Bearer", "Basic x", "Bearer \x00", "Bearer " + tok + " extra", ""} {
		f.Add(s)
	}
	ts, err := parseTokens(tok)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, header string) {
		got, ok := bearerToken(header)
		if !ok {
			if got != "" {
				t.Fatalf("refused header gave token %q", got)
			}
			return
		}
		if got == "" || !validTokenChars(got) || strings.ContainsAny(got, " \t\r\n") {
			t.Fatalf("accepted token %q from %q", got, header)
		}
		if ts.valid(got) != (got == tok) {
			t.Fatalf("valid(%q) wrong", got)
		}
	})
}

var publicIDShape = regexp.MustCompile(`^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$`)

func FuzzFormFields(f *testing.F) {
	f.Add("public_id", "cats/tom", "tags", "a, b ,c")
	f.Add("tags", strings.Repeat("x,", 51), "public_id", "../x")
	f.Add("public_id", "a//b", "public_id", "again")
	f.Add("folder", "x", "", "")
	f.Add("tags", "\x00bad", "tags", "\xff")
	lim := testConfig().uploadLimits()
	f.Fuzz(func(t *testing.T, name1, value1, name2, value2 string) {
		if err := validatePublicID(value1); err == nil {
			dots := strings.Contains("/"+value1+"/", "/../") || strings.Contains("/"+value1+"/", "/./")
			if len(value1) > maxPublicIDLen || !publicIDShape.MatchString(value1) || dots {
				t.Fatalf("validatePublicID accepted %q", value1)
			}
		}
		if tags, err := parseTags(value2); err == nil {
			if len(tags) > maxTags {
				t.Fatalf("parseTags gave %d tags", len(tags))
			}
			for _, tag := range tags {
				if tag == "" || strings.Contains(tag, ",") || !utf8.ValidString(tag) || len(tag) > maxTagLen {
					t.Fatalf("parseTags gave tag %q", tag)
				}
			}
		}
		ct, body := multipartBody(t, [][2]string{{name1, value1}, {name2, value2}}, "a.png", []byte("\x89PNG\r\n\x1a\n"))
		p, file, err := readFieldsForTest(bytes.NewReader(body), formBoundary(t, ct), lim)
		if err != nil {
			var api apiError
			if !errors.As(err, &api) || api.status != http.StatusBadRequest {
				t.Fatalf("error %v is not a 400 for the client", err)
			}
			return
		}
		if file == nil {
			t.Fatal("no file part and no error")
		}
		if p.PublicID != "" && validatePublicID(p.PublicID) != nil {
			t.Fatalf("accepted public_id %q", p.PublicID)
		}
		if len(p.Tags) > maxTags {
			t.Fatalf("accepted %d tags", len(p.Tags))
		}
	})
}

func TestLoadConfigAccessVariables(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(mapGetenv(map[string]string{"CLOUD_NAME": "c", "API_KEY": "k", "API_SECRET": "s"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.uploadTokens != nil || cfg.trustProxy.on() || cfg.RateLimit.Burst != 20 || cfg.ReadHeaderTimeout.String() != "10s" ||
		strings.Join(cfg.signableParams, ",") != "public_id,tags,context" {
		t.Errorf("defaults: tokens %v trust %v rate %+v header timeout %v signable %v", cfg.uploadTokens, cfg.trustProxy, cfg.RateLimit, cfg.ReadHeaderTimeout, cfg.signableParams)
	}
	_, err = loadConfig(mapGetenv(map[string]string{
		"RATE_LIMIT": "fast", "TRUST_PROXY": "maybe", "SIGNABLE_PARAMS": "eval", "READ_HEADER_TIMEOUT": "-1s",
	}))
	for _, name := range []string{"RATE_LIMIT", "TRUST_PROXY", "SIGNABLE_PARAMS", "READ_HEADER_TIMEOUT"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

// readFieldsForTest reads the text fields before the first file part as serveUpload does.
func readFieldsForTest(r io.Reader, boundary string, lim uploadLimits) (store.Params, *formstream.Part, error) {
	form := formstream.NewReader(r, boundary, nil, formstream.Limits{NonFileBytes: formOverhead, HeaderBytes: formOverhead})
	fields := formFields{seen: map[string]bool{}}
	for {
		part, err := form.NextPart()
		if errors.Is(err, io.EOF) {
			return fields.p, nil, errNoFilePart(lim.fileFields)
		}
		if err != nil {
			return fields.p, nil, bodyError(err, lim)
		}
		if _, ok := part.FileName(); ok {
			return fields.p, part, nil
		}
		if err := fields.read(part, part.Name(), lim); err != nil {
			return fields.p, nil, err
		}
	}
}
