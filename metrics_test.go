package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"cloudinary-upload-api/internal/cloudinary"
)

func TestMetrics(t *testing.T) {
	const token = "metrics-t0ken-0123456789"
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	env["METRICS"] = "true"
	env["METRICS_TOKEN"] = token
	srv := startServer(t, env)
	client := newClient(t)

	img := testPNG(t, 10, 10)
	upload := func(file []byte) int {
		ct, body := multipartBody(t, nil, "a.png", file)
		resp := postForm(t, client, srv.url, ct, bytes.NewReader(body))
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := upload(img); got != http.StatusOK {
		t.Fatalf("upload: %d", got)
	}
	if got := upload([]byte("plain text")); got != http.StatusUnsupportedMediaType {
		t.Fatalf("text upload: %d", got)
	}
	fake.SetBehaviour(fakeBehaviour{Status: 500, Body: `{"error":{"message":"General Error"}}`})
	if got := upload(img); got != http.StatusBadGateway {
		t.Fatalf("upload to a failing Cloudinary: %d", got)
	}

	get := func(auth string) (*http.Response, string) {
		req, err := http.NewRequest(http.MethodGet, srv.url+"/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}
	for _, auth := range []string{"", "Bearer wrong", token, "Basic " + token} {
		resp, body := get(auth)
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != `Bearer realm="metrics"` {
			t.Errorf("GET /metrics with Authorization %q = %d, want 401 with WWW-Authenticate", auth, resp.StatusCode)
		}
		if !strings.Contains(body, "METRICS_TOKEN") || strings.Contains(body, token) {
			t.Errorf("401 body %q", body)
		}
	}
	for _, auth := range []string{"bearer " + token, "BEARER " + token} { // the scheme is case-insensitive (RFC 6750 §2.1)
		if resp, _ := get(auth); resp.StatusCode != http.StatusOK {
			t.Errorf("GET /metrics with Authorization %q = %d, want 200", auth, resp.StatusCode)
		}
	}
	resp, body := get("Bearer " + token)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics = %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`uploads_total{outcome="ok",store="cloudinary"} 1`,
		`uploads_total{outcome="rejected",store="cloudinary"} 1`,
		`uploads_total{outcome="failed",store="cloudinary"} 1`,
		`uploads_total{outcome="aborted",store="cloudinary"} 0`,
		"upload_bytes_total " + strconv.Itoa(len(img)),
		`upload_duration_seconds_count{outcome="ok"} 1`,
		`upload_duration_seconds_bucket{outcome="failed",le="+Inf"} 1`,
		"uploads_in_flight 0",
		`upstream_errors_total{kind="server_error"} 1`,
		`upstream_errors_total{kind="credentials"} 0`,
		"go_goroutines ",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(body, "\n"+want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(srv.logs.String(), token) {
		t.Errorf("METRICS_TOKEN is in the logs")
	}

	var e apiErrorBody
	resp = doJSON(t, client, http.MethodPost, srv.url+"/metrics", &e)
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics = %d, want 405", resp.StatusCode)
	}
}

// httptestGet sends GET path to h.
func httptestGet(h http.Handler, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

func TestMetricsOffByDefault(t *testing.T) {
	fake := newFakeCloudinary(t)
	srv := startServer(t, baseEnv(t, fake))
	resp, err := newClient(t).Get(srv.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var e apiErrorBody
	decodeBody(t, resp, &e)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /metrics without METRICS=true = %d, want 404", resp.StatusCode)
	}
}

func TestMetricsOpenWithoutToken(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Metrics = true
	h := newServer(discardLogger(), cfg, testStorage(acceptAllUploader{}), newHealthState())
	rec := httptestGet(h, "/metrics")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `uploads_total{outcome="ok",store="other"} 0`) {
		t.Errorf("GET /metrics without a token = %d:\n%.300s", rec.Code, rec.Body.String())
	}
}

func TestMetricsConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env     map[string]string
		wantErr string
	}{
		{map[string]string{"METRICS": "maybe"}, "METRICS"},
		{map[string]string{"METRICS_TOKEN": "x"}, "METRICS_TOKEN is set but METRICS is not true"},
		{map[string]string{"METRICS": "true", "METRICS_TOKEN": "x1"}, "METRICS_TOKEN must be at least 16 characters"}, // found in 610 requests
		{map[string]string{"METRICS": "true", "METRICS_TOKEN": "metrics token with spaces"}, "METRICS_TOKEN must be at least 16 characters"},
		{map[string]string{"METRICS": "true", "METRICS_TOKEN": "0123456789abcdef"}, ""},
	} {
		env := map[string]string{"CLOUD_NAME": "c", "API_KEY": "k", "API_SECRET": "s"}
		for k, v := range tc.env {
			env[k] = v
		}
		_, err := loadConfig(mapGetenv(env))
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%v: err = %v, want %q", tc.env, err, tc.wantErr)
		}
		if tok := tc.env["METRICS_TOKEN"]; err != nil && len(tok) > 8 && strings.Contains(err.Error(), tok) {
			t.Errorf("the error quotes METRICS_TOKEN: %v", err)
		}
	}
}

func TestUpstreamErrorKind(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("%w: 401", cloudinary.ErrCredentials), "credentials"},
		{cloudinary.ErrRateLimited, "rate_limited"},
		{cloudinary.ErrUnreachable, "unreachable"},
		{cloudinary.ErrNotJSON, "bad_answer"},
		{cloudinary.ErrFailed, "server_error"},
		{fmt.Errorf("%w: %w: %w", cloudinary.ErrTimeout, cloudinary.ErrStalled, cloudinary.ErrUnreachable), "timeout"},
		{&cloudinary.RejectedError{Status: 400, Message: "Invalid image file"}, "rejected"},
		{errTooLarge(1), "rejected"},
		{io.ErrUnexpectedEOF, "other"},
	} {
		if got := upstreamErrorKind(t.Context(), tc.err, false); got != tc.want {
			t.Errorf("upstreamErrorKind(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
	if got := upstreamErrorKind(t.Context(), cloudinary.ErrUnreachable, true); got != "" {
		t.Errorf("a failed client body counted as an upstream error %q", got)
	}
}
