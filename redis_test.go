package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"cloudinary-upload-api/internal/ratelimit/redistest"
)

// uploadPNG uploads a small PNG and returns the answer, its body read and closed.
func uploadPNG(t *testing.T, c *http.Client, baseURL string) (*http.Response, string) {
	t.Helper()
	ct, body := multipartBody(t, nil, "a.png", testPNG(t, 2, 2))
	resp := postForm(t, c, baseURL, ct, bytes.NewReader(body))
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// health is /healthz's answer.
func health(t *testing.T, c *http.Client, baseURL string) (int, map[string]string) {
	t.Helper()
	var got map[string]string
	resp := doJSON(t, c, http.MethodGet, baseURL+"/healthz", &got)
	return resp.StatusCode, got
}

// redisEnv is baseEnv with REDIS_URL and a small RATE_LIMIT.
func redisEnv(t *testing.T, fake *fakeCloudinary, redisURL string) map[string]string {
	env := baseEnv(t, fake)
	env["RATE_LIMIT"] = "5/min,burst=5"
	env["REDIS_URL"] = redisURL
	// Not what is tested: a generous deadline, so that a busy test machine is not an outage.
	env["REDIS_TIMEOUT"] = "5s"
	return env
}

// uploadsAcross uploads n times from c, alternating between the servers, and checks that the
// first ok are 200 and the rest 429, with the RateLimit headers of one budget with ok left.
func uploadsAcross(t *testing.T, c *http.Client, servers []*testServer, n, ok int) {
	t.Helper()
	for i := range n {
		srv := servers[i%len(servers)]
		resp, body := uploadPNG(t, c, srv.url)
		if resp.Header.Get("RateLimit-Policy") != `"default";q=5;w=60` {
			t.Errorf("upload %d: RateLimit-Policy %q", i+1, resp.Header.Get("RateLimit-Policy"))
		}
		if i < ok {
			want := fmt.Sprintf(`"default";r=%d;`, max(ok-i-1, 0))
			if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("RateLimit"), want) {
				t.Fatalf("upload %d: %d RateLimit %q, want 200 and %s…: %s", i+1, resp.StatusCode, resp.Header.Get("RateLimit"), want, body)
			}
			continue
		}
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" ||
			!strings.HasPrefix(resp.Header.Get("RateLimit"), `"default";r=0;`) {
			t.Fatalf("upload %d: %d Retry-After %q RateLimit %q, want 429: %s", i+1, resp.StatusCode,
				resp.Header.Get("Retry-After"), resp.Header.Get("RateLimit"), body)
		}
	}
}

func TestRedisSharesTheRateLimitAcrossServers(t *testing.T) {
	redis := redistest.Start(t)
	fake := newFakeCloudinary(t)
	t.Cleanup(fake.Close)
	env := redisEnv(t, fake, redis.URL())
	a, b := startServer(t, env), startServer(t, env)
	one, other := clientFrom(t, "127.0.0.2"), clientFrom(t, "127.0.0.3")
	uploadsAcross(t, one, []*testServer{a, b}, 6, 5) // three to each: the sixth is 429
	uploadsAcross(t, other, []*testServer{b}, 1, 5)
	for _, s := range []*testServer{a, b} {
		if status, h := health(t, one, s.url); status != 200 || h["redis"] != "ok" {
			t.Errorf("/healthz %d %v, want 200 with redis ok", status, h)
		}
	}
	if n := len(fake.Uploads()); n != 6 {
		t.Errorf("Cloudinary received %d uploads, want 6", n)
	}
}

