// Package admission decides which uploads get in, and when, so that a server under load stays
// fair to every client and within its memory:
//
//   - A memory budget (Gate): each upload reserves the bytes it will really hold (its read
//     buffer; a chunk buffer when it goes up in chunks) from a weighted semaphore. When the
//     budget is spent, an upload waits up to a bound, then is refused with ErrBudgetSpent.
//     An optional hard cap on uploads at once refuses with ErrTooManyUploads the same way.
//   - Per-client caps: each client (named by the caller) holds at most a number of uploads at
//     once, counted by a Leases (in memory here, or shared between servers elsewhere). One more
//     is refused at once with ErrClientBusy; nobody else notices.
//   - A minimum data rate (Pace): after a grace period, the bytes that arrived within a sliding
//     window must average at least a rate; Pace says by when more must have arrived.
//
// The package knows nothing of HTTP: it returns its own errors, and its caller decides what a
// client sees. Every reservation comes back through one release function, which may be called
// more than once, however the upload ends.
package admission

import (
	"context"
	"errors"
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
	MemoryBytes  int64         // the budget shared by every upload's reservation; must be positive
	Wait         time.Duration // how long an upload may wait for the budget (or the cap) before refusal
	MaxUploads   int           // hard cap on uploads at once; 0: none
	MaxPerClient int           // uploads at once per client; 0: none
	Leases       Leases        // counts per-client uploads; nil: NewMemoryLeases()
}

// Gate admits uploads within a memory budget, a per-client cap and an optional hard cap.
type Gate struct {
	cfg    Config
	memory *semaphore.Weighted
	count  *semaphore.Weighted // nil: no hard cap
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
	g := &Gate{cfg: cfg, memory: semaphore.NewWeighted(cfg.MemoryBytes)}
	if cfg.MaxUploads > 0 {
		g.count = semaphore.NewWeighted(int64(cfg.MaxUploads))
	}
	return g
}

// MemoryBytes is the whole budget.
func (g *Gate) MemoryBytes() int64 { return g.cfg.MemoryBytes }

// Admit lets one upload of client in, holding bytes of the budget, or says why not. waited is
// how long it waited for the budget or the cap (also when refused). release gives everything
// back; it must be called once the upload holds nothing any more, and may be called again.
// A refusal holds nothing. When ctx ends during the wait, Admit returns ctx's error.
func (g *Gate) Admit(ctx context.Context, client string, bytes int64) (release func(), waited time.Duration, err error) {
	if bytes > g.cfg.MemoryBytes {
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
	// Who cannot have everything at once waits, up to the bound, without blocking the others.
	start, waits := time.Now(), false
	if g.count != nil && !g.count.TryAcquire(1) {
		waits = true
		if err := g.wait(ctx, g.count, 1, ErrTooManyUploads); err != nil {
			giveBack()
			return nil, time.Since(start), err
		}
	}
	if g.count != nil {
		held = append(held, func() { g.count.Release(1) })
	}
	if bytes > 0 && !g.memory.TryAcquire(bytes) {
		waits = true
		if err := g.wait(ctx, g.memory, bytes, ErrBudgetSpent); err != nil {
			giveBack()
			return nil, time.Since(start), err
		}
	}
	if bytes > 0 {
		held = append(held, func() { g.memory.Release(bytes) })
	}
	if waits {
		waited = time.Since(start)
	}
	var once sync.Once
	return func() { once.Do(giveBack) }, waited, nil
}

// wait acquires n of sem within the Gate's wait, or returns refused (or ctx's error).
func (g *Gate) wait(ctx context.Context, sem *semaphore.Weighted, n int64, refused error) error {
	wctx, cancel := context.WithTimeoutCause(ctx, g.cfg.Wait, refused)
	defer cancel()
	if err := sem.Acquire(wctx, n); err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return refused
	}
	return nil
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
