package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"cloudinary-upload-api/internal/admission"
	"cloudinary-upload-api/internal/cloudinary"
	"cloudinary-upload-api/internal/upload"
)

// perUploadOverhead is what an upload holds besides its read, copy and chunk buffers: the
// sniffed head (3 KiB), multipart's own 4 KiB buffer, the gathered small writes (8 KiB), the
// upstream connection's 16 KiB write and 64 KiB read buffers, net/http's buffers and stacks.
const perUploadOverhead = 128 << 10

// leastRequestBuffer is the smallest read buffer under a form: larger than formOverhead, so that
// part headers are bounded by formOverhead whatever the buffer.
const leastRequestBuffer = 128 << 10

// uploadReservation is the most one upload may reserve from UPLOAD_MEMORY when it is admitted
// (uploadReservationFor a body of unknown size). With chunked, it is the most one upload may
// hold: that, and, when it goes to Cloudinary in chunks, a whole chunk buffer (CHUNK_SIZE and
// the byte read ahead), which it reserves block by block as the chunk's bytes arrive, not when
// it is admitted.
func (cfg config) uploadReservation(chunked bool) int64 {
	n := cfg.uploadReservationFor(-1)
	if chunked {
		n += cfg.chunkReservation()
	}
	return n
}

// uploadReservationFor is what an upload whose request body has size bytes (its Content-Length;
// -1: unknown) reserves when it is admitted, sized to what it can hold: its read buffer (the size
// class that holds the body, up to requestBufferBytes), what the pipeline holds for a file of at
// most that size (a copy buffer, the image guard's window: upload.Rules.Holds), and
// perUploadOverhead. A 100 KB upload reserves about 550 KiB, one of unknown or large size 3.4 MiB.
func (cfg config) uploadReservationFor(size int64) int64 {
	read := upload.SizeClass(size, leastRequestBuffer, requestBufferBytes)
	return int64(read) + cfg.uploadLimits().rules().Holds(size) + perUploadOverhead
}

// chunkReservation is the most an upload's chunk buffer holds, or 0 when uploads are not chunked.
func (cfg config) chunkReservation() int64 {
	if cfg.Storage != "cloudinary" {
		return 0
	}
	return cloudinary.ChunkBufferBytes(cfg.ChunkSize)
}

// uploadAdmission decides, for POST /upload, who gets in and when (internal/admission does the
// counting), and the minimum data rate of the bodies of those admitted.
type uploadAdmission struct {
	gate    *admission.Gate
	cfg     config
	minRate admission.Rule // MIN_UPLOAD_RATE, for the bodies of those admitted
	trust   proxyTrust
	m       *metrics
}

func newUploadAdmission(cfg config, leases admission.Leases, m *metrics) *uploadAdmission {
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
	}
}

// admit reserves what the upload holds at first, or returns the client's error (with
// Retry-After set). A client at its MAX_UPLOADS_PER_CLIENT or MAX_MEMORY_PER_CLIENT is refused at
// once; an upload that finds the memory spent waits for it up to ADMISSION_WAIT. The upload's
// Release may be called more than once; its memory (for store.Params) grows a chunk's buffer.
func (a *uploadAdmission) admit(w http.ResponseWriter, r *http.Request) (*uploadMemory, error) {
	client := clientKeyOf(r, a.trust)
	u, waited, err := a.gate.AdmitUpload(r.Context(), client, a.cfg.uploadReservationFor(r.ContentLength))
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