func TestRedisOutageFallsBackToMemory(t *testing.T) {
	redis := redistest.Start(t)
	fake := newFakeCloudinary(t)
	t.Cleanup(fake.Close)
	env := redisEnv(t, fake, redis.URL())
	env["METRICS"] = "true"
	a, b := startServer(t, env), startServer(t, env)
	c := clientFrom(t, "127.0.0.2")
	if resp, body := uploadPNG(t, c, a.url); resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("RateLimit"), `"default";r=4;`) {
		t.Fatalf("first upload: %d %q %s", resp.StatusCode, resp.Header.Get("RateLimit"), body)
	}

	redis.Stop()
	// Each server now counts alone, in a bucket of its own that is still full: none is refused.
	for i := range 4 {
		srv := []*testServer{a, b}[i%2]
		if resp, body := uploadPNG(t, c, srv.url); resp.StatusCode != http.StatusOK {
			t.Fatalf("upload %d with Redis down: %d %s", i+1, resp.StatusCode, body)
		}
	}
	for _, s := range []*testServer{a, b} {
		if status, h := health(t, c, s.url); status != 200 || h["redis"] != "unavailable" || h["status"] != "ok" {
			t.Errorf("/healthz with Redis down: %d %v, want 200, ok, redis unavailable", status, h)
		}
		if n := s.logs.count("redis does not answer"); n != 1 {
			t.Errorf("%d warnings for one outage, want 1:\n%s", n, s.logs)
		}
	}
	metrics := metricsText(t, c, a.url) // a took two uploads: for each, its rate limit and its lease in memory
	for _, want := range []string{"redis_up 0", "redis_outages_total 1", "redis_fallbacks_total 4"} {
		if !strings.Contains(metrics, "\n"+want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	redis.Restart() // without its data: the client's shared budget is whole again
	for _, s := range []*testServer{a, b} {
		s.logs.waitFor(t, "redis answers again")
	}
	uploadsAcross(t, c, []*testServer{a, b}, 6, 5) // in memory, each would have let 3 more in
	for _, s := range []*testServer{a, b} {
		if status, h := health(t, c, s.url); status != 200 || h["redis"] != "ok" {
			t.Errorf("/healthz after Redis came back: %d %v", status, h)
		}
		if n, w := s.logs.count("redis answers again"), s.logs.count("redis does not answer"); n != 1 || w != 1 {
			t.Errorf("%d recovery lines and %d warnings, want 1 and 1", n, w)
		}
	}
}

func TestRedisDownAtStartUp(t *testing.T) {
	redis := redistest.Start(t)
	redis.Stop()
	fake := newFakeCloudinary(t)
	t.Cleanup(fake.Close)
	s := startServer(t, redisEnv(t, fake, redis.URL()))
	c := clientFrom(t, "127.0.0.2")
	if status, h := health(t, c, s.url); status != 200 || h["redis"] != "unavailable" {
		t.Errorf("/healthz: %d %v", status, h)
	}
	uploadsAcross(t, c, []*testServer{s}, 6, 5) // the memory bucket, same rate and burst
	if n := s.logs.count("redis does not answer"); n != 1 {
		t.Errorf("%d warnings, want 1", n)
	}
}

func TestRedisURLThatDoesNotParseStopsTheServer(t *testing.T) {
	for _, raw := range []string{"redis://:hunter2-secret@host:port", "http://:hunter2-secret@host:6379", "redis://:hunter2-secret@[::1"} {
		var logs bytes.Buffer
		err := run(context.Background(), nil, mapGetenv(map[string]string{
			"PORT": "0", "ENV_FILE": filepath.Join(t.TempDir(), "none"), "STORAGE": "local",
			"UPLOAD_DIR": t.TempDir(), "REDIS_URL": raw,
		}), &logs, io.Discard)
		if err == nil {
			t.Fatalf("%q: the server started", raw)
		}
		if strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "configuration: REDIS_URL: ") {
			t.Errorf("%q: error %q, want one line naming REDIS_URL", raw, err)
		}
		if strings.Contains(err.Error()+logs.String(), "hunter2") {
			t.Errorf("%q: the password reached the error or the log: %v %s", raw, err, logs.String())
		}
	}
}

func TestRedisOverTLS(t *testing.T) {
	redis := redistest.StartTLS(t)
	fake := newFakeCloudinary(t)
	t.Cleanup(fake.Close)
	c := clientFrom(t, "127.0.0.2")
	for verify, want := range map[string]string{"false": "ok", "true": "unavailable"} {
		env := redisEnv(t, fake, redis.URL())
		env["REDIS_TLS_VERIFY"] = verify
		s := startServer(t, env)
		if status, h := health(t, c, s.url); status != 200 || h["redis"] != want {
			t.Errorf("REDIS_TLS_VERIFY=%s: /healthz %d %v, want redis %s", verify, status, h, want)
		}
		if resp, body := uploadPNG(t, c, s.url); resp.StatusCode != 200 {
			t.Errorf("REDIS_TLS_VERIFY=%s: upload %d %s", verify, resp.StatusCode, body)
		}
		s.stop(t)
	}
}

