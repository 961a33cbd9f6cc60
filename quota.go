package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"cloudinary-upload-api/internal/ratelimit"
)

// uploadQuota is USER_QUOTA as the HTTP layer sees it: the bytes each client may store per
// window (internal/ratelimit counts them, in memory or in Redis), who a client is, and what the
// answers say of it. A nil *uploadQuota is no quota.
//
// An upload reserves its bytes as they are admitted: a request with a Content-Length reserves
// that much before its body is read (and is refused at once when it would pass the quota); one
// without counts its files' bytes as they stream, reserving ahead in steps of quotaStep, and is
// stopped when they pass it. At the answer, whatever was reserved and not stored is given back:
// a file refused, failed or stopped spends nothing.
type uploadQuota struct {
	spec       ratelimit.QuotaSpec
	counts     ratelimit.Quotas
	trustProxy proxyTrust
	policy     string // the quota's member of RateLimit-Policy, the same on every answer
	m          *metrics
}

// quotaPolicyName names USER_QUOTA's policy in RateLimit and RateLimit-Policy.
const quotaPolicyName = `"quota"`

// A streamed upload reserves ahead what it has reserved so far, at least quotaStep and at most
// maxQuotaStep: a 20 MB file makes 6 calls to Redis, a 1 GB one about 70. Reserved ahead only
// ever comes out of what is left, so an upload is never refused for its own reservation (another
// upload of the same client at once may find less left, by at most what this one reserved ahead).
const (
	quotaStep    = 1 << 20
	maxQuotaStep = 16 << 20
)

// newUploadQuota keeps the counts in memory, or in Redis when shared is not nil (falling back to
// memory while Redis does not answer). It is nil when spec is off.
func newUploadQuota(spec ratelimit.QuotaSpec, trustProxy proxyTrust, now func() time.Time, shared *ratelimit.Conn, m *metrics) *uploadQuota {
	if spec.Off() {
		return nil
	}
	q := &uploadQuota{spec: spec, trustProxy: trustProxy, m: m}
	mem := ratelimit.NewMemoryQuotas(spec, now)
	q.counts = mem
	if shared != nil {
		q.counts = ratelimit.NewSharedQuotas(shared, spec, mem)
	}
	// draft-ietf-httpapi-ratelimit-headers: q the quota, qu its unit, w the window in seconds.
	q.policy = fmt.Sprintf(`%s;q=%d;qu="content-bytes";w=%d`, quotaPolicyName, spec.Bytes, ceilSeconds(spec.Window))
	return q
}

// quotaSpend is one request's use of its client's quota: what it reserved (and where), and how
// much of that its files use. Its methods may be called on nil (no quota).
type quotaSpend struct {
	q   *uploadQuota
	ctx context.Context
	key string

	mu       sync.Mutex
	grants   []ratelimit.Grant
	reserved int64 // the sum of grants
	used     int64 // bytes of files being sent or stored; the rest is given back at settle
	refused  bool  // the quota refused the upload, or a file of it
	wait     bool  // … and waiting for the window's end would help (429, not 413)
	settled  bool
}

// begin starts a request's spending. A request whose Content-Length would pass what is left of
// the quota gets errQuotaExceeded, and one larger than the whole quota errQuotaTooLarge (the
// form can never be stored as it is), before its body is read; either way, settle must still be
// called to answer with the headers. Without a Content-Length, errQuotaTooLarge is for one file
// larger than the whole quota.
func (q *uploadQuota) begin(r *http.Request) (*quotaSpend, error) {
	if q == nil {
		return nil, nil
	}
	s := &quotaSpend{q: q, ctx: r.Context(), key: clientKeyOf(r, q.trustProxy)} // the signed-in user, else the address
	if n := r.ContentLength; n > 0 {
		if n > q.spec.Bytes {
			s.refused = true
			return s, errQuotaTooLarge(q.spec)
		}
		if !s.reserve(n, n) {
			return s, errQuotaExceeded
		}
	}
	return s, nil
}

// reserve takes between need and want more bytes; s.mu is held, or s not yet shared.
func (s *quotaSpend) reserve(need, want int64) bool {
	g, _ := s.q.counts.Reserve(s.ctx, s.key, need, want)
	if g.Bytes == 0 {
		s.refused, s.wait = true, true
		return false
	}
	s.grants = append(s.grants, g)
	s.reserved += g.Bytes
	return true
}

