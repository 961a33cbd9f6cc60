package ratelimit

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
)

// QuotaSpec is a parsed USER_QUOTA: at most Bytes stored per client per Window. The zero value
// means no quota.
//
// The window is fixed, and starts with the client's first bytes counted: from then on the client
// may store Bytes until Window has passed, when the whole quota is back at once and the next
// upload starts a new window. (A client can so store up to twice Bytes in a short time across the
// end of a window; in exchange the count is one number per client, and "when is it back" has one
// exact answer, which Retry-After and RateLimit give.)
type QuotaSpec struct {
	Bytes  int64
	Window time.Duration
	Text   string // as configured, for the log and the messages
}

// Off says that there is no quota.
func (s QuotaSpec) Off() bool { return s.Bytes == 0 }

// maxQuotaBytes keeps every count exact in Redis's Lua, whose numbers are doubles (1 PiB < 2^53).
const maxQuotaBytes = 1 << 50

// quotaUnits are the sizes USER_QUOTA takes: decimal (SI) and binary (IEC) multiples.
var quotaUnits = map[string]int64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

// quotaPeriods are the named windows; any other is a number with s, m, h or d (e.g. 30d, 12h).
var quotaPeriods = map[string]time.Duration{
	"second": time.Second, "minute": time.Minute, "hour": time.Hour,
	"day": 24 * time.Hour, "week": 7 * 24 * time.Hour,
}

// ParseQuota reads USER_QUOTA: SIZE/WINDOW, where SIZE is a number (a fraction allowed) with a
// unit B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), and WINDOW is
// day, hour, week (also minute, second) or a number with s, m, h or d: "500MB/day", "2GB/30d",
// "1GiB/12h". "off" or empty: no quota. Errors name USER_QUOTA and say the expected form.
func ParseQuota(v string) (QuotaSpec, error) {
	v = strings.TrimSpace(v)
	if v == "" || strings.EqualFold(v, "off") {
		return QuotaSpec{Text: "off"}, nil
	}
	bad := fmt.Errorf("USER_QUOTA=%q: want SIZE/WINDOW such as 500MB/day, 2GB/30d or 1GiB/12h (sizes in B, KB, MB, GB, TB or KiB, MiB, GiB, TiB, up to 1 PiB; windows day, hour, week or a number with s, m, h or d), or off", v)
	size, period, ok := strings.Cut(v, "/")
	if !ok {
		return QuotaSpec{}, bad
	}
	n, ok := parseQuotaSize(strings.TrimSpace(size))
	if !ok {
		return QuotaSpec{}, bad
	}
	w, ok := parseQuotaWindow(strings.ToLower(strings.TrimSpace(period)))
	if !ok {
		return QuotaSpec{}, bad
	}
	return QuotaSpec{Bytes: n, Window: w, Text: v}, nil
}

// parseQuotaSize reads a number of bytes with an optional unit; at least 1 byte, at most 1 PiB.
func parseQuotaSize(s string) (int64, bool) {
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.TrimSpace(s[i:])
	}
	mult, ok := quotaUnits[strings.ToLower(unit)]
	if !ok || num == "" || strings.Count(num, ".") > 1 || strings.HasSuffix(num, ".") || strings.HasPrefix(num, ".") {
		return 0, false
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, false
	}
	bytes := math.Floor(f * float64(mult))
	if bytes < 1 || bytes > maxQuotaBytes {
		return 0, false
	}
	return int64(bytes), true
}

// parseQuotaWindow reads a named window or a number with s, m, h or d; at least a second, at
// most a year.
func parseQuotaWindow(s string) (time.Duration, bool) {
	if d, ok := quotaPeriods[s]; ok {
		return d, true
	}
	if len(s) < 2 {
		return 0, false
	}
	per, ok := map[byte]time.Duration{'s': time.Second, 'm': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour}[s[len(s)-1]]
	n, err := strconv.Atoi(s[:len(s)-1])
	if !ok || err != nil || n <= 0 || time.Duration(n) > 366*24*time.Hour/per {
		return 0, false
	}
	return time.Duration(n) * per, true
}

// Grant is bytes taken from a client's quota: how many, and in which window of which count (a
// window of Redis, or of this server's memory), so that what is given back goes back to the
// window it was taken from, and never to a later one.
type Grant struct {
	Bytes  int64
	window int64 // which window: its start in Redis's milliseconds, or its number in this server's memory
	shared bool  // taken in Redis
}

