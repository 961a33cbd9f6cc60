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
	"sync/atomic"
	"time"

	"cloudinary-upload-api/internal/auth"
	"cloudinary-upload-api/internal/ratelimit"
)

// rateLimiter is RATE_LIMIT as the HTTP layer sees it: the buckets (in memory, or shared through
// Redis with REDIS_URL) and what it needs to name clients and to tell them where they stand.
type rateLimiter struct {
	spec       ratelimit.Spec
	lim        ratelimit.Limiter
	trustProxy bool
	policy     string // the RateLimit-Policy value, the same on every answer

	warnedForwarded atomic.Bool
}

// newRateLimiter keeps the buckets in memory, or in Redis when shared is not nil (falling back to
// the memory ones while Redis does not answer).
func newRateLimiter(spec ratelimit.Spec, trustProxy bool, now func() time.Time, shared *ratelimit.Conn) *rateLimiter {
	l := &rateLimiter{spec: spec, trustProxy: trustProxy}
	if spec.Off() {
		return l
	}
	mem := ratelimit.NewMemory(spec, now)
	l.lim = mem
	if shared != nil {
		l.lim = ratelimit.NewShared(shared, spec, mem)
	}
	// A token bucket of burst B refilling in W seconds lets B requests through in any W seconds
	// from a full bucket: the quota and window of draft-ietf-httpapi-ratelimit-headers.
	l.policy = fmt.Sprintf(`%s;q=%d;w=%d`, ratePolicyName, spec.Burst, ceilSeconds(spec.FillTime()))
	return l
}

// ratePolicyName names RATE_LIMIT's policy in RateLimit and RateLimit-Policy.
const ratePolicyName = `"default"`

func ceilSeconds(d time.Duration) int { return int(math.Ceil(d.Seconds())) }

// clientKeyOf names the client a request comes from, for every per-client limit (the rate limit
// and the uploads in flight): the connection's address or, behind a trusted proxy, the right-most X-Forwarded-For entry, the one the proxy itself appended (Heroku's
// router does). Entries to its left are whatever the client sent, so they are never used.
// IPv6 clients are keyed by their /64, which one host can fill with addresses.
//
// A signed-in user is keyed as the user ("user:" and the token's sub), wherever they connect from.
func clientKeyOf(r *http.Request, trustProxy bool) string {
	if u, ok := auth.FromContext(r.Context()); ok {
		return "user:" + u.Subject
	}
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

// limitRate answers 429 with Retry-After when the client has used up its budget (after reading and
// dropping the body within drainBody's bounds, as the upload's own early errors do). It sits after
// identify and before requireAccess, so floods without a token are limited too, and token
// guessing with them, per address; a signed-in user is limited as the user. Every
// answer that passed through it carries RateLimit-Policy and RateLimit (remaining requests, and
// seconds until the bucket is full again), so a client can slow down before it meets a 429.
func limitRate(l *rateLimiter, next http.Handler) http.Handler {
	if l == nil || l.spec.Off() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !l.trustProxy && r.Header.Get("X-Forwarded-For") != "" && l.warnedForwarded.CompareAndSwap(false, true) {
			loggerFrom(r.Context()).WarnContext(r.Context(),
				"requests carry X-Forwarded-For but TRUST_PROXY is off: every client behind the proxy shares one rate limit; set TRUST_PROXY=true behind Heroku's router")
		}
		key := clientKeyOf(r, l.trustProxy)
		d := l.lim.Allow(r.Context(), key)
		h := w.Header()
		h.Set("RateLimit-Policy", l.policy)
		h.Set("RateLimit", fmt.Sprintf("%s;r=%d;t=%d", ratePolicyName, d.Remaining, ceilSeconds(d.Reset)))
		if !d.Allowed {
			h.Set("Retry-After", strconv.Itoa(max(ceilSeconds(d.RetryAfter), 1)))
			loggerFrom(r.Context()).DebugContext(r.Context(), "rate limited", slog.String("client", key))
			writeError(w, r, errRateLimited)
			drainBody(w, r, r.Body) // bounded; so that a browser still sending sees Retry-After
			return
		}
		next.ServeHTTP(w, r)
	})
}
