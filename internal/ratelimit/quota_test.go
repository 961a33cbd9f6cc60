package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"cloudinary-upload-api/internal/ratelimit/redistest"
)

func TestParseQuota(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	for _, tc := range []struct {
		in     string
		bytes  int64
		window time.Duration
	}{
		{"500MB/day", 500_000_000, day},
		{"2GB/30d", 2_000_000_000, 30 * day},
		{"1GiB/12h", 1 << 30, 12 * time.Hour},
		{"1.5GB/week", 1_500_000_000, 7 * day},
		{"100 MiB / hour", 100 << 20, time.Hour},
		{"10kb/90s", 10_000, 90 * time.Second},
		{"2048/15m", 2048, 15 * time.Minute},
		{"1TiB/366d", 1 << 40, 366 * day},
		{"0.5KiB/1d", 512, day},
		{"off", 0, 0},
		{"", 0, 0},
	} {
		spec, err := ParseQuota(tc.in)
		if err != nil || spec.Bytes != tc.bytes || spec.Window != tc.window || spec.Off() != (tc.bytes == 0) {
			t.Errorf("%q = %d bytes per %s (%v), want %d per %s", tc.in, spec.Bytes, spec.Window, err, tc.bytes, tc.window)
		}
	}
	for _, in := range []string{
		"500MB", "500MB/", "/day", "500XB/day", "500MB/fortnight", "0MB/day", "-1MB/day", "500MB/0d",
		"500MB/-1d", "1.2.3MB/day", ".5MB/day", "5./day", "2PiB/day", "500MB/367d", "0.1B/day", "MB/day",
		"500MB/d", "500MB/1.5d", "1e9/day",
	} {
		_, err := ParseQuota(in)
		if err == nil {
			t.Errorf("%q was accepted", in)
			continue
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "USER_QUOTA=") || !strings.Contains(msg, "500MB/day") {
			t.Errorf("%q: %q does not name USER_QUOTA and the expected form", in, msg)
		}
	}
}

