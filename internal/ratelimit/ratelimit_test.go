package ratelimit

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParse(t *testing.T) {
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
		spec, err := Parse(tc.in)
		if tc.bad {
			if err == nil || !strings.Contains(err.Error(), "RATE_LIMIT") {
				t.Errorf("%q: err = %v, want a RATE_LIMIT error", tc.in, err)
			}
			continue
		}
		if tc.in == "off" {
			if err != nil || !spec.Off() {
				t.Errorf("off = %+v, %v", spec, err)
			}
			continue
		}
		if err != nil || spec.PerSecond() != tc.perSecond || spec.Burst != tc.burst {
			t.Errorf("%q = %v/s burst %d (%v), want %v/s burst %d", tc.in, spec.PerSecond(), spec.Burst, err, tc.perSecond, tc.burst)
		}
	}
}

// fakeClock is a clock a test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func mustParse(t *testing.T, v string) Spec {
	t.Helper()
	spec, err := Parse(v)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func TestMemoryBurstRemainingReset(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	m := NewMemory(mustParse(t, "6/min,burst=3"), clock.now) // a token every 10 s
	ctx := context.Background()
	for i, want := range []int{2, 1, 0} {
		d := m.Allow(ctx, "a")
		if !d.Allowed || d.Remaining != want || d.Reset != time.Duration(3-want)*10*time.Second {
			t.Fatalf("request %d: %+v, want allowed, %d remaining, reset in %ds", i+1, d, want, (3-want)*10)
		}
	}
	d := m.Allow(ctx, "a")
	if d.Allowed || d.RetryAfter != 10*time.Second || d.Remaining != 0 || d.Reset != 30*time.Second {
		t.Fatalf("after the burst: %+v, want refused, retry in 10s, reset in 30s", d)
	}
	if d := m.Allow(ctx, "b"); !d.Allowed {
		t.Errorf("another client was limited: %+v", d)
	}
	clock.t = clock.t.Add(10 * time.Second)
	if d := m.Allow(ctx, "a"); !d.Allowed || d.Remaining != 0 {
		t.Errorf("after RetryAfter: %+v", d)
	}
}

func TestMemoryEvictsIdleClients(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	m := NewMemory(mustParse(t, "60/min,burst=20"), clock.now) // a bucket refills in 20 s
	ctx := context.Background()
	for i := range 5000 {
		m.Allow(ctx, fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	if got := m.Size(); got != 5000 {
		t.Fatalf("size %d, want 5000", got)
	}
	clock.t = clock.t.Add(19 * time.Second)
	m.Allow(ctx, "10.9.9.9")
	if got := m.Size(); got != 5001 {
		t.Errorf("size %d: a bucket not yet full was dropped", got)
	}
	clock.t = clock.t.Add(2 * time.Second)
	m.Allow(ctx, "10.9.9.9")
	if got := m.Size(); got != 1 {
		t.Errorf("size %d after every other client was idle for a whole refill, want 1", got)
	}
}

func TestMemoryIsBounded(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	m := NewMemory(mustParse(t, "1/hour"), clock.now)
	ctx := context.Background()
	heapPerClientAtMost(t, 1024, func() {
		for i := range MaxClients + 1000 {
			if d := m.Allow(ctx, fmt.Sprintf("k%d", i)); i < MaxClients && !d.Allowed {
				t.Fatalf("client %d limited on its first request", i)
			}
		}
	})
	if got := m.Size(); got != MaxClients {
		t.Errorf("size %d, want the cap %d", got, MaxClients)
	}
	// Past the cap, new clients share one bucket: the second of them is already limited.
	if d := m.Allow(ctx, "one-more"); d.Allowed {
		t.Errorf("a client past the cap got its own bucket")
	}
}

// heapPerClientAtMost runs fill, which gives MaxClients clients their state, and checks that the
// heap grew by at most limit bytes per client.
func heapPerClientAtMost(t *testing.T, limit int64, fill func()) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fill()
	runtime.GC()
	runtime.ReadMemStats(&after)
	perClient := (int64(after.HeapInuse) - int64(before.HeapInuse)) / MaxClients
	t.Logf("about %d bytes of heap per client", perClient)
	if perClient > limit {
		t.Errorf("%d bytes of heap per client, want at most %d", perClient, limit)
	}
}
