// Package admission decides which uploads get in, and when: a memory budget, per-client caps
// and a minimum data rate keep a server under load fair to every client and within its memory.
//
//   - A memory budget (Gate): each upload reserves the bytes it will really hold: its buffers
//     when it is admitted (Admit), and, when it goes up in chunks, its chunk buffer as the chunk
//     fills (Upload.Grow), given back once the chunk is sent (Upload.Shrink). When the budget is
//     spent, an upload (or a chunk) waits up to a bound, then is refused with ErrBudgetSpent.
//     An optional hard cap on uploads at once refuses with ErrTooManyUploads the same way.
//   - Per-client caps: each client (named by the caller) holds at most a number of uploads at
//     once, counted by a Leases (in memory here, or shared between servers elsewhere). One more
//     is refused at once with ErrClientBusy; nobody else notices. And each client holds at most
//     a share of the memory (MaxMemoryPerClient, counted by this Gate alone): an upload past it
//     is refused at once, a chunk past it waits for the client's own memory, then is refused,
//     both with ErrClientMemory.
//   - A minimum data rate (Pace): after a grace period, the bytes that arrived within a sliding
//     window must average at least a rate; Pace says by when more must have arrived.
//
// Chunks that fill bit by bit could deadlock: every upload holding half a chunk, none able to
// finish one. So memory is handed out as a banker would: only when, afterwards, the memory still
// free (and the client's own share still free) would let at least one filling chunk finish. A
// finished chunk is sent and given back, after which every chunk can finish in turn; the waits
// are bounded all the same.
//
// The package knows nothing of HTTP: it returns its own errors, and its caller decides what a
// client sees. Every reservation comes back through one release function, which may be called
// more than once, however the upload ends.
package admission

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
)

// The reasons an upload is not admitted.
var (
	// ErrBudgetSpent: the memory budget stayed spent for the whole wait.
	ErrBudgetSpent = errors.New("admission: memory budget spent")
	// ErrTooManyUploads: the hard cap on uploads at once stayed reached for the whole wait.
	ErrTooManyUploads = errors.New("admission: too many uploads at once")
	// ErrClientBusy: the client already holds its most uploads at once.
	ErrClientBusy = errors.New("admission: client holds its most uploads at once")
	// ErrClientMemory: the client holds its share of the memory budget (MaxMemoryPerClient).
	ErrClientMemory = errors.New("admission: client holds its share of the memory budget")
	// ErrNeverFits: the upload needs more memory than the whole budget.
	ErrNeverFits = errors.New("admission: upload needs more than the whole memory budget")
)

// Leases counts each client's uploads in flight, on this server or across several.
type Leases interface {
	// Acquire takes one of max places for key; ok is false when key already holds max.
	// release gives the place back; calling it more than once is harmless.
	Acquire(ctx context.Context, key string, max int) (release func(), ok bool)
}

// Config says how much the Gate admits.
type Config struct {
	MemoryBytes        int64         // the budget shared by every upload's reservation; must be positive
	Wait               time.Duration // how long an upload (or a chunk) may wait for memory (or the cap) before refusal
	MaxUploads         int           // hard cap on uploads at once; 0: none
	MaxPerClient       int           // uploads at once per client; 0: none
	MaxMemoryPerClient int64         // memory one client may hold at once; 0: none
	ChunkBytes         int64         // the most one chunk may hold through Grow; 0: uploads do not grow
	Leases             Leases        // counts per-client uploads; nil: NewMemoryLeases()
}

// Gate admits uploads within a memory budget, per-client caps and an optional hard cap.
type Gate struct {
	cfg   Config
	count *semaphore.Weighted // nil: no hard cap

	mu      sync.Mutex
	free    int64                // of MemoryBytes
	held    map[string]int64     // memory held per client
	filling map[*Upload]struct{} // uploads whose chunk holds memory, until Shrink
	changed chan struct{}        // closed (and replaced) whenever memory comes back
}