// QuotaState is where a client stands.
type QuotaState struct {
	Remaining int64         // bytes the client may still store in this window
	Reset     time.Duration // until the window ends and the whole quota is back (a whole window when none has started)
}

// Quotas counts the bytes each client stores per window. An upload reserves bytes before it
// sends them and gives back, at its end, whatever was not stored: so a failed or refused upload
// spends nothing, and two uploads of one client at once can never both take the last bytes.
type Quotas interface {
	// Reserve takes at least need and at most want bytes of key's quota (need ≤ want), as many as
	// are left; when fewer than need are left it takes nothing and the Grant's Bytes is 0.
	Reserve(ctx context.Context, key string, need, want int64) (Grant, QuotaState)
	// Release gives n bytes of g back (0 ≤ n ≤ g.Bytes) and says where key stands; with the zero
	// Grant it only says where key stands. Bytes of a window that has ended are not given to
	// the next one.
	Release(ctx context.Context, key string, g Grant, n int64) QuotaState
}

// quotaWindow is one client's count in memory.
type quotaWindow struct {
	id    int64 // which window of this count: each new one takes the next number
	start time.Time
	used  int64
}

// MemoryQuotas keeps each client's window in this process. At most MaxClients windows are kept;
// past that, new clients share one window until ended ones are dropped (lazily, during the
// calls, so no goroutine needs stopping), as Memory's buckets do.
type MemoryQuotas struct {
	spec QuotaSpec
	now  func() time.Time

	mu        sync.Mutex
	clients   map[string]*quotaWindow
	overflow  quotaWindow
	lastSweep time.Time
	windows   int64 // windows started, for their ids
}

// NewMemoryQuotas builds the in-memory count for spec, which must not be Off; now is the clock.
func NewMemoryQuotas(spec QuotaSpec, now func() time.Time) *MemoryQuotas {
	return &MemoryQuotas{spec: spec, now: now, clients: map[string]*quotaWindow{}, lastSweep: now()}
}

// window is key's current window, started anew when the last one has ended. m.mu is held.
func (m *MemoryQuotas) window(key string, now time.Time) *quotaWindow {
	if now.Sub(m.lastSweep) >= m.spec.Window || len(m.clients) >= MaxClients && now.Sub(m.lastSweep) >= time.Second {
		for k, w := range m.clients {
			if now.Sub(w.start) >= m.spec.Window {
				delete(m.clients, k)
			}
		}
		m.lastSweep = now
	}
	w, ok := m.clients[key]
	switch {
	case ok:
	case len(m.clients) < MaxClients:
		w = &quotaWindow{start: now.Add(-m.spec.Window)} // ended: started below
		m.clients[key] = w
	default:
		w = &m.overflow
	}
	if now.Sub(w.start) >= m.spec.Window {
		m.windows++
		*w = quotaWindow{id: m.windows, start: now}
	}
	return w
}

func (m *MemoryQuotas) state(w *quotaWindow, now time.Time) QuotaState {
	return QuotaState{Remaining: m.spec.Bytes - w.used, Reset: w.start.Add(m.spec.Window).Sub(now)}
}

// Reserve takes between need and want bytes of key's quota, or nothing.
func (m *MemoryQuotas) Reserve(_ context.Context, key string, need, want int64) (Grant, QuotaState) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.window(key, now)
	left := m.spec.Bytes - w.used
	if left < need {
		return Grant{}, m.state(w, now)
	}
	g := Grant{Bytes: min(want, left), window: w.id}
	w.used += g.Bytes
	return g, m.state(w, now)
}

// Release gives n bytes of g back, if its window is still the current one.
func (m *MemoryQuotas) Release(_ context.Context, key string, g Grant, n int64) QuotaState {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	w, ok := m.clients[key]
	if !ok && len(m.clients) >= MaxClients {
		w, ok = &m.overflow, true // a client past MaxClients counts in the shared window
	}
	if !ok || now.Sub(w.start) >= m.spec.Window {
		// No window: nothing to give back, and the whole quota is there.
		return QuotaState{Remaining: m.spec.Bytes, Reset: m.spec.Window}
	}
	if g.Bytes > 0 && !g.shared && g.window == w.id {
		w.used = max(w.used-min(n, g.Bytes), 0)
	}
	return m.state(w, now)
}

// Size is the number of windows kept.
func (m *MemoryQuotas) Size() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.clients)
}
