package main

import (
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/rs/cors"

	"cloudinary-upload-api/internal/admission"
	"cloudinary-upload-api/internal/ratelimit"
)

// newServer builds the whole HTTP surface: routes, then middleware, outermost last.
//
// Who may upload is decided per route, in addRoutes: POST /upload, DELETE /upload and POST /sign go through
// protect: the origin check (a page of another origin is refused before anything else), then
// identify, which checks the sign-in token or UPLOAD_TOKENS once, then limitRate, which counts
// a signed-in user as the user and anyone else (a refused token too, so guessing is limited) by
// address, then requireAccess, which answers 401 (or 503 while sign-in keys are unavailable);
// then an upload must be admitted (admission.go), again per user or address. CORS preflights
// are answered out here, before any of it, because browsers send them without Authorization.
func newServer(logger *slog.Logger, cfg config, st storage, health *healthState) http.Handler {
	mux := http.NewServeMux()
	m := newMetrics(st.name)
	m.watchRedis(health.redis)
	addRoutes(mux, cfg, st, health, m)
	var h http.Handler = mux
	h = recoverPanics(h)                      // a handler panic becomes a JSON 500 …
	h = cors.New(corsOptions(cfg)).Handler(h) // preflights never reach the mux
	h = refuseTwoOrigins(h)                   // before CORS reads the one it picks
	h = withSecurityHeaders(h)                // on every answer, preflights too; a handler may override
	h = logRequests(routeOf(mux), h)          // … which is logged here, with its status and route
	h = withRequestID(logger, h)              // outermost: everything inside can log the ID
	return h
}

// routeMux is where addRoutes registers: an *http.ServeMux, or a list in tests.
type routeMux interface {
	Handle(pattern string, handler http.Handler)
}

// addRoutes is the whole API surface. openapi.yaml describes it; openapi_test.go keeps the two in step.
// A pattern without a method answers the other methods of its path with a JSON 405.
func addRoutes(mux routeMux, cfg config, st storage, health *healthState, m *metrics) {
	limiter := newRateLimiter(cfg.RateLimit, cfg.trustProxy, time.Now, health.redis)
	sameOrigin := newOriginCheck(cfg.AllowedOrigins, m)
	// protect is who may use a route: the origin check, then identify (the sign-in token or
	// UPLOAD_TOKENS, checked once), then the rate limit (per user, else per address: a refused
	// request counts against its address), then requireAccess answers a refusal.
	protect := func(h http.Handler) http.Handler {
		return sameOrigin(identify(cfg.uploadTokens, cfg.signIn, limitRate(limiter, requireAccess(h))))
	}
	adm := newUploadAdmission(cfg, uploadLeases(cfg, health.redis), m)
	quota := newUploadQuota(cfg.UserQuota, cfg.trustProxy, time.Now, health.redis, m)
	mux.Handle("POST /upload", protect(m.countUploads(handleUpload(measuredUploader{next: st.up, m: m}, cfg.uploadLimits(), adm, quota))))
	mux.Handle("PUT /upload/{filename}", protect(m.countUploads(handlePut(measuredUploader{next: st.up, m: m}, cfg.uploadLimits(), adm, quota))))
	mux.Handle("/upload/{filename}", handleMethodNotAllowed(http.MethodPut))
	if st.del != nil {
		mux.Handle("DELETE /upload", protect(m.countDeletes(handleDelete(st.del, cfg.UploadFolder, cfg.UploadTimeout))))
		mux.Handle("/upload", handleMethodNotAllowed(http.MethodPost, http.MethodDelete))
	} else {
		mux.Handle("/upload", handleMethodNotAllowed(http.MethodPost))
	}
	addResumableRoutes(mux, newResumableServer(cfg, st, adm, quota, health), protect)
	mux.Handle("POST /sign", protect(handleSign(newSigningConfig(cfg, st.signer, time.Now))))
	mux.Handle("/sign", handleMethodNotAllowed(http.MethodPost))
	mux.Handle("GET /healthz", handleHealthz(health))
	mux.Handle("/healthz", handleMethodNotAllowed(http.MethodGet, http.MethodHead))
	if cfg.DemoPage {
		mux.Handle("GET /{$}", handlePage(uploadPage, cfg.PublicURL))
	}
	if st.files != nil {
		mux.Handle("GET /files/{name}", handleFiles(st.files))
		mux.Handle("/files/{name}", handleMethodNotAllowed(http.MethodGet, http.MethodHead))
	}
	mux.Handle("GET /openapi.yaml", handleOpenAPI())
	mux.Handle("/openapi.yaml", handleMethodNotAllowed(http.MethodGet, http.MethodHead))
	if cfg.Metrics {
		mux.Handle("GET /metrics", handleMetrics(m, cfg.MetricsToken))
		mux.Handle("/metrics", handleMethodNotAllowed(http.MethodGet, http.MethodHead))
	}
	mux.Handle("/", handleNotFound())
}