// openPatient is open with a deadline that a loaded test machine does not reach: what these tests
// compare are Redis's answers, and a call past its deadline would be decided in memory instead.
func openPatient(t *testing.T, url string) *Conn {
	t.Helper()
	c, err := Open(Config{URL: url, TLSVerify: true, Timeout: 10 * time.Second, ProbeEvery: 10 * time.Millisecond, Logger: slog.New(newLogRecorder())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return c
}

func mustParseQuota(t *testing.T, v string) QuotaSpec {
	t.Helper()
	spec, err := ParseQuota(v)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// quotaStep is one call of a quota scenario and what it must answer.
type quotaStep struct {
	what       string
	key        string
	need, want int64 // a Reserve; both 0: a Release
	release    int   // the step whose Grant a Release gives back
	n          int64 // bytes given back
	endWindow  bool  // end key's window first
	granted    int64
	remaining  int64
	fullWindow bool // Reset is a whole window (else, less than one)
}

// runQuotaScenario plays steps on q; endWindow ends key's current window. Reset is checked
// against the window with a second's slack: the Redis run uses Redis's own clock.
func runQuotaScenario(t *testing.T, name string, q Quotas, window time.Duration, endWindow func(key string), steps []quotaStep) {
	t.Helper()
	ctx := context.Background()
	grants := make([]Grant, len(steps))
	for i, s := range steps {
		if s.endWindow {
			endWindow(s.key)
		}
		var st QuotaState
		if s.need > 0 {
			grants[i], st = q.Reserve(ctx, s.key, s.need, s.want)
		} else {
			st = q.Release(ctx, s.key, grants[s.release], s.n)
		}
		resetOK := st.Reset > 0 && st.Reset <= window
		if s.fullWindow {
			resetOK = (st.Reset - window).Abs() <= time.Second
		}
		if grants[i].Bytes != s.granted || st.Remaining != s.remaining || !resetOK {
			t.Errorf("%s: step %d (%s): granted %d, %+v; want %d granted, %d left, reset a whole window: %v",
				name, i, s.what, grants[i].Bytes, st, s.granted, s.remaining, s.fullWindow)
		}
	}
}

// TestQuotasDecideAlike plays one scenario on the memory count and on Redis's: the same grants,
// the same bytes left, the same reset.
func TestQuotasDecideAlike(t *testing.T) {
	t.Parallel()
	spec := mustParseQuota(t, "10MB/day")
	const mib = 1 << 20
	steps := []quotaStep{
		{what: "a Content-Length reserved", key: "a", need: 4e6, want: 4e6, granted: 4e6, remaining: 6e6, fullWindow: true},
		{what: "a streamed piece reserves ahead", key: "a", need: 1000, want: mib, granted: mib, remaining: 6e6 - mib, fullWindow: true},
		{what: "the piece's upload failed", key: "a", release: 1, n: mib, remaining: 6e6},
		{what: "more than is left", key: "a", need: 7e6, want: 7e6, remaining: 6e6},
		{what: "another client has its own", key: "b", need: 7e6, want: 7e6, granted: 7e6, remaining: 3e6},
		{what: "less than wanted is left", key: "a", need: 5e6, want: 8e6, granted: 6e6, remaining: 0},
		{what: "nothing is left", key: "a", need: 1, want: 1, remaining: 0},
		{what: "unused bytes given back", key: "a", release: 0, n: 1e6, remaining: 1e6},
		{what: "a window ended: nothing goes to the next", key: "a", release: 5, n: 6e6, endWindow: true, remaining: 10e6, fullWindow: true},
		{what: "a new window", key: "a", need: 5, want: 5, granted: 5, remaining: 10e6 - 5, fullWindow: true},
		{what: "a grant of the old window given back", key: "a", release: 0, n: 3e6, remaining: 10e6 - 5, fullWindow: true},
		{what: "the other client's window runs on", key: "b", release: 4, n: 1, remaining: 3e6 + 1},
	}

	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	memory := NewMemoryQuotas(spec, clock.now)
	endMemoryWindow := func(key string) { // moves the window's start a whole window back
		memory.clients[key].start = memory.clients[key].start.Add(-spec.Window)
	}
	runQuotaScenario(t, "memory", memory, spec.Window, endMemoryWindow, steps)

	srv := redistest.Start(t)
	conn := openPatient(t, srv.URL())
	shared := NewSharedQuotas(conn, spec, NewMemoryQuotas(spec, time.Now))
	ctx := context.Background()
	endRedisWindow := func(key string) { // moves the window's start a whole window back
		rkey := shared.redisKey(key)
		start, err := conn.client.HGet(ctx, rkey, "s").Int64()
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.client.HSet(ctx, rkey, "s", start-spec.Window.Milliseconds()).Err(); err != nil {
			t.Fatal(err)
		}
	}
	runQuotaScenario(t, "redis", shared, spec.Window, endRedisWindow, steps)
	if conn.Fallbacks() != 0 {
		t.Errorf("decided in memory %d times", conn.Fallbacks())
	}
	// Keys expire with their window.
	ttl, err := conn.client.PTTL(ctx, shared.redisKey("b")).Result()
	if err != nil || ttl <= 0 || ttl > spec.Window {
		t.Errorf("the window's key expires in %s (%v), want within a day", ttl, err)
	}
}

// TestSharedQuotasAreAtomic: two servers, many uploads of one client at once, one quota.
func TestSharedQuotasAreAtomic(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	spec := mustParseQuota(t, "10MB/hour")
	servers := []*SharedQuotas{
		NewSharedQuotas(openPatient(t, srv.URL()), spec, NewMemoryQuotas(spec, time.Now)),
		NewSharedQuotas(openPatient(t, srv.URL()), spec, NewMemoryQuotas(spec, time.Now)),
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	for i := range 30 {
		wg.Go(func() {
			g, _ := servers[i%2].Reserve(context.Background(), "c", 1e6, 1e6)
			if g.Bytes > 0 {
				mu.Lock()
				granted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if granted != 10 {
		t.Errorf("%d uploads of 1 MB got into a quota of 10 MB", granted)
	}
}

// TestSharedQuotasFallBackToMemory: with Redis down, the server's own count decides, and what
// it granted is given back to it.
func TestSharedQuotasFallBackToMemory(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	spec := mustParseQuota(t, "10MB/day")
	conn := openPatient(t, srv.URL())
	memory := NewMemoryQuotas(spec, time.Now)
	q := NewSharedQuotas(conn, spec, memory)
	ctx := context.Background()
	if g, st := q.Reserve(ctx, "k", 8e6, 8e6); g.Bytes != 8e6 || st.Remaining != 2e6 {
		t.Fatalf("in Redis: %+v %+v", g, st)
	}
	srv.Stop()
	g, st := q.Reserve(ctx, "k", 8e6, 8e6) // memory's own, fresh count
	if g.Bytes != 8e6 || st.Remaining != 2e6 || conn.Healthy() {
		t.Fatalf("during the outage: %+v %+v, healthy %v", g, st, conn.Healthy())
	}
	if st := q.Release(ctx, "k", g, 8e6); st.Remaining != 10e6 {
		t.Errorf("given back to memory: %+v", st)
	}
	if g, _ := q.Reserve(ctx, "k", 10e6, 10e6); g.Bytes != 10e6 {
		t.Errorf("memory did not get its bytes back: %+v", g)
	}
	if conn.Fallbacks() != 2 { // the two reservations; the memory's grant went back without asking Redis
		t.Errorf("%d fallbacks, want 2", conn.Fallbacks())
	}
}

// TestMemoryQuotasDropEndedWindows: a window that has ended is dropped, which changes nothing for
// its client.
func TestMemoryQuotasDropEndedWindows(t *testing.T) {
	t.Parallel()
	spec := mustParseQuota(t, "1MB/hour")
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	m := NewMemoryQuotas(spec, clock.now)
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c"} {
		m.Reserve(ctx, k, 1, 1)
	}
	clock.t = clock.t.Add(time.Hour)
	if g, st := m.Reserve(ctx, "d", 1e6, 1e6); g.Bytes != 1e6 || st.Remaining != 0 {
		t.Fatalf("%+v %+v", g, st)
	}
	if n := m.Size(); n != 1 {
		t.Errorf("%d windows kept, want 1", n)
	}
	if st := m.Release(ctx, "a", Grant{}, 0); st.Remaining != 1e6 || st.Reset != time.Hour {
		t.Errorf("a dropped client: %+v, want the whole quota", st)
	}
}

// TestMemoryQuotasAreBounded: at most MaxClients windows; past it new clients share one.
func TestMemoryQuotasAreBounded(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	m := NewMemoryQuotas(mustParseQuota(t, "1MB/day"), clock.now)
	ctx := context.Background()
	heapPerClientAtMost(t, 1024, func() {
		for i := range MaxClients {
			if g, _ := m.Reserve(ctx, fmt.Sprintf("addr:198.51.%d.%d", i/256, i%256), 1e6, 1e6); g.Bytes != 1e6 {
				t.Fatalf("client %d: %+v on its first upload", i, g)
			}
		}
	})
	// Past the cap, new clients share one window: the second of them finds it spent.
	if g, _ := m.Reserve(ctx, "one-more", 1e6, 1e6); g.Bytes != 1e6 {
		t.Errorf("the first client past the cap: %+v", g)
	}
	if g, _ := m.Reserve(ctx, "two-more", 1, 1); g.Bytes != 0 {
		t.Errorf("the second client past the cap had a window of its own: %+v", g)
	}
	if got := m.Size(); got != MaxClients {
		t.Errorf("size %d, want the cap %d", got, MaxClients)
	}
}
