package ratelimit

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"cloudinary-upload-api/internal/ratelimit/redistest"
)

// memoryLeases is a plain in-process count, standing in for admission.NewMemoryLeases.
type memoryLeases struct {
	mu   sync.Mutex
	held map[string]int
}

func newMemoryLeases() *memoryLeases { return &memoryLeases{held: map[string]int{}} }

func (m *memoryLeases) Acquire(_ context.Context, key string, max int) (func(), bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.held[key] >= max {
		return func() {}, false
	}
	m.held[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.held[key]--
		})
	}, true
}

func (m *memoryLeases) count(key string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.held[key]
}

func TestLeasesSharedBetweenServers(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	localA, localB := newMemoryLeases(), newMemoryLeases()
	a := NewLeases(open(t, srv.URL(), true, newLogRecorder()), localA, time.Minute)
	b := NewLeases(open(t, srv.URL(), true, newLogRecorder()), localB, time.Minute)
	r1, ok1 := a.Acquire(ctx, "c", 3)
	r2, ok2 := a.Acquire(ctx, "c", 3)
	r3, ok3 := b.Acquire(ctx, "c", 3)
	if !ok1 || !ok2 || !ok3 {
		t.Fatalf("the first three of 3: %v %v %v", ok1, ok2, ok3)
	}
	if _, ok := b.Acquire(ctx, "c", 3); ok {
		t.Fatal("a fourth upload in flight across two servers was let in")
	}
	if _, ok := a.Acquire(ctx, "c", 3); ok {
		t.Fatal("a fourth upload in flight across two servers was let in")
	}
	if localB.count("c") != 1 || localA.count("c") != 2 {
		t.Errorf("a refused lease is still counted locally: %d %d", localA.count("c"), localB.count("c"))
	}
	if r, ok := b.Acquire(ctx, "other", 3); !ok {
		t.Error("another client was refused")
	} else {
		r()
	}
	r1()
	r1() // harmless
	r4, ok := b.Acquire(ctx, "c", 3)
	if !ok {
		t.Fatal("refused after one of the three ended")
	}
	for _, r := range []func(){r2, r3, r4} {
		r()
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	if n, err := rdb.ZCard(ctx, keyPrefix+"leases:c").Result(); err != nil || n != 0 {
		t.Errorf("%d leases left in Redis after every upload ended (%v)", n, err)
	}
	if localA.count("c")+localB.count("c") != 0 {
		t.Error("local leases left")
	}
}

// TestLeasesOfADeadServerLapse: a server that stops renewing (it died) frees its places within
// one expiry, while a live server's lease, renewed, outlasts many expiries.
func TestLeasesOfADeadServerLapse(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()

	live := NewLeases(open(t, srv.URL(), true, newLogRecorder()), newMemoryLeases(), 800*time.Millisecond) // expiry 1 s, renewed every 333 ms
	release, ok := live.Acquire(ctx, "c", 2)
	if !ok {
		t.Fatal("refused")
	}
	defer release()

	deadConn, err := Open(Config{URL: srv.URL(), TLSVerify: true, Timeout: time.Second, ProbeEvery: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = deadConn.Close() }) // its client is closed below: Close says so
	dead := NewLeases(deadConn, newMemoryLeases(), 800*time.Millisecond)
	deadRelease, ok := dead.Acquire(ctx, "c", 2)
	if !ok {
		t.Fatal("refused")
	}
	// The "dead" server's renewals now fail: its client is closed, as a killed dyno's is gone.
	if err := deadConn.client.Close(); err != nil {
		t.Fatal(err)
	}
	members, err := rdb.ZRangeWithScores(ctx, keyPrefix+"leases:c", 0, -1).Result()
	if err != nil || len(members) != 2 {
		t.Fatalf("leases in Redis: %v %v", members, err)
	}
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	var lastExpiry time.Time // the dead lease's: the live one's was renewed since, or will be
	for _, m := range members {
		expiry := time.UnixMilli(int64(m.Score))
		if left := expiry.Sub(now); left <= 0 || left > live.TTL() {
			t.Errorf("a lease expires in %v, want within %v", left, live.TTL())
		}
		if expiry.After(lastExpiry) {
			lastExpiry = expiry
		}
	}
	if pttl, err := rdb.PTTL(ctx, keyPrefix+"leases:c").Result(); err != nil || pttl <= 0 || pttl > live.TTL() {
		t.Errorf("the client's key lives %v (%v), want within %v", pttl, err, live.TTL())
	}
	// What is shown is the expiry itself: wait until both leases as they stand now have expired
	// in Redis's clock; the dead one lapses, the live one was renewed meanwhile.
	<-time.After(lastExpiry.Sub(now) + 10*time.Millisecond)
	n, err := rdb.ZCount(ctx, keyPrefix+"leases:c", "-inf", "+inf").Result()
	if err != nil {
		t.Fatal(err)
	}
	other := NewLeases(open(t, srv.URL(), true, newLogRecorder()), newMemoryLeases(), time.Minute)
	r, ok := other.Acquire(ctx, "c", 2)
	if !ok {
		t.Fatalf("the dead server's place was not freed (%d in Redis)", n)
	}
	r()
	if _, ok := other.Acquire(ctx, "c", 1); ok {
		t.Error("the live server's renewed lease lapsed")
	}
	deadRelease() // ends its renewal goroutine; its Redis call fails, harmlessly
}

// TestLeasesFallBackWhenRedisIsDown: the local count decides alone.
func TestLeasesFallBackWhenRedisIsDown(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	logs := newLogRecorder()
	conn := open(t, srv.URL(), true, logs)
	local := newMemoryLeases()
	l := NewLeases(conn, local, time.Minute)
	held, ok := l.Acquire(ctx, "c", 2)
	if !ok {
		t.Fatal("refused")
	}
	srv.Stop()
	r, ok := l.Acquire(ctx, "c", 2)
	if !ok || conn.Healthy() {
		t.Fatalf("with Redis down: ok %v healthy %v", ok, conn.Healthy())
	}
	if _, ok := l.Acquire(ctx, "c", 2); ok {
		t.Error("the local count let a third in")
	}
	r()
	held()
	if local.count("c") != 0 || conn.Fallbacks() != 1 {
		t.Errorf("local %d, fallbacks %d", local.count("c"), conn.Fallbacks())
	}
}