// New builds a Gate. It panics when cfg.MemoryBytes is not positive: that is a configuration
// the caller must have refused.
func New(cfg Config) *Gate {
	if cfg.MemoryBytes <= 0 {
		panic("admission: MemoryBytes must be positive")
	}
	if cfg.Leases == nil {
		cfg.Leases = NewMemoryLeases()
	}
	g := &Gate{cfg: cfg, free: cfg.MemoryBytes, held: map[string]int64{}, filling: map[*Upload]struct{}{}, changed: make(chan struct{})}
	if cfg.MaxUploads > 0 {
		g.count = semaphore.NewWeighted(int64(cfg.MaxUploads))
	}
	return g
}

// Held is the memory client holds now.
func (g *Gate) Held(client string) int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held[client]
}

// Upload is one admitted upload's hold on the Gate.
type Upload struct {
	g       *Gate
	client  string
	base    int64  // held from Admit to Release
	chunk   int64  // held through Grow, until Shrink; under g.mu
	others  func() // gives back the lease and the place under the hard cap
	release sync.Once
}

// Admit lets one upload of client in, holding bytes of the budget, or says why not. waited is
// how long it waited for the budget or the cap (also when refused). release gives everything
// back; it must be called once the upload holds nothing any more, and may be called again.
// A refusal holds nothing. When ctx ends during the wait, Admit returns ctx's error.
func (g *Gate) Admit(ctx context.Context, client string, bytes int64) (release func(), waited time.Duration, err error) {
	u, waited, err := g.AdmitUpload(ctx, client, bytes)
	if err != nil {
		return nil, waited, err
	}
	return u.Release, waited, nil
}

// AdmitUpload is Admit, returning the Upload, whose chunk may then Grow.
func (g *Gate) AdmitUpload(ctx context.Context, client string, bytes int64) (u *Upload, waited time.Duration, err error) {
	if bytes > g.cfg.MemoryBytes || g.cfg.MaxMemoryPerClient > 0 && bytes > g.cfg.MaxMemoryPerClient {
		return nil, 0, ErrNeverFits
	}
	var held []func()
	giveBack := func() {
		for i := len(held) - 1; i >= 0; i-- {
			held[i]()
		}
	}
	if g.cfg.MaxPerClient > 0 {
		rel, ok := g.cfg.Leases.Acquire(ctx, client, g.cfg.MaxPerClient)
		if !ok {
			return nil, 0, ErrClientBusy
		}
		held = append(held, rel)
	}
	if g.cfg.MaxMemoryPerClient > 0 && g.Held(client)+bytes > g.cfg.MaxMemoryPerClient {
		giveBack()
		return nil, 0, ErrClientMemory // at once, as for the places: nobody else notices
	}
	// Who cannot have everything at once waits, up to the bound, without blocking the others.
	start, waits := time.Now(), false
	if g.count != nil && !g.count.TryAcquire(1) {
		waits = true
		if err := g.waitCount(ctx); err != nil {
			giveBack()
			return nil, time.Since(start), err
		}
	}
	if g.count != nil {
		held = append(held, func() { g.count.Release(1) })
	}
	u = &Upload{g: g, client: client, base: bytes}
	w, err := g.take(ctx, u, bytes, false)
	if err != nil {
		giveBack()
		return nil, time.Since(start), err
	}
	if waits || w {
		waited = time.Since(start)
	}
	u.others = giveBack
	return u, waited, nil
}

// waitCount takes a place under the hard cap within the Gate's wait.
func (g *Gate) waitCount(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, g.cfg.Wait)
	defer cancel()
	if err := g.count.Acquire(wctx, 1); err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return ErrTooManyUploads
	}
	return nil
}

// Grow reserves n more bytes for the upload's chunk, waiting up to the Gate's wait for them:
// ErrBudgetSpent when the budget stayed spent, ErrClientMemory when the client's share did, or
// ctx's error.
func (u *Upload) Grow(ctx context.Context, n int64) error {
	_, err := u.g.take(ctx, u, n, true)
	return err
}