// uploadLeases counts each client's uploads in flight (MAX_UPLOADS_PER_CLIENT): in this server's
// memory, or with REDIS_URL across every server that shares the Redis, this server's memory still
// counting its own and deciding alone while Redis does not answer. A lease outlives the longest
// an upload may go without a byte: silent client (BODY_IDLE_TIMEOUT) or Cloudinary (UPLOAD_TIMEOUT).
func uploadLeases(cfg config, shared *ratelimit.Conn) admission.Leases {
	local := admission.NewMemoryLeases()
	if shared == nil {
		return local
	}
	return ratelimit.NewLeases(shared, local, max(cfg.BodyIdleTimeout, cfg.UploadTimeout))
}

// routeOf returns the mux pattern that a request matches, for logs: "POST /upload", "/" for no route.
// It is asked before the request reaches the mux, so answers given by middleware have a route too.
func routeOf(mux *http.ServeMux) func(*http.Request) string {
	return func(r *http.Request) string {
		_, pattern := mux.Handler(r)
		return pattern
	}
}

func (cfg config) uploadLimits() uploadLimits {
	return uploadLimits{
		maxFileBytes:  cfg.MaxUploadBytes,
		allowedTypes:  cfg.AllowedTypes,
		uploadTimeout: cfg.UploadTimeout,
		idleTimeout:   cfg.BodyIdleTimeout,
		maxFiles:      cfg.MaxFilesPerRequest,
		fileFields:    cfg.FileFields,
		signable:      cfg.signableParams,
		folder:        cfg.UploadFolder,
		signIn:        cfg.signIn.on(),
		image:         cfg.Image,
	}
}

// corsOptions lets pages on ALLOWED_ORIGINS call the API. CORS is not access control:
// a refused origin gets no CORS headers, and the browser hides the answer from the page.
func corsOptions(cfg config) cors.Options {
	return cors.Options{
		AllowedOrigins: cfg.AllowedOrigins,
		AllowedMethods: []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch},
		// X-Requested-With and Cache-Control: Dropzone and blueimp send them, so their preflights ask.
		AllowedHeaders: append([]string{"Content-Type", "Authorization", "X-Request-Id", "X-Requested-With", "Cache-Control"}, tusRequestHeaders...),
		ExposedHeaders: append([]string{"X-Request-Id", "Retry-After", "RateLimit", "RateLimit-Policy", metadataRemovedHeader}, tusResponseHeaders...),
		MaxAge:         600,
	}
}

// handleMethodNotAllowed answers 405 in JSON with the Allow header.
func handleMethodNotAllowed(allowed ...string) http.Handler {
	allow := strings.Join(allowed, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, r, errMethodNotAllowed)
	})
}

// handleNotFound answers 404 in JSON for every path without a route.
func handleNotFound() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, errNotFound)
	})
}
