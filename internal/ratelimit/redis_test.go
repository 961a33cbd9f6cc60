package ratelimit

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"cloudinary-upload-api/internal/ratelimit/redistest"
)

// logRecorder keeps every record logged, and lets a test wait for one.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
	added   chan struct{} // closed and replaced on each record
}

func newLogRecorder() *logRecorder { return &logRecorder{added: make(chan struct{})} }

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r)
	close(l.added)
	l.added = make(chan struct{})
	return nil
}

// count is how many records at level contain msg.
func (l *logRecorder) count(level slog.Level, msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.records {
		if r.Level == level && strings.Contains(r.Message, msg) {
			n++
		}
	}
	return n
}

// waitFor returns once a record at level containing msg has been logged.
func (l *logRecorder) waitFor(t *testing.T, level slog.Level, msg string) {
	t.Helper()
	for {
		l.mu.Lock()
		added := l.added
		l.mu.Unlock()
		if l.count(level, msg) > 0 {
			return
		}
		select {
		case <-added:
		case <-t.Context().Done():
			t.Fatalf("no %v log line %q", level, msg)
		}
	}
}

func open(t *testing.T, url string, verify bool, logs *logRecorder) *Conn {
	t.Helper()
	c, err := Open(Config{URL: url, TLSVerify: verify, Timeout: time.Second, ProbeEvery: 10 * time.Millisecond, Logger: slog.New(logs)})
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

func TestParseURLNeverQuotesIt(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{"http://:hunter2@host:6379", "redis://:hunter2@host:port", "redis://:hunter2@[::1", "rediss://:hunter2@h/x/y", "hunter2"} {
		_, err := ParseURL(raw, true, time.Second)
		if !errors.Is(err, ErrBadURL) || strings.Contains(err.Error(), "hunter2") || !strings.HasPrefix(err.Error(), "REDIS_URL") {
			t.Errorf("%q: err %v", raw, err)
		}
	}
	for _, raw := range []string{"redis://localhost:6379", "rediss://:p@h.example:25060/1", "redis://user:p@10.0.0.1"} {
		if _, err := ParseURL(raw, false, time.Second); err != nil {
			t.Errorf("%q: %v", raw, err)
		}
	}
}

// TestSharedAnswersAsMemoryDoes runs the same requests through Redis and through memory.
// The rate is slow enough (a token every 12 minutes) that the test's own time does not count.
func TestSharedAnswersAsMemoryDoes(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	spec := mustParse(t, "5/hour,burst=3")
	conn := open(t, srv.URL(), true, newLogRecorder())
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	shared, memory := NewShared(conn, spec, NewMemory(spec, time.Now)), NewMemory(spec, clock.now)
	ctx := context.Background()
	for i := range 5 {
		for _, key := range []string{"198.51.100.7", "2001:db8::/64"} {
			got, want := shared.Allow(ctx, key), memory.Allow(ctx, key)
			if got.Allowed != want.Allowed || got.Remaining != want.Remaining ||
				(got.RetryAfter-want.RetryAfter).Abs() > time.Second || (got.Reset-want.Reset).Abs() > time.Second {
				t.Errorf("request %d of %s: Redis %+v, memory %+v", i+1, key, got, want)
			}
		}
	}
	if conn.Fallbacks() != 0 || !conn.Healthy() {
		t.Errorf("decided in memory %d times, healthy %v", conn.Fallbacks(), conn.Healthy())
	}
}

// TestSharedBetweenServers: two servers, one budget.
func TestSharedBetweenServers(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	spec := mustParse(t, "5/min")
	a := NewShared(open(t, srv.URL(), true, newLogRecorder()), spec, NewMemory(spec, time.Now))
	b := NewShared(open(t, srv.URL(), true, newLogRecorder()), spec, NewMemory(spec, time.Now))
	ctx := context.Background()
	for i := range 5 {
		l := a
		if i%2 == 1 {
			l = b
		}
		if d := l.Allow(ctx, "c1"); !d.Allowed || d.Remaining != 4-i {
			t.Fatalf("request %d: %+v", i+1, d)
		}
	}
	if d := b.Allow(ctx, "c1"); d.Allowed || d.RetryAfter <= 0 || d.RetryAfter > 12*time.Second {
		t.Errorf("sixth request: %+v, want refused with a retry within 12 s", d)
	}
	if d := a.Allow(ctx, "c2"); !d.Allowed {
		t.Errorf("another client: %+v", d)
	}
}

// TestOutageFallsBackAndRecovers: Redis stopped, then started again.
func TestOutageFallsBackAndRecovers(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	logs := newLogRecorder()
	conn := open(t, srv.URL(), true, logs)
	spec := mustParse(t, "2/hour")
	shared := NewShared(conn, spec, NewMemory(spec, time.Now))
	ctx := context.Background()
	if d := shared.Allow(ctx, "k"); !d.Allowed || d.Remaining != 1 {
		t.Fatalf("first: %+v", d)
	}
	srv.Stop()
	for i := range 3 { // memory has its own, fresh bucket: 2 allowed, then refused
		d := shared.Allow(ctx, "k")
		if d.Allowed != (i < 2) {
			t.Errorf("request %d during the outage: %+v", i+1, d)
		}
	}
	if conn.Healthy() || conn.Outages() != 1 || conn.Fallbacks() != 3 {
		t.Errorf("healthy %v, outages %d, fallbacks %d; want false, 1, 3", conn.Healthy(), conn.Outages(), conn.Fallbacks())
	}
	if n := logs.count(slog.LevelWarn, "redis does not answer"); n != 1 {
		t.Errorf("%d warnings, want 1", n)
	}
	srv.Restart() // its data is gone: the bucket starts full again
	logs.waitFor(t, slog.LevelInfo, "redis answers again")
	if d := shared.Allow(ctx, "k"); !d.Allowed || d.Remaining != 1 {
		t.Errorf("after Redis came back: %+v, want the Redis bucket", d)
	}
	if n := logs.count(slog.LevelInfo, "redis answers again"); n != 1 || conn.Fallbacks() != 3 || !conn.Healthy() {
		t.Errorf("%d recovery lines, %d fallbacks, healthy %v", n, conn.Fallbacks(), conn.Healthy())
	}
}

func TestDownAtStartUp(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	srv.Stop()
	logs := newLogRecorder()
	conn := open(t, srv.URL(), true, logs)
	if conn.Healthy() || logs.count(slog.LevelWarn, "redis does not answer") != 1 {
		t.Fatalf("healthy %v with Redis down", conn.Healthy())
	}
	spec := mustParse(t, "1/hour")
	if d := NewShared(conn, spec, NewMemory(spec, time.Now)).Allow(context.Background(), "k"); !d.Allowed {
		t.Errorf("refused while Redis is down: %+v", d)
	}
	srv.Restart()
	logs.waitFor(t, slog.LevelInfo, "redis answers again")
}

// TestTLS: rediss:// with a self-signed certificate, as Heroku's.
func TestTLS(t *testing.T) {
	t.Parallel()
	srv := redistest.StartTLS(t)
	if conn := open(t, srv.URL(), false, newLogRecorder()); !conn.Healthy() {
		t.Errorf("REDIS_TLS_VERIFY=false: Redis over TLS does not answer")
	}
	logs := newLogRecorder()
	if conn := open(t, srv.URL(), true, logs); conn.Healthy() {
		t.Errorf("REDIS_TLS_VERIFY=true accepted a self-signed certificate")
	}
	if logs.count(slog.LevelWarn, "redis does not answer") != 1 {
		t.Errorf("no warning for the refused certificate")
	}
	// Plain redis:// to a TLS port fails too: nothing is sent in the clear by mistake.
	plain := strings.Replace(srv.URL(), "rediss://", "redis://", 1)
	if conn := open(t, plain, false, newLogRecorder()); conn.Healthy() {
		t.Errorf("redis:// to a TLS port answered")
	}
}

// BenchmarkAllow is one decision in memory and one round trip to a redis-server on loopback.
func BenchmarkAllow(b *testing.B) {
	srv := redistest.Start(b)
	spec, err := Parse("1000000/s")
	if err != nil {
		b.Fatal(err)
	}
	conn, err := Open(Config{URL: srv.URL(), TLSVerify: true, Timeout: 100 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	ctx := context.Background()
	for name, l := range map[string]Limiter{"memory": NewMemory(spec, time.Now), "redis": NewShared(conn, spec, NewMemory(spec, time.Now))} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if !l.Allow(ctx, "198.51.100.7").Allowed {
					b.Fatal("refused")
				}
			}
		})
	}
	if conn.Fallbacks() != 0 {
		b.Errorf("%d decisions fell back to memory", conn.Fallbacks())
	}
}