// Shrink gives back everything Grow reserved: the chunk has been sent.
func (u *Upload) Shrink() {
	g := u.g
	g.mu.Lock()
	defer g.mu.Unlock()
	g.giveLocked(u.client, u.chunk)
	u.chunk = 0
	delete(g.filling, u)
}

// Release gives back everything the upload holds. Calling it again is harmless.
func (u *Upload) Release() {
	u.release.Do(func() {
		u.Shrink()
		u.g.mu.Lock()
		u.g.giveLocked(u.client, u.base)
		u.g.mu.Unlock()
		u.others()
	})
}

func (g *Gate) giveLocked(client string, n int64) {
	if n == 0 {
		return
	}
	g.free += n
	if g.held[client] -= n; g.held[client] <= 0 {
		delete(g.held, client)
	}
	close(g.changed)
	g.changed = make(chan struct{})
}

// take reserves n bytes for u (for its chunk when grow), waiting up to the Gate's wait until
// they may be given. waited says whether it had to wait.
func (g *Gate) take(ctx context.Context, u *Upload, n int64, grow bool) (waited bool, err error) {
	var timeout <-chan time.Time
	for {
		g.mu.Lock()
		ok, clientShort := g.mayTake(u, n, grow)
		if ok {
			g.free -= n
			g.held[u.client] += n
			if grow {
				u.chunk += n
				g.filling[u] = struct{}{}
			}
			g.mu.Unlock()
			return waited, nil
		}
		changed := g.changed
		g.mu.Unlock()
		if timeout == nil {
			t := time.NewTimer(g.cfg.Wait)
			defer t.Stop()
			timeout = t.C
		}
		waited = true
		select {
		case <-changed:
		case <-ctx.Done():
			return true, context.Cause(ctx)
		case <-timeout:
			if clientShort {
				return true, ErrClientMemory
			}
			return true, ErrBudgetSpent
		}
	}
}

// mayTake says whether n bytes may go to u (to its chunk when grow), under g.mu: they must be
// free, within the client's share, and leave enough, of both, for a filling chunk to finish
// (the banker's rule). clientShort says the client's share is what is short.
func (g *Gate) mayTake(u *Upload, n int64, grow bool) (ok, clientShort bool) {
	perClient := g.cfg.MaxMemoryPerClient
	free := g.free - n
	held := g.held[u.client] + n
	if free < 0 {
		return false, false
	}
	if perClient > 0 && held > perClient {
		return false, true
	}
	// What the filling chunks still need, the least of all and the least of the client's.
	need := func(x *Upload, more int64) int64 { return max(g.cfg.ChunkBytes-x.chunk-more, 0) }
	least, leastOwn := int64(math.MaxInt64), int64(math.MaxInt64)
	for x := range g.filling {
		if x == u {
			continue
		}
		least = min(least, need(x, 0))
		if x.client == u.client {
			leastOwn = min(leastOwn, need(x, 0))
		}
	}
	if grow {
		least = min(least, need(u, n))
		leastOwn = min(leastOwn, need(u, n))
	}
	if free < least && least != math.MaxInt64 {
		return false, false
	}
	if perClient > 0 && leastOwn != math.MaxInt64 && perClient-held < leastOwn {
		return false, true
	}
	return true, false
}

// MemoryLeases is the Leases of one server: a count per client, in memory.
type MemoryLeases struct {
	mu   sync.Mutex
	held map[string]int
}

// NewMemoryLeases returns an empty MemoryLeases.
func NewMemoryLeases() *MemoryLeases { return &MemoryLeases{held: map[string]int{}} }

// Acquire takes one of max places for key. Clients that hold nothing take no memory.
func (l *MemoryLeases) Acquire(_ context.Context, key string, max int) (func(), bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held[key] >= max {
		return nil, false
	}
	l.held[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.held[key]--; l.held[key] <= 0 {
				delete(l.held, key)
			}
		})
	}, true
}

// Held is how many places key holds now.
func (l *MemoryLeases) Held(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held[key]
}
