package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"cloudinary-upload-api/internal/ratelimit"
	"cloudinary-upload-api/internal/store"
	"cloudinary-upload-api/internal/upload"
)

// metrics are the server's Prometheus metrics, in a registry of their own (never the
// client library's global one), built once per server.
type metrics struct {
	registry       *prometheus.Registry
	store          string
	uploads        *prometheus.CounterVec // outcome, store
	uploadBytes    prometheus.Counter
	uploadDuration *prometheus.HistogramVec // outcome
	inFlight       prometheus.Gauge
	upstreamErrors *prometheus.CounterVec // kind
	admissionWait  prometheus.Histogram   // uploads that had to wait for the memory budget (or the cap)
	refusals       *prometheus.CounterVec // reason
	deletes        *prometheus.CounterVec // outcome
}

// The label values, listed so that every series exists (at 0) from the start.
var (
	uploadOutcomes      = []string{"ok", "rejected", "failed", "aborted"}
	upstreamErrorKinds  = []string{"credentials", "rejected", "server_error", "unreachable", "bad_answer", "rate_limited", "timeout", "other"}
	uploadDurationTimes = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	admissionWaitTimes  = []float64{0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5}
	refusalReasons      = []string{"budget", "per_client", "client_memory", "too_slow", "origin", "quota"}
)

// newMetrics builds the registry: the upload metrics plus the Go runtime and process collectors.
func newMetrics(store string) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		store:    store,
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "uploads_total",
			Help: "POST /upload requests answered, by outcome (ok, rejected: 4xx, failed: 5xx, aborted: the client went away) and store.",
		}, []string{"outcome", "store"}),
		uploadBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "upload_bytes_total",
			Help: "File bytes of the uploads that the store accepted.",
		}),
		uploadDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "upload_duration_seconds",
			Help:    "Time from the start of a POST /upload request to its answer, by outcome.",
			Buckets: uploadDurationTimes,
		}, []string{"outcome"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "uploads_in_flight",
			Help: "POST /upload requests being served now.",
		}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "upstream_errors_total",
			Help: "Uploads that failed because of the store (Cloudinary), by kind.",
		}, []string{"kind"}),
		admissionWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "upload_admission_wait_seconds",
			Help:    "How long uploads that found UPLOAD_MEMORY (or MAX_CONCURRENT_UPLOADS) waited for it, admitted or not.",
			Buckets: admissionWaitTimes,
		}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "upload_refusals_total",
			Help: "Uploads and signatures refused to protect the server, by reason: budget (503: memory or cap spent for ADMISSION_WAIT), per_client (429: MAX_UPLOADS_PER_CLIENT), client_memory (429: MAX_MEMORY_PER_CLIENT), too_slow (408: under MIN_UPLOAD_RATE), origin (403: a page of another origin), quota (429 or 413: USER_QUOTA).",
		}, []string{"reason"}),
		deletes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "deletes_total",
			Help: "DELETE /upload requests answered, by outcome (ok, rejected: 4xx such as a refused delete token or no such file, failed: 5xx, aborted).",
		}, []string{"outcome"}),
	}
	// A fresh registry and distinct names: registration cannot collide.
	m.registry.MustRegister(
		m.uploads, m.uploadBytes, m.uploadDuration, m.inFlight, m.upstreamErrors, m.admissionWait, m.refusals, m.deletes,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	for _, o := range uploadOutcomes {
		m.uploads.WithLabelValues(o, store)
		m.uploadDuration.WithLabelValues(o)
	}
	for _, o := range uploadOutcomes {
		m.deletes.WithLabelValues(o)
	}
	for _, k := range upstreamErrorKinds {
		m.upstreamErrors.WithLabelValues(k)
	}
	for _, r := range refusalReasons {
		m.refusals.WithLabelValues(r)
	}
	return m
}

// watchRedis adds the shared limits' health: whether Redis answers, the outages, and the
// decisions taken in memory because it did not. Without REDIS_URL (conn nil) there are none.
func (m *metrics) watchRedis(conn *ratelimit.Conn) {
	if conn == nil {
		return
	}
	m.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "redis_up",
			Help: "1 while the Redis of REDIS_URL answers, 0 while the limits are counted by this server alone.",
		}, func() float64 {
			if conn.Healthy() {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "redis_outages_total",
			Help: "Times the Redis of REDIS_URL stopped answering (a call failed or passed REDIS_TIMEOUT).",
		}, func() float64 { return float64(conn.Outages()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "redis_fallbacks_total",
			Help: "Rate-limit and upload-in-flight decisions taken in this server's memory because Redis did not answer.",
		}, func() float64 { return float64(conn.Fallbacks()) }),
	)
}

