package admission

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestBudgetWaitsThenRefuses(t *testing.T) {
	g := New(Config{MemoryBytes: 10, Wait: 20 * time.Millisecond})
	rel, waited, err := g.Admit(context.Background(), "a", 6)
	if err != nil || waited != 0 {
		t.Fatalf("first: waited %s, %v", waited, err)
	}
	if _, waited, err := g.Admit(context.Background(), "b", 6); !errors.Is(err, ErrBudgetSpent) || waited == 0 {
		t.Fatalf("second: waited %s, %v; want a wait, then ErrBudgetSpent", waited, err)
	}
	// Given back while another waits: the waiter gets in.
	got := make(chan error, 1)
	g2 := New(Config{MemoryBytes: 10, Wait: time.Hour})
	rel2, _, _ := g2.Admit(context.Background(), "a", 6)
	go func() {
		r, _, err := g2.Admit(context.Background(), "b", 6)
		if err == nil {
			r()
		}
		got <- err
	}()
	rel2()
	rel2() // harmless
	if err := <-got; err != nil {
		t.Fatalf("waiter: %v", err)
	}
	rel()
	rel()
	// Everything is back: the whole budget fits.
	r, _, err := g.Admit(context.Background(), "c", 10)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	r()
}

func TestNeverFits(t *testing.T) {
	g := New(Config{MemoryBytes: 10, Wait: time.Hour})
	if _, _, err := g.Admit(context.Background(), "a", 11); !errors.Is(err, ErrNeverFits) {
		t.Fatalf("got %v, want ErrNeverFits at once", err)
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	g := New(Config{MemoryBytes: 1, Wait: time.Hour})
	rel, _, _ := g.Admit(context.Background(), "a", 1)
	defer rel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := g.Admit(ctx, "b", 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want the context's error", err)
	}
}

func TestPerClient(t *testing.T) {
	leases := NewMemoryLeases()
	g := New(Config{MemoryBytes: 100, Wait: time.Hour, MaxPerClient: 2, Leases: leases})
	var rels []func()
	for range 2 {
		r, _, err := g.Admit(context.Background(), "a", 1)
		if err != nil {
			t.Fatal(err)
		}
		rels = append(rels, r)
	}
	if _, _, err := g.Admit(context.Background(), "a", 1); !errors.Is(err, ErrClientBusy) {
		t.Fatalf("third of a: %v, want ErrClientBusy", err)
	}
	r, _, err := g.Admit(context.Background(), "b", 1)
	if err != nil {
		t.Fatalf("another client: %v", err)
	}
	r()
	for _, r := range rels {
		r()
		r()
	}
	if n := leases.Held("a"); n != 0 {
		t.Fatalf("a still holds %d", n)
	}
}

func TestRefusedByBudgetGivesLeaseBack(t *testing.T) {
	leases := NewMemoryLeases()
	g := New(Config{MemoryBytes: 1, Wait: time.Millisecond, MaxPerClient: 5, Leases: leases})
	rel, _, _ := g.Admit(context.Background(), "a", 1)
	if _, _, err := g.Admit(context.Background(), "a", 1); !errors.Is(err, ErrBudgetSpent) {
		t.Fatalf("got %v", err)
	}
	if n := leases.Held("a"); n != 1 {
		t.Fatalf("a holds %d leases, want 1", n)
	}
	rel()
}

func TestHardCap(t *testing.T) {
	g := New(Config{MemoryBytes: 100, Wait: time.Millisecond, MaxUploads: 1})
	rel, _, _ := g.Admit(context.Background(), "a", 1)
	if _, _, err := g.Admit(context.Background(), "b", 1); !errors.Is(err, ErrTooManyUploads) {
		t.Fatalf("got %v, want ErrTooManyUploads", err)
	}
	rel()
	r, _, err := g.Admit(context.Background(), "b", 100)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	r()
}

func TestClientMemoryShare(t *testing.T) {
	g := New(Config{MemoryBytes: 100, Wait: time.Hour, MaxMemoryPerClient: 30})
	a, _, err := g.AdmitUpload(context.Background(), "a", 20)
	if err != nil {
		t.Fatal(err)
	}
	// Past its share, a client is refused at once (the wait is an hour), and nobody else notices.
	if _, waited, err := g.AdmitUpload(context.Background(), "a", 20); !errors.Is(err, ErrClientMemory) || waited != 0 {
		t.Fatalf("a's second: waited %s, %v; want ErrClientMemory at once", waited, err)
	}
	b, _, err := g.AdmitUpload(context.Background(), "b", 20)
	if err != nil {
		t.Fatalf("another client: %v", err)
	}
	// A chunk past the share waits for the client's own memory, then is refused.
	g2 := New(Config{MemoryBytes: 100, Wait: time.Millisecond, MaxMemoryPerClient: 30, ChunkBytes: 10})
	c, _, _ := g2.AdmitUpload(context.Background(), "c", 25)
	if err := c.Grow(context.Background(), 6); !errors.Is(err, ErrClientMemory) {
		t.Fatalf("growing past the share: %v, want ErrClientMemory", err)
	}
	c.Release()
	a.Release()
	b.Release()
	if g.Held("a") != 0 || g.Held("b") != 0 || g2.Held("c") != 0 {
		t.Fatal("memory still held after release")
	}
}

// Filling chunks never take the memory the closest to done needs to finish: a chunk that could
// not finish waits (and is refused) instead of both waiting for each other.
func TestGrowLeavesRoomForAChunkToFinish(t *testing.T) {
	g := New(Config{MemoryBytes: 10, Wait: 5 * time.Millisecond, ChunkBytes: 6})
	u1, _, _ := g.AdmitUpload(context.Background(), "a", 2)
	u2, _, _ := g.AdmitUpload(context.Background(), "b", 2)
	if err := u1.Grow(context.Background(), 3); err != nil { // 3 left free: what u1 needs to finish
		t.Fatal(err)
	}
	if err := u2.Grow(context.Background(), 1); !errors.Is(err, ErrBudgetSpent) {
		t.Fatalf("u2 took memory u1 needs to finish: %v", err)
	}
	if _, _, err := g.AdmitUpload(context.Background(), "c", 1); !errors.Is(err, ErrBudgetSpent) {
		t.Fatalf("a new upload took memory u1 needs to finish: %v", err)
	}
	if err := u1.Grow(context.Background(), 3); err != nil {
		t.Fatalf("u1 finishing its chunk: %v", err)
	}
	u1.Shrink() // the chunk was sent
	if err := u2.Grow(context.Background(), 1); err != nil {
		t.Fatalf("after the chunk was sent: %v", err)
	}
	u1.Release()
	u2.Release()
	u2.Release()
	if g.free != 10 {
		t.Fatalf("free %d after every release, want 10", g.free)
	}
}

// The same rule within one client's share: its two filling chunks cannot starve each other.
func TestGrowLeavesRoomInTheClientsShare(t *testing.T) {
	g := New(Config{MemoryBytes: 100, Wait: time.Millisecond, MaxMemoryPerClient: 8, ChunkBytes: 6})
	u1, _, _ := g.AdmitUpload(context.Background(), "a", 1)
	u2, _, _ := g.AdmitUpload(context.Background(), "a", 1)
	if err := u1.Grow(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	if err := u2.Grow(context.Background(), 1); !errors.Is(err, ErrClientMemory) {
		t.Fatalf("u2 took the share u1 needs to finish: %v", err)
	}
	if err := u1.Grow(context.Background(), 3); err != nil {
		t.Fatalf("u1 finishing: %v", err)
	}
	u1.Release()
	u2.Release()
}
