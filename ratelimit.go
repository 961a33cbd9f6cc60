package main

import (
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// rateSpec is a parsed RATE_LIMIT: on average perSecond requests per second per client,
// with up to burst at once. The zero value means no limit.
type rateSpec struct {
	perSecond rate.Limit
	burst     int
	text      string // as configured, for the log
}

func (s rateSpec) off() bool { return s.burst == 0 }

// parseRateLimit reads "N/unit" with unit s, min or h (also sec, second, m, minute, hour),
// optionally followed by ",burst=B"; B defaults to N. "off" disables the limit.
func parseRateLimit(v string) (rateSpec, error) {
	v = strings.TrimSpace(v)
	bad := fmt.Errorf("RATE_LIMIT=%q: want N/unit with unit s, min or h and an optional ,burst=B (e.g. 60/min,burst=20), or off", v)
	if strings.EqualFold(v, "off") {
		return rateSpec{text: "off"}, nil
	}
	spec, burstPart, hasBurst := strings.Cut(v, ",")
	countText, unit, ok := strings.Cut(strings.TrimSpace(spec), "/")
	if !ok {
		return rateSpec{}, bad
	}
	n, err := strconv.Atoi(strings.TrimSpace(countText))
	if err != nil || n <= 0 || n > 1_000_000 {
		return rateSpec{}, bad
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
		return rateSpec{}, bad
	}
	burst := n
	if hasBurst {
		key, val, ok := strings.Cut(strings.TrimSpace(burstPart), "=")
		b, err := strconv.Atoi(strings.TrimSpace(val))
		if !ok || strings.TrimSpace(key) != "burst" || err != nil || b <= 0 || b > 1_000_000 {
			return rateSpec{}, bad
		}
		burst = b
	}
	return rateSpec{perSecond: rate.Limit(float64(n) / per.Seconds()), burst: burst, text: v}, nil
}

// fillTime is how long an idle client's bucket takes to become full again. A limiter idle for
// that long is the same as a new one, so dropping it changes nothing for its client.
func (s rateSpec) fillTime() time.Duration {
	return time.Duration(float64(s.burst) / float64(s.perSecond) * float64(time.Second))
}

// maxClients bounds the limiters kept at once (about 200 bytes each, see the README). Past it,
// new clients share one limiter until idle ones are dropped: a flood from many addresses is
// throttled as one, while the clients already known keep their own buckets.
const maxClients = 100_000

// clientLimiter is one client's bucket and when it was last used.
type clientLimiter struct {
	lim      *rate.Limiter
	lastSeen time.Time
}

// rateLimiter keeps one token bucket per client. Idle buckets are dropped lazily, during the
// requests themselves, so no goroutine needs stopping.
type rateLimiter struct {
	spec       rateSpec
	trustProxy bool
	now        func() time.Time

	mu        sync.Mutex
	clients   map[string]*clientLimiter
	overflow  *rate.Limiter
	lastSweep time.Time

	warnedForwarded atomic.Bool
}

func newRateLimiter(spec rateSpec, trustProxy bool, now func() time.Time) *rateLimiter {
	return &rateLimiter{
		spec:       spec,
		trustProxy: trustProxy,
		now:        now,
		clients:    map[string]*clientLimiter{},
		overflow:   rate.NewLimiter(spec.perSecond, spec.burst),
		lastSweep:  now(),
	}
}

// reserve takes one token for key and returns how long to wait when there is none.
func (l *rateLimiter) reserve(key string) time.Duration {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	idle := l.spec.fillTime()
	if now.Sub(l.lastSweep) >= idle || len(l.clients) >= maxClients && now.Sub(l.lastSweep) >= time.Second {
		for k, c := range l.clients {
			if now.Sub(c.lastSeen) >= idle {
				delete(l.clients, k)
			}
		}
		l.lastSweep = now
	}
	var lim *rate.Limiter
	if c, ok := l.clients[key]; ok {
		c.lastSeen = now
		lim = c.lim
	} else if len(l.clients) < maxClients {
		lim = rate.NewLimiter(l.spec.perSecond, l.spec.burst)
		l.clients[key] = &clientLimiter{lim: lim, lastSeen: now}
	} else {
		lim = l.overflow
	}
	res := lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now) // a refused request does not use up a later token
		return d
	}
	return 0
}

// size is the number of limiters kept.
func (l *rateLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}

// clientKeyOf names the client a request comes from, for every per-client limit (the rate limit
// and the uploads in flight): the connection's address or, behind a trusted proxy, the right-most X-Forwarded-For entry, the one the proxy itself appended (Heroku's
// router does). Entries to its left are whatever the client sent, so they are never used.
// IPv6 clients are keyed by their /64, which one host can fill with addresses.
func clientKeyOf(r *http.Request, trustProxy bool) string {
	if trustProxy {
		if vals := r.Header.Values("X-Forwarded-For"); len(vals) > 0 {
			last := vals[len(vals)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if addr, err := netip.ParseAddr(strings.TrimSpace(last)); err == nil {
				return addrKey(addr)
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		return addrKey(addr)
	}
	return host
}

func addrKey(a netip.Addr) string {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, err := a.Prefix(64)
		if err == nil {
			return p.String()
		}
	}
	return a.String()
}

var errRateLimited = apiError{http.StatusTooManyRequests, "too many requests from this client; try again later"}

// limitRate answers 429 with Retry-After when the client has used up its budget (after reading and
// dropping the body within drainBody's bounds, as the upload's own early errors do). It sits before
// requireToken, so floods without a token are limited too, and token guessing with them.
func limitRate(l *rateLimiter, next http.Handler) http.Handler {
	if l == nil || l.spec.off() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !l.trustProxy && r.Header.Get("X-Forwarded-For") != "" && l.warnedForwarded.CompareAndSwap(false, true) {
			loggerFrom(r.Context()).WarnContext(r.Context(),
				"requests carry X-Forwarded-For but TRUST_PROXY is off: every client behind the proxy shares one rate limit; set TRUST_PROXY=true behind Heroku's router")
		}
		key := clientKeyOf(r, l.trustProxy)
		if wait := l.reserve(key); wait > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			loggerFrom(r.Context()).DebugContext(r.Context(), "rate limited", slog.String("client", key))
			writeError(w, r, errRateLimited)
			drainBody(w, r, r.Body) // bounded; so that a browser still sending sees Retry-After
			return
		}
		next.ServeHTTP(w, r)
	})
}
