// Package ratelimit keeps each client's budgets (requests per time, uploads in flight, bytes
// stored per window) in this process's memory or shared through Redis.
//
// The request budget is a token bucket with a rate and a burst (RATE_LIMIT), shared by every
// server that uses the same Redis; Leases count each client's uploads in flight across servers;
// MemoryQuotas and SharedQuotas keep each client's quota of bytes stored per window (USER_QUOTA).
// It knows nothing of HTTP: a caller names the client with a key and is told allow or refuse,
// how much is left and when to come back.
//
// Redis is never a reason to refuse or fail a request: every call has a deadline, and when Redis
// does not answer the decision is taken in memory until it answers again (see Conn).
package ratelimit

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Spec is a parsed RATE_LIMIT: on average Count requests per Period per client, with up to
// Burst at once. The zero value means no limit.
type Spec struct {
	Count  int
	Period time.Duration
	Burst  int
	Text   string // as configured, for the log
}

// Off says that there is no limit.
func (s Spec) Off() bool { return s.Burst == 0 }

// PerSecond is the rate at which a client's bucket refills.
func (s Spec) PerSecond() float64 { return float64(s.Count) / s.Period.Seconds() }

// FillTime is how long an empty bucket takes to become full again. A client idle for that long
// is the same as a new one.
func (s Spec) FillTime() time.Duration {
	return time.Duration(float64(s.Burst) / s.PerSecond() * float64(time.Second))
}

// Parse reads "N/unit" with unit s, min or h (also sec, second, m, minute, hour), optionally
// followed by ",burst=B"; B defaults to N. "off" disables the limit. Errors name RATE_LIMIT.
func Parse(v string) (Spec, error) {
	v = strings.TrimSpace(v)
	bad := fmt.Errorf("RATE_LIMIT=%q: want N/unit with unit s, min or h and an optional ,burst=B (e.g. 60/min,burst=20), or off", v)
	if strings.EqualFold(v, "off") {
		return Spec{Text: "off"}, nil
	}
	spec, burstPart, hasBurst := strings.Cut(v, ",")
	countText, unit, ok := strings.Cut(strings.TrimSpace(spec), "/")
	if !ok {
		return Spec{}, bad
	}
	n, err := strconv.Atoi(strings.TrimSpace(countText))
	if err != nil || n <= 0 || n > 1_000_000 {
		return Spec{}, bad
	}
	var per time.Duration
	switch strings.ToLower(strings.TrimSpace(unit)) {
	case "s", "sec", "second":
		per = time.Second
	case "m", "min", "minute":
		per = time.Minute
	case "h", "hour":
		per = time.Hour
	default:
		return Spec{}, bad
	}
	burst := n
	if hasBurst {
		key, val, ok := strings.Cut(strings.TrimSpace(burstPart), "=")
		b, err := strconv.Atoi(strings.TrimSpace(val))
		if !ok || strings.TrimSpace(key) != "burst" || err != nil || b <= 0 || b > 1_000_000 {
			return Spec{}, bad
		}
		burst = b
	}
	return Spec{Count: n, Period: per, Burst: burst, Text: v}, nil
}

// Decision is the answer for one request.
type Decision struct {
	Allowed    bool
	Remaining  int           // requests the client may still make at once
	RetryAfter time.Duration // when refused: until the next request would be allowed
	Reset      time.Duration // until the client's bucket is full again
}

// Limiter decides whether the client named by key may make one more request now.
type Limiter interface {
	Allow(ctx context.Context, key string) Decision
}

// MaxClients bounds the buckets a Memory keeps at once (about 200 bytes each). Past it, new
// clients share one bucket until idle ones are dropped: a flood from many addresses is throttled
// as one, while the clients already known keep their own buckets.
const MaxClients = 100_000

// clientBucket is one client's bucket and when it was last used.
type clientBucket struct {
	lim      *rate.Limiter
	lastSeen time.Time
}

// Memory keeps one token bucket per client in this process. Idle buckets are dropped lazily,
// during the requests themselves, so no goroutine needs stopping.
type Memory struct {
	spec Spec
	now  func() time.Time

	mu        sync.Mutex
	clients   map[string]*clientBucket
	overflow  *rate.Limiter
	lastSweep time.Time
}

// NewMemory builds the in-memory limiter for spec, which must not be Off; now is the clock.
func NewMemory(spec Spec, now func() time.Time) *Memory {
	return &Memory{
		spec:      spec,
		now:       now,
		clients:   map[string]*clientBucket{},
		overflow:  rate.NewLimiter(rate.Limit(spec.PerSecond()), spec.Burst),
		lastSweep: now(),
	}
}

// Allow takes one token from key's bucket, or says how long until there is one.
func (m *Memory) Allow(_ context.Context, key string) Decision {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	idle := m.spec.FillTime()
	if now.Sub(m.lastSweep) >= idle || len(m.clients) >= MaxClients && now.Sub(m.lastSweep) >= time.Second {
		for k, c := range m.clients {
			if now.Sub(c.lastSeen) >= idle {
				delete(m.clients, k)
			}
		}
		m.lastSweep = now
	}
	var lim *rate.Limiter
	if c, ok := m.clients[key]; ok {
		c.lastSeen = now
		lim = c.lim
	} else if len(m.clients) < MaxClients {
		lim = rate.NewLimiter(rate.Limit(m.spec.PerSecond()), m.spec.Burst)
		m.clients[key] = &clientBucket{lim: lim, lastSeen: now}
	} else {
		lim = m.overflow
	}
	d := Decision{Allowed: true}
	res := lim.ReserveN(now, 1)
	if wait := res.DelayFrom(now); wait > 0 {
		res.CancelAt(now) // a refused request does not use up a later token
		d = Decision{RetryAfter: wait}
	}
	tokens := max(lim.TokensAt(now), 0)
	d.Remaining = int(math.Floor(tokens))
	d.Reset = time.Duration((float64(m.spec.Burst) - tokens) / m.spec.PerSecond() * float64(time.Second))
	return d
}

// Size is the number of buckets kept.
func (m *Memory) Size() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.clients)
}