// take counts n more bytes of a file, reserving more when they pass what is reserved.
func (s *quotaSpend) take(n int64) error {
	if s == nil || n == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if need := s.used + n - s.reserved; need > 0 {
		if !s.reserve(need, max(need, min(max(s.reserved, quotaStep), maxQuotaStep))) {
			return errQuotaExceeded
		}
	}
	s.used += n
	return nil
}

// giveBack uncounts n bytes of a file that was not stored.
func (s *quotaSpend) giveBack(n int64) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.used -= n
}

// settle gives back what was reserved and not stored, and sets the quota's RateLimit fields
// (and Retry-After, when the quota refused the upload) for the answer. It must be called before
// the answer is written; a second call does nothing.
func (s *quotaSpend) settle(w http.ResponseWriter, r *http.Request) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.settled {
		return
	}
	s.settled = true
	// Given back last grant first: the bytes stored are counted in the first ones.
	unused := s.reserved - s.used
	var st ratelimit.QuotaState
	known := false
	for i := len(s.grants) - 1; i >= 0 && unused > 0; i-- {
		n := min(s.grants[i].Bytes, unused)
		st, known = s.q.counts.Release(s.ctx, s.key, s.grants[i], n), true
		unused -= n
	}
	if !known {
		st = s.q.counts.Release(s.ctx, s.key, ratelimit.Grant{}, 0)
	}
	h := w.Header()
	appendListMember(h, "RateLimit-Policy", s.q.policy)
	appendListMember(h, "RateLimit", fmt.Sprintf("%s;r=%d;t=%d", quotaPolicyName, max(st.Remaining, 0), ceilSeconds(st.Reset)))
	if s.wait {
		h.Set("Retry-After", strconv.Itoa(max(ceilSeconds(st.Reset), 1)))
	}
	if s.refused {
		s.q.m.refusals.WithLabelValues("quota").Inc()
		loggerFrom(r.Context()).DebugContext(r.Context(), "upload quota refused", slog.String("client", s.key))
	}
}

// appendListMember adds member to a field whose value is a Structured Fields List, on the same
// line (a client reading only the first line of a field still sees every member).
func appendListMember(h http.Header, name, member string) {
	if v := h.Get(name); v != "" {
		member = v + ", " + member
	}
	h.Set(name, member)
}

// fileQuota is one file's share of its request's quota: the bytes it took, given back unless the
// file was stored. Its methods may be called on nil (no quota).
type fileQuota struct {
	spend *quotaSpend
	n     int64
	kept  bool
}

// file starts counting one file of the request.
func (s *quotaSpend) file() *fileQuota {
	if s == nil {
		return nil
	}
	return &fileQuota{spend: s}
}

// take counts n bytes of the file: errQuotaTooLarge when the file alone passes the whole quota,
// errQuotaExceeded when it passes what is left.
func (f *fileQuota) take(n int) error {
	if f == nil {
		return nil
	}
	if f.n+int64(n) > f.spend.q.spec.Bytes {
		f.spend.mu.Lock()
		f.spend.refused = true
		f.spend.mu.Unlock()
		return errQuotaTooLarge(f.spend.q.spec)
	}
	if err := f.spend.take(int64(n)); err != nil {
		return err
	}
	f.n += int64(n)
	return nil
}

// keep says the file was stored: its bytes stay spent.
func (f *fileQuota) keep() {
	if f != nil {
		f.kept = true
	}
}

// end gives the file's bytes back unless it was kept.
func (f *fileQuota) end() {
	if f != nil && !f.kept {
		f.spend.giveBack(f.n)
		f.n = 0
	}
}

type quotaSpendKey struct{}

// withQuotaSpend carries a request's quotaSpend down to its files (uploadFile).
func withQuotaSpend(r *http.Request, s *quotaSpend) *http.Request {
	if s == nil {
		return r
	}
	return r.WithContext(context.WithValue(r.Context(), quotaSpendKey{}, s))
}

// quotaSpendOf is the request's quotaSpend, nil without a quota.
func quotaSpendOf(r *http.Request) *quotaSpend {
	s, _ := r.Context().Value(quotaSpendKey{}).(*quotaSpend)
	return s
}