// outcome sorts an answer's status into the outcome label.
func outcome(status int) string {
	switch {
	case status == errClientGone.status:
		return "aborted"
	case status >= 500:
		return "failed"
	case status >= 400:
		return "rejected"
	}
	return "ok"
}

// countUploads measures the POST /upload handler: answers by outcome, duration, requests in flight.
func (m *metrics) countUploads(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		m.inFlight.Inc()
		defer m.inFlight.Dec()
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			o := outcome(status)
			m.uploads.WithLabelValues(o, m.store).Inc()
			m.uploadDuration.WithLabelValues(o).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(rec, r)
	})
}

// countDeletes counts the DELETE /upload handler's answers by outcome.
func (m *metrics) countDeletes(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			m.deletes.WithLabelValues(outcome(status)).Inc()
		}()
		next.ServeHTTP(rec, r)
	})
}

// measuredUploader counts the bytes the store accepted and the store's failures.
type measuredUploader struct {
	next uploader
	m    *metrics
}

func (u measuredUploader) Upload(ctx context.Context, file io.Reader, p store.Params) (json.RawMessage, error) {
	body := &countingReader{r: file}
	result, err := u.next.Upload(ctx, body, p)
	if err == nil {
		u.m.uploadBytes.Add(float64(body.n.Load()))
		return result, nil
	}
	if kind := upstreamErrorKind(ctx, err, body.failed.Load()); kind != "" {
		u.m.upstreamErrors.WithLabelValues(kind).Inc()
	}
	return result, err
}

// Holds is the store's (store.Holding).
func (u measuredUploader) Holds(size int64) int64 { return store.Holds(u.next, size) }

// upstreamErrorKind says which way the store failed, or "" when the failure was not the store's:
// the client's body broke off or was too large, or the client went away.
func upstreamErrorKind(ctx context.Context, err error, bodyFailed bool) string {
	switch {
	case bodyFailed:
		return ""
	case errors.Is(context.Cause(ctx), upload.ErrUpstreamTimeout):
		return "timeout"
	case ctx.Err() != nil:
		return ""
	}
	if _, kind, ok := storeError(err); ok {
		return kind
	}
	if asAPIError(err).status < 500 { // the store refused the file, in the client's terms
		return "rejected"
	}
	return "other"
}

// countingReader counts what the store read of the file, and whether reading it failed.
type countingReader struct {
	r      io.Reader
	n      atomic.Int64 // read by the transport's goroutine, added up by the handler's
	failed atomic.Bool
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	if err != nil && !errors.Is(err, io.EOF) {
		c.failed.Store(true)
	}
	return n, err
}

// WriteTo keeps the file's own WriteTo in reach: without it the SDK's io.Copy would move the
// file in 32 KiB pieces, each its own chunk and write upstream.
func (c *countingReader) WriteTo(w io.Writer) (int64, error) {
	wt, ok := c.r.(io.WriterTo)
	if !ok {
		return io.Copy(w, struct{ io.Reader }{c}) // the struct hides this WriteTo
	}
	cw := &countingWriter{w: w}
	n, err := wt.WriteTo(cw)
	c.n.Add(n)
	if err != nil && !errors.Is(err, io.EOF) && !cw.failed {
		c.failed.Store(true) // the error came from reading the file, not from the store's side
	}
	return n, err
}

// countingWriter tells countingReader.WriteTo whether a failure was the writer's.
type countingWriter struct {
	w      io.Writer
	failed bool
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if err != nil {
		c.failed = true
	}
	return n, err
}

// Flush passes on the writer's Flush, when it has one: what it holds back must not be stuck here.
func (c *countingWriter) Flush() error {
	f, ok := c.w.(upload.Flusher)
	if !ok {
		return nil
	}
	err := f.Flush()
	if err != nil {
		c.failed = true
	}
	return err
}

// handleMetrics serves GET /metrics in Prometheus's text format, behind METRICS_TOKEN when it is set.
func handleMetrics(m *metrics, token secret) http.Handler {
	h := promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" {
			got, ok := bearerToken(r.Header.Get("Authorization")) // the scheme in any case (RFC 6750)
			gotSum := sha256.Sum256([]byte(got))
			// Hashing first makes the comparison constant-time whatever the lengths.
			if !ok || subtle.ConstantTimeCompare(gotSum[:], want[:]) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
				writeError(w, r, errMetricsToken)
				return
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}
