package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"cloudinary-upload-api/internal/ratelimit"
)

// fakeClock is a clock a test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestRateLimiterBurstThenRetryAfter(t *testing.T) {
	t.Parallel()
	spec, err := ratelimit.Parse("6/min,burst=3")
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := newRateLimiter(spec, proxyTrust{}, clock.now, nil)
	h := limitRate(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	do := func(remote string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/upload", nil)
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	// A token every 10 s, 3 at once: 3 requests in any 30 s from a full bucket.
	for i := range 3 {
		rec := do("198.51.100.7:1000")
		if rec.Code != http.StatusNoContent {
			t.Fatalf("request %d of the burst: %d", i+1, rec.Code)
		}
		want := fmt.Sprintf(`"default";r=%d;t=%d`, 2-i, 10*(i+1))
		if got := rec.Header().Get("RateLimit"); got != want || rec.Header().Get("RateLimit-Policy") != `"default";q=3;w=30` {
			t.Errorf("request %d: RateLimit %q Policy %q, want %q and \"default\";q=3;w=30", i+1, got, rec.Header().Get("RateLimit-Policy"), want)
		}
	}
	rec := do("198.51.100.7:2000") // another port, same client
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "10" {
		t.Fatalf("after the burst: %d Retry-After %q, want 429 and 10 s", rec.Code, rec.Header().Get("Retry-After"))
	}
	if got := rec.Header().Get("RateLimit"); got != `"default";r=0;t=30` || rec.Header().Get("RateLimit-Policy") != `"default";q=3;w=30` {
		t.Errorf("the 429: RateLimit %q Policy %q", got, rec.Header().Get("RateLimit-Policy"))
	}
	if !strings.Contains(rec.Body.String(), "too many requests") {
		t.Errorf("body %s", rec.Body)
	}
	if rec := do("198.51.100.8:1000"); rec.Code != http.StatusNoContent {
		t.Errorf("another client was limited: %d", rec.Code)
	}
	clock.t = clock.t.Add(10 * time.Second)
	if rec := do("198.51.100.7:1000"); rec.Code != http.StatusNoContent {
		t.Errorf("after Retry-After: %d", rec.Code)
	}
	// IPv6 clients are one client per /64.
	for i := range 4 {
		rec = do(fmt.Sprintf("[2001:db8:1:2::%x]:443", i+1))
	}
	if rec.Code != http.StatusTooManyRequests {
		t.Errorf("a /64 rotating addresses dodged the limit: %d", rec.Code)
	}
}

func TestClientKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, remote, trust string
		headers             [][2]string
		want                string
	}{
		{"remote_addr", "203.0.113.9:5555", "false", nil, "203.0.113.9"},
		{"xff_ignored_without_trust", "203.0.113.9:5555", "false", [][2]string{{"X-Forwarded-For", "1.2.3.4"}}, "203.0.113.9"},
		{"rightmost_with_trust", "10.1.1.1:5555", "true", [][2]string{{"X-Forwarded-For", "1.2.3.4, 198.51.100.20"}}, "198.51.100.20"},
		{"last_header_line_wins", "10.1.1.1:5555", "heroku", [][2]string{{"X-Forwarded-For", "1.2.3.4"}, {"X-Forwarded-For", "5.6.7.8, 198.51.100.21"}}, "198.51.100.21"},
		{"garbage_falls_back_to_remote", "10.1.1.1:5555", "true", [][2]string{{"X-Forwarded-For", "1.2.3.4, not-an-ip"}}, "10.1.1.1"},
		{"xff_2_second_from_right", "10.1.1.1:5555", "xff:2", [][2]string{{"X-Forwarded-For", "6.6.6.6, 198.51.100.22, 35.191.0.1"}}, "198.51.100.22"},
		{"xff_2_across_lines", "10.1.1.1:5555", "xff:2", [][2]string{{"X-Forwarded-For", "6.6.6.6, 198.51.100.23"}, {"X-Forwarded-For", "35.191.0.1"}}, "198.51.100.23"},
		{"xff_2_too_few_entries", "10.1.1.1:5555", "xff:2", [][2]string{{"X-Forwarded-For", "198.51.100.24"}}, "10.1.1.1"},
		{"xff_2_empty_entry", "10.1.1.1:5555", "xff:2", [][2]string{{"X-Forwarded-For", ", 35.191.0.1"}}, "10.1.1.1"},
		{"fly", "172.16.0.2:5555", "fly", [][2]string{{"Fly-Client-IP", "198.51.100.25"}, {"X-Forwarded-For", "1.2.3.4"}}, "198.51.100.25"},
		{"fly_missing", "172.16.0.2:5555", "fly", [][2]string{{"X-Forwarded-For", "1.2.3.4"}, {"CF-Connecting-IP", "5.6.7.8"}}, "172.16.0.2"},
		{"fly_two_addresses", "172.16.0.2:5555", "fly", [][2]string{{"Fly-Client-IP", "1.2.3.4, 5.6.7.8"}}, "172.16.0.2"},
		{"cloudflare", "173.245.48.1:5555", "cloudflare", [][2]string{{"CF-Connecting-IP", "2001:db8:1:2:3:4:5:6"}, {"Fly-Client-IP", "1.2.3.4"}}, "2001:db8:1:2::/64"},
		{"ipv4_mapped_unmapped", "[::ffff:192.0.2.1]:80", "false", nil, "192.0.2.1"},
		{"ipv6_by_64", "[2001:db8:aa:bb:1:2:3:4]:80", "false", nil, "2001:db8:aa:bb::/64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			trust, err := parseProxyTrust(tc.trust)
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(http.MethodPost, "/upload", nil)
			req.RemoteAddr = tc.remote
			for _, h := range tc.headers {
				req.Header.Add(h[0], h[1])
			}
			if got := clientKeyOf(req, trust); got != tc.want {
				t.Errorf("key %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseProxyTrust(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"false": "false", "0": "false", "off": "false",
		"true": "heroku", "1": "heroku", "Heroku": "heroku", "fly": "fly", "CloudFlare": "cloudflare",
		"xff:1": "xff:1", "xff:2": "xff:2", " XFF:3 ": "xff:3",
	} {
		got, err := parseProxyTrust(in)
		if err != nil || got.String() != want {
			t.Errorf("TRUST_PROXY=%q: %v %v, want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"maybe", "xff", "xff:0", "xff:-1", "xff:two", "xff:11", "Fly-Client-IP", "x-forwarded-for"} {
		_, err := parseProxyTrust(in)
		if err == nil || !strings.Contains(err.Error(), "TRUST_PROXY") || !strings.Contains(err.Error(), "cloudflare (CF-Connecting-IP)") {
			t.Errorf("TRUST_PROXY=%q: %v, want an error naming the choices", in, err)
		}
	}
}
