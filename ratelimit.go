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
	spec   ratelimit.Spec
	lim    ratelimit.Limiter
	trust  proxyTrust
	policy string // the RateLimit-Policy value, the same on every answer

	warnedForwarded atomic.Bool // once: X-Forwarded-For arrives while TRUST_PROXY is off
	warnedFallback  atomic.Bool // once: TRUST_PROXY's header was missing or unreadable
}

// newRateLimiter keeps the buckets in memory, or in Redis when shared is not nil (falling back to
// the memory ones while Redis does not answer).
func newRateLimiter(spec ratelimit.Spec, trust proxyTrust, now func() time.Time, shared *ratelimit.Conn) *rateLimiter {
	l := &rateLimiter{spec: spec, trust: trust}
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

// proxyTrust is TRUST_PROXY: how the platform in front of the server tells the client's address.
// The zero value trusts no header: the client is the connection's address.
type proxyTrust struct {
	name   string // as configured, normalised: false, heroku, fly, cloudflare or xff:N
	header string // the header that names the client; empty: none
	hop    int    // X-Forwarded-For only: the client is the hop-th entry from the right (1: the right-most)
}

// proxyTrustChoices is what TRUST_PROXY may say, for the start-up error.
const proxyTrustChoices = "false, true or heroku (the right-most X-Forwarded-For), fly (Fly-Client-IP), cloudflare (CF-Connecting-IP), or xff:N (the Nth X-Forwarded-For entry from the right)"

// parseProxyTrust reads TRUST_PROXY.
func parseProxyTrust(setting string) (proxyTrust, error) {
	v := strings.ToLower(strings.TrimSpace(setting))
	switch v {
	case "false", "0", "no", "off":
		return proxyTrust{name: "false"}, nil
	case "true", "1", "yes", "heroku":
		return proxyTrust{name: "heroku", header: "X-Forwarded-For", hop: 1}, nil
	case "fly":
		return proxyTrust{name: "fly", header: "Fly-Client-IP"}, nil
	case "cloudflare":
		return proxyTrust{name: "cloudflare", header: "CF-Connecting-IP"}, nil
	}
	if n, ok := strings.CutPrefix(v, "xff:"); ok {
		// A chain of more than a few proxies the operator trusts is a mistake, not a deployment.
		if hop, err := strconv.Atoi(n); err == nil && hop >= 1 && hop <= 10 {
			return proxyTrust{name: "xff:" + strconv.Itoa(hop), header: "X-Forwarded-For", hop: hop}, nil
		}
	}
	return proxyTrust{}, fmt.Errorf("TRUST_PROXY=%q: want %s", setting, proxyTrustChoices)
}

// String is the setting as the start-up log shows it.
func (t proxyTrust) String() string {
	if t.name == "" {
		return "false"
	}
	return t.name
}

// on reports whether a header names the client.
func (t proxyTrust) on() bool { return t.header != "" }

// clientKeyOf names the client a request comes from, for every per-client limit (the rate limit
// and the uploads in flight): a signed-in user as the user ("user:" and the token's sub),
// wherever they connect from; anyone else by address (see clientAddr).
func clientKeyOf(r *http.Request, trust proxyTrust) string {
	key, _ := clientKeyAndFallback(r, trust)
	return key
}

// clientKeyAndFallback is clientKeyOf, and whether a trusted proxy's header was missing.
func clientKeyAndFallback(r *http.Request, trust proxyTrust) (key string, fellBack bool) {
	if u, ok := auth.FromContext(r.Context()); ok {
		return "user:" + u.Subject, false
	}
	return clientAddr(r, trust)
}

// clientAddr names the client a request comes from: the connection's address or, behind a
// trusted proxy, the address in the header TRUST_PROXY names. For X-Forwarded-For that is the
// entry the proxies themselves appended, counted from the right (Heroku's router appends one;
// Google's load balancer appends the client and then itself): entries to its left are whatever
// the client sent, so they are never used. All the X-Forwarded-For lines count as one list, as
// RFC 9110 §5.3 joins them. A missing or unreadable header gives the connection's address, and
// fellBack: whoever reaches the server without the proxy then shares the proxy's one budget,
// and can never pick a key of their own.
// IPv6 clients are keyed by their /64, which one host can fill with addresses.
func clientAddr(r *http.Request, trust proxyTrust) (key string, fellBack bool) {
	if trust.on() {
		if addr, ok := headerAddr(r.Header.Values(trust.header), trust.hop); ok {
			return addrKey(addr), false
		}
		fellBack = true
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		return addrKey(addr), fellBack
	}
	return host, fellBack
}

// headerAddr reads the client's address from a header's lines: with hop 0, a header of one
// address (the last line, if the proxy added one after the client's own); else the hop-th entry
// from the right of the comma-separated list.
func headerAddr(lines []string, hop int) (netip.Addr, bool) {
	if len(lines) == 0 {
		return netip.Addr{}, false
	}
	entry := lines[len(lines)-1]
	if hop > 0 {
		entries := strings.Split(strings.Join(lines, ","), ",")
		if hop > len(entries) { // fewer entries than the proxies named: not from that chain
			return netip.Addr{}, false
		}
		entry = entries[len(entries)-hop]
	}
	addr, err := netip.ParseAddr(strings.TrimSpace(entry))
	return addr, err == nil
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

// limitRate answers 429 with Retry-After when the client has used up its budget (at once, then
// reading and dropping the body within refuseEarly's bounds, as the upload's own early errors do). It sits after
// identify and before requireAccess, so floods without a token are limited too, and token
// guessing with them, per address; a signed-in user is limited as the user. Every
// answer that passed through it carries RateLimit-Policy and RateLimit (remaining requests, and
// seconds until the bucket is full again), so a client can slow down before it meets a 429.
func limitRate(l *rateLimiter, next http.Handler) http.Handler {
	if l == nil || l.spec.Off() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !l.trust.on() && r.Header.Get("X-Forwarded-For") != "" && l.warnedForwarded.CompareAndSwap(false, true) {
			loggerFrom(r.Context()).WarnContext(r.Context(),
				"requests carry X-Forwarded-For but TRUST_PROXY is off: every client behind the proxy shares one rate limit; set TRUST_PROXY for your platform (docs/deploy.md)")
		}
		key, fellBack := clientKeyAndFallback(r, l.trust)
		if fellBack && l.warnedFallback.CompareAndSwap(false, true) {
			loggerFrom(r.Context()).WarnContext(r.Context(),
				"TRUST_PROXY="+l.trust.String()+" but a request has no usable "+l.trust.header+" (logged once): it is counted under the connection's address, with every other such request",
				slog.String("client", key))
		}
		d := l.lim.Allow(r.Context(), key)
		h := w.Header()
		h.Set("RateLimit-Policy", l.policy)
		h.Set("RateLimit", fmt.Sprintf("%s;r=%d;t=%d", ratePolicyName, d.Remaining, ceilSeconds(d.Reset)))
		if !d.Allowed {
			h.Set("Retry-After", strconv.Itoa(max(ceilSeconds(d.RetryAfter), 1)))
			loggerFrom(r.Context()).DebugContext(r.Context(), "rate limited", slog.String("client", key))
			refuseEarly(w, r, errRateLimited) // at once, then drained: a browser still sending sees Retry-After
			return
		}
		next.ServeHTTP(w, r)
	})
}