func TestHealthzWithoutRedisSaysNothingOfIt(t *testing.T) {
	fake := newFakeCloudinary(t)
	t.Cleanup(fake.Close)
	s := startServer(t, baseEnv(t, fake))
	if _, h := health(t, newClient(t), s.url); h["status"] != "ok" || len(h) != 1 {
		t.Errorf("/healthz without REDIS_URL: %v", h)
	}
}

// TestRedisPasswordNeverLogged: the warnings of a Redis that refuses the password, or is down,
// name the problem, never the password.
func TestRedisPasswordNeverLogged(t *testing.T) {
	redis := redistest.Start(t, "--requirepass", "another-password")
	fake := newFakeCloudinary(t)
	t.Cleanup(fake.Close)
	withPassword := strings.Replace(redis.URL(), "redis://", "redis://:hunter2-secret@", 1)
	c := clientFrom(t, "127.0.0.2")
	for _, down := range []bool{false, true} {
		if down {
			redis.Stop()
		}
		s := startServer(t, redisEnv(t, fake, withPassword))
		if status, h := health(t, c, s.url); status != 200 || h["redis"] != "unavailable" {
			t.Errorf("down %v: /healthz %d %v", down, status, h)
		}
		if resp, body := uploadPNG(t, c, s.url); resp.StatusCode != 200 {
			t.Errorf("down %v: upload %d %s", down, resp.StatusCode, body)
		}
		s.stop(t)
		if n := s.logs.count("redis does not answer"); n != 1 {
			t.Errorf("down %v: %d warnings, want 1", down, n)
		}
		if strings.Contains(s.logs.String(), "hunter2") {
			t.Errorf("down %v: the password reached the log:\n%s", down, s.logs)
		}
	}
}

// TestRateLimitHeadersReachBrowsers: /sign carries the headers too, and CORS exposes them.
func TestRateLimitHeadersReachBrowsers(t *testing.T) {
	fake := newFakeCloudinary(t)
	t.Cleanup(fake.Close)
	env := baseEnv(t, fake)
	env["RATE_LIMIT"] = "30/min,burst=10"
	s := startServer(t, env)
	req, err := http.NewRequest(http.MethodPost, s.url+"/sign", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", "https://app.example")
	resp, err := newClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("RateLimit") != `"default";r=9;t=2` || resp.Header.Get("RateLimit-Policy") != `"default";q=10;w=20` {
		t.Errorf("POST /sign: %d RateLimit %q Policy %q", resp.StatusCode, resp.Header.Get("RateLimit"), resp.Header.Get("RateLimit-Policy"))
	}
	exposed := strings.ToLower(strings.Join(resp.Header.Values("Access-Control-Expose-Headers"), ","))
	for _, h := range []string{"ratelimit", "ratelimit-policy", "retry-after"} {
		if !strings.Contains(","+strings.ReplaceAll(exposed, " ", "")+",", ","+h+",") {
			t.Errorf("Access-Control-Expose-Headers %q lacks %s", exposed, h)
		}
	}
}

func TestRedisVariablesAreChecked(t *testing.T) {
	t.Parallel()
	_, err := loadConfig(mapGetenv(map[string]string{
		"CLOUD_NAME": "c", "API_KEY": "k", "API_SECRET": "s",
		"REDIS_URL": "redis://localhost:6379", "REDIS_TLS_VERIFY": "maybe", "REDIS_TIMEOUT": "0s",
	}))
	for _, name := range []string{"REDIS_TLS_VERIFY", "REDIS_TIMEOUT"} {
		if err == nil || !strings.Contains(err.Error(), name+"=") {
			t.Errorf("err %v does not name %s", err, name)
		}
	}
	cfg, err := loadConfig(mapGetenv(map[string]string{"CLOUD_NAME": "c", "API_KEY": "k", "API_SECRET": "s"}))
	if err != nil || cfg.RedisURL != "" || !cfg.RedisTLSVerify || cfg.RedisTimeout.String() != "100ms" {
		t.Errorf("defaults: %q verify %v timeout %v (%v)", cfg.RedisURL, cfg.RedisTLSVerify, cfg.RedisTimeout, err)
	}
}
