package main

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"cloudinary-upload-api/internal/admission"
	"cloudinary-upload-api/internal/imageguard"
)

// perUploadOverhead is what an upload holds besides its read, copy and chunk buffers: the
// sniffed head (3 KiB), multipart's own 4 KiB buffer, the gathered small writes (8 KiB), the
// upstream connection's 16 KiB write and 64 KiB read buffers, net/http's buffers and stacks.
const perUploadOverhead = 128 << 10

// uploadReservation is the memory one upload reserves from UPLOAD_MEMORY: its read buffer and
// copy buffer, the image guard's window (an image's metadata before its image data, up to
// imageguard.DefaultMaxMetadataBytes, which may stand twice for a moment while its buffer
// grows), and when it goes to Cloudinary in chunks, a chunk buffer (CHUNK_SIZE and the byte
// read ahead).
func (cfg config) uploadReservation(chunked bool) int64 {
	n := int64(requestBufferBytes + copyBufferBytes + perUploadOverhead + 2*imageguard.DefaultMaxMetadataBytes)
	if chunked && cfg.storage == "cloudinary" {
		n += cfg.chunkSize + 1
	}
	return n
}

// uploadAdmission decides, for POST /upload, who gets in and when (internal/admission does the
// counting), and paces the bodies of those admitted.
type uploadAdmission struct {
	gate    *admission.Gate
	cfg     config
	minRate admission.Rule
	trust   proxyTrust
	m       *metrics
	now     func() time.Time
}

func newUploadAdmission(cfg config, leases admission.Leases, m *metrics, now func() time.Time) *uploadAdmission {
	return &uploadAdmission{
		gate: admission.New(admission.Config{
			MemoryBytes:  cfg.uploadMemory,
			Wait:         cfg.admissionWait,
			MaxUploads:   cfg.maxConcurrent,
			MaxPerClient: cfg.maxPerClient,
			Leases:       leases,
		}),
		cfg:     cfg,
		minRate: cfg.minRate,
		trust:   cfg.trustProxy,
		m:       m,
		now:     now,
	}
}

// admit reserves what the upload will hold, or returns the client's error (with Retry-After
// set). A client at its MAX_UPLOADS_PER_CLIENT is refused at once; an upload that finds the
// memory spent waits for it up to ADMISSION_WAIT. release may be called more than once.
func (a *uploadAdmission) admit(w http.ResponseWriter, r *http.Request) (release func(), err error) {
	chunked := r.ContentLength < 0 || r.ContentLength > maxSingleRequestBytes // as serveUpload decides
	client := clientKeyOf(r, a.trust)
	release, waited, err := a.gate.Admit(r.Context(), client, a.cfg.uploadReservation(chunked))
	if waited > 0 {
		a.m.admissionWait.Observe(waited.Seconds())
	}
	if err == nil {
		return release, nil
	}
	err = admissionError(err)
	switch {
	case errors.Is(err, errClientBusy):
		a.refused("per_client")
		w.Header().Set("Retry-After", retryAfterBusy)
		loggerFrom(r.Context()).DebugContext(r.Context(), "client at its uploads in flight", slog.String("client", client))
	case errors.Is(err, errTooBusy):
		a.refused("budget")
		w.Header().Set("Retry-After", retryAfterBusy)
	}
	return nil, err
}

// paced wraps an admitted upload's body with the minimum data rate, if there is one.
func (a *uploadAdmission) paced(body io.ReadCloser) io.ReadCloser {
	if a.minRate.Off() {
		return body
	}
	return newPacedBody(body, a.minRate, a.now)
}

// refused counts a refusal by reason.
func (a *uploadAdmission) refused(reason string) { a.m.refusals.WithLabelValues(reason).Inc() }

// newOriginCheck refuses, when ALLOWED_ORIGINS is not *, a browser's POST from a page of another
// origin: one whose Sec-Fetch-Site says cross-site (or same-site), or, from browsers without it,
// whose Origin is neither this server nor in the list. Requests with neither header (curl,
// servers) pass. A multipart POST needs no CORS preflight, so without this any page could make
// its visitors' browsers upload here. The refusal comes before the body is read.
func newOriginCheck(origins []string, m *metrics) func(http.Handler) http.Handler {
	for _, o := range origins {
		if o == "*" {
			return func(h http.Handler) http.Handler { return h }
		}
	}
	c := http.NewCrossOriginProtection()
	for _, o := range origins {
		if err := c.AddTrustedOrigin(o); err != nil {
			panic(err) // loadConfig accepts only origins like https://example.com
		}
	}
	c.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.refusals.WithLabelValues("origin").Inc()
		loggerFrom(r.Context()).InfoContext(r.Context(), "cross-origin request refused",
			slog.String("origin", r.Header.Get("Origin")), slog.String("sec_fetch_site", r.Header.Get("Sec-Fetch-Site")))
		w.Header().Set("Connection", "close") // else net/http reads up to 256 KiB of the body first
		writeError(w, r, errForeignOrigin)
	}))
	return c.Handler
}
