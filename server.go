package main

import (
	"log/slog"
	"net/http"
	"strings"

	"github.com/rs/cors"
)

// newServer builds the whole HTTP surface: routes, then middleware, outermost last.
func newServer(logger *slog.Logger, cfg config, up uploader, health *healthState) http.Handler {
	mux := http.NewServeMux()
	addRoutes(mux, cfg, up, health)
	var h http.Handler = mux
	h = recoverPanics(h)                      // a handler panic becomes a JSON 500 …
	h = cors.New(corsOptions(cfg)).Handler(h) // preflights never reach the mux
	h = logRequests(h)                        // … which is logged here, with its status
	h = withRequestID(logger, h)              // outermost: everything inside can log the ID
	return h
}

// addRoutes is the whole API surface.
func addRoutes(mux *http.ServeMux, cfg config, up uploader, health *healthState) {
	mux.Handle("POST /upload", handleUpload(up, cfg.uploadLimits()))
	mux.Handle("/upload", handleMethodNotAllowed(http.MethodPost))
	mux.Handle("GET /healthz", handleHealthz(health))
	mux.Handle("/healthz", handleMethodNotAllowed(http.MethodGet, http.MethodHead))
	if cfg.demoPage {
		mux.Handle("GET /{$}", handlePage(uploadPage, cfg.publicURL))
	}
	if local, ok := up.(*localStore); ok {
		mux.Handle("GET /files/{name}", handleFiles(local))
		mux.Handle("/files/{name}", handleMethodNotAllowed(http.MethodGet, http.MethodHead))
	}
	mux.Handle("/", handleNotFound())
}

func (cfg config) uploadLimits() uploadLimits {
	return uploadLimits{
		maxFileBytes:  cfg.maxUploadBytes,
		allowedTypes:  cfg.allowedTypes,
		uploadTimeout: cfg.uploadTimeout,
	}
}

// corsOptions lets pages on ALLOWED_ORIGINS call the API. CORS is not access control:
// a refused origin gets no CORS headers, and the browser hides the answer from the page.
func corsOptions(cfg config) cors.Options {
	return cors.Options{
		AllowedOrigins: cfg.allowedOrigins,
		AllowedMethods: []string{http.MethodGet, http.MethodHead, http.MethodPost},
		AllowedHeaders: []string{"Content-Type", "Authorization", "X-Request-Id"},
		ExposedHeaders: []string{"X-Request-Id", "Retry-After"},
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
