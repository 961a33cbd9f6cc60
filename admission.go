package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"cloudinary-upload-api/internal/admission"
	"cloudinary-upload-api/internal/cloudinary"
	"cloudinary-upload-api/internal/imageguard"
)

// perUploadOverhead is what an upload holds besides its read, copy and chunk buffers: the
// sniffed head (3 KiB), multipart's own 4 KiB buffer, the gathered small writes (8 KiB), the
// upstream connection's 16 KiB write and 64 KiB read buffers, net/http's buffers and stacks.
const perUploadOverhead = 128 << 10

// uploadReservation is the memory one upload reserves from UPLOAD_MEMORY when it is admitted:
// its read buffer and copy buffer, the image guard's window (an image's metadata before its
// image data, up to imageguard.DefaultMaxMetadataBytes, which may stand twice for a moment while
// its buffer grows). With chunked, it is the most one upload may hold: that, and, when it goes to
// Cloudinary in chunks, a whole chunk buffer (CHUNK_SIZE and the byte read ahead), which it
// reserves block by block as the chunk's bytes arrive, not when it is admitted.
func (cfg config) uploadReservation(chunked bool) int64 {
	n := int64(requestBufferBytes + copyBufferBytes + perUploadOverhead + 2*imageguard.DefaultMaxMetadataBytes)
	if chunked {
		n += cfg.chunkReservation()
	}
	return n
}

// chunkReservation is the most an upload's chunk buffer holds, or 0 when uploads are not chunked.
func (cfg config) chunkReservation() int64 {
	if cfg.Storage != "cloudinary" {
		return 0
	}
	return cloudinary.ChunkBufferBytes(cfg.ChunkSize)
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
			MemoryBytes:        cfg.UploadMemory,
			Wait:               cfg.AdmissionWait,
			MaxUploads:         cfg.MaxConcurrent,
			MaxPerClient:       cfg.MaxPerClient,
			MaxMemoryPerClient: cfg.maxMemoryPerClient,
			ChunkBytes:         cfg.chunkReservation(),
			Leases:             leases,
		}),
		cfg:     cfg,
		minRate: cfg.MinRate,
		trust:   cfg.trustProxy,
		m:       m,
		now:     now,
	}
}

// admit reserves what the upload holds at first, or returns the client's error (with
// Retry-After set). A client at its MAX_UPLOADS_PER_CLIENT or MAX_MEMORY_PER_CLIENT is refused at
// once; an upload that finds the memory spent waits for it up to ADMISSION_WAIT. The upload's
// Release may be called more than once; its memory (for store.Params) grows a chunk's buffer.
func (a *uploadAdmission) admit(w http.ResponseWriter, r *http.Request) (*uploadMemory, error) {
	client := clientKeyOf(r, a.trust)
	u, waited, err := a.gate.AdmitUpload(r.Context(), client, a.cfg.uploadReservation(false))
	if waited > 0 {
		a.m.admissionWait.Observe(waited.Seconds())
	}
	if err == nil {
		loggerFrom(r.Context()).DebugContext(r.Context(), "upload admitted", slog.String("client", client), slog.Int64("client_memory", a.gate.Held(client)))
		return &uploadMemory{u: u}, nil
	}
	err = admissionError(err)
	a.refusedFor(w, r, err)
	loggerFrom(r.Context()).DebugContext(r.Context(), "upload not admitted", slog.String("client", client), slog.Any("err", err))
	return nil, err
}

// refusedFor counts a refusal of the budget's or the client's caps (at admission, or while a
// chunk waits for memory) and sets its Retry-After; other errors are not its business.
func (a *uploadAdmission) refusedFor(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, errClientBusy):
		a.refused("per_client")
	case errors.Is(err, errClientMemory):
		a.refused("client_memory")
	case errors.Is(err, errTooBusy):
		a.refused("budget")
	default:
		return
	}
	w.Header().Set("Retry-After", retryAfterBusy)
}

// uploadMemory is an admitted upload's hold on UPLOAD_MEMORY, as a store sees it (store.Memory):
// a chunked upload grows it as each chunk's bytes arrive. Its errors are the client's.
type uploadMemory struct{ u *admission.Upload }

func (m *uploadMemory) Grow(ctx context.Context, n int64) error {
	if err := m.u.Grow(ctx, n); err != nil {
		return admissionError(err)
	}
	return nil
}

func (m *uploadMemory) Shrink() { m.u.Shrink() }

// release gives back everything the upload holds; it may be called more than once.
func (m *uploadMemory) release() { m.u.Release() }

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
		refuseEarly(w, r, errForeignOrigin)
	}))
	return c.Handler
}
