package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestParseRateLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in        string
		perSecond float64
		burst     int
		bad       bool
	}{
		{in: "30/min", perSecond: 0.5, burst: 30},
		{in: "60/min,burst=20", perSecond: 1, burst: 20},
		{in: " 5 / s , burst = 1 ", perSecond: 5, burst: 1},
		{in: "3600/hour", perSecond: 1, burst: 3600},
		{in: "off"},
		{in: "30", bad: true},
		{in: "0/min", bad: true},
		{in: "30/day", bad: true},
		{in: "30/min,burst=0", bad: true},
		{in: "30/min,bust=3", bad: true},
		{in: "-1/s", bad: true},
	} {
		spec, err := parseRateLimit(tc.in)
		if tc.bad {
			if err == nil || !strings.Contains(err.Error(), "RATE_LIMIT") {
				t.Errorf("%q: err = %v, want a RATE_LIMIT error", tc.in, err)
			}
			continue
		}
		if err != nil || float64(spec.perSecond) != tc.perSecond || spec.burst != tc.burst {
			t.Errorf("%q = %v/s burst %d (%v), want %v/s burst %d", tc.in, spec.perSecond, spec.burst, err, tc.perSecond, tc.burst)
		}
	}
}

// fakeClock is a clock a test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestRateLimiterBurstThenRetryAfter(t *testing.T) {
	t.Parallel()
	spec, err := parseRateLimit("6/min,burst=3")
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := newRateLimiter(spec, false, clock.now)
	h := limitRate(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	do := func(remote string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/upload", nil)
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	for i := range 3 {
		if rec := do("198.51.100.7:1000"); rec.Code != http.StatusNoContent {
			t.Fatalf("request %d of the burst: %d", i+1, rec.Code)
		}
	}
	rec := do("198.51.100.7:2000") // another port, same client
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "10" {
		t.Fatalf("after the burst: %d Retry-After %q, want 429 and 10 s", rec.Code, rec.Header().Get("Retry-After"))
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

func TestRateLimiterEvictsIdleClients(t *testing.T) {
	t.Parallel()
	spec, err := parseRateLimit("60/min,burst=20") // a bucket refills in 20 s
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := newRateLimiter(spec, false, clock.now)
	for i := range 5000 {
		l.reserve(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	if got := l.size(); got != 5000 {
		t.Fatalf("size %d, want 5000", got)
	}
	clock.t = clock.t.Add(19 * time.Second)
	l.reserve("10.9.9.9")
	if got := l.size(); got != 5001 {
		t.Errorf("size %d: a bucket not yet full was dropped", got)
	}
	clock.t = clock.t.Add(2 * time.Second)
	l.reserve("10.9.9.9")
	if got := l.size(); got != 1 {
		t.Errorf("size %d after every other client was idle for a whole refill, want 1", got)
	}
}

func TestRateLimiterMemoryIsBounded(t *testing.T) {
	spec, err := parseRateLimit("1/hour")
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := newRateLimiter(spec, false, clock.now)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range maxClients + 1000 {
		if wait := l.reserve(fmt.Sprintf("k%d", i)); i < maxClients && wait != 0 {
			t.Fatalf("client %d limited on its first request", i)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if got := l.size(); got != maxClients {
		t.Errorf("size %d, want the cap %d", got, maxClients)
	}
	// Past the cap, new clients share one bucket: the second of them is already limited.
	if wait := l.reserve("one-more"); wait == 0 {
		t.Errorf("a client past the cap got its own bucket")
	}
	perClient := (int64(after.HeapInuse) - int64(before.HeapInuse)) / maxClients
	t.Logf("about %d bytes of heap per client", perClient)
	if perClient > 1024 {
		t.Errorf("%d bytes per client, want at most 1 KiB", perClient)
	}
}

func TestClientKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, remote string
		xff          []string
		trust        bool
		want         string
	}{
		{"remote_addr", "203.0.113.9:5555", nil, false, "203.0.113.9"},
		{"xff_ignored_without_trust", "203.0.113.9:5555", []string{"1.2.3.4"}, false, "203.0.113.9"},
		{"rightmost_with_trust", "10.1.1.1:5555", []string{"1.2.3.4, 198.51.100.20"}, true, "198.51.100.20"},
		{"last_header_line_wins", "10.1.1.1:5555", []string{"1.2.3.4", "5.6.7.8, 198.51.100.21"}, true, "198.51.100.21"},
		{"garbage_falls_back_to_remote", "10.1.1.1:5555", []string{"1.2.3.4, not-an-ip"}, true, "10.1.1.1"},
		{"ipv4_mapped_unmapped", "[::ffff:192.0.2.1]:80", nil, false, "192.0.2.1"},
		{"ipv6_by_64", "[2001:db8:aa:bb:1:2:3:4]:80", nil, false, "2001:db8:aa:bb::/64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newRateLimiter(rateSpec{perSecond: 1, burst: 1}, tc.trust, time.Now)
			req := httptest.NewRequest(http.MethodPost, "/upload", nil)
			req.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			if got := clientKeyOf(req, l.trustProxy); got != tc.want {
				t.Errorf("key %q, want %q", got, tc.want)
			}
		})
	}
}
