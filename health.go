package main

import (
	"net/http"
	"sync/atomic"

	"cloudinary-upload-api/internal/ratelimit"
)

// healthState tells load balancers whether this process still takes work, and whether the Redis
// that shares its limits answers.
type healthState struct {
	draining atomic.Bool
	redis    *ratelimit.Conn // nil without REDIS_URL; set by run before serving
	stops    []func()        // what the routes hold beyond their requests, ended by stop
}

// onStop registers f to run at shutdown, once the server has stopped serving.
func (h *healthState) onStop(f func()) { h.stops = append(h.stops, f) }

// stop runs what onStop registered.
func (h *healthState) stop() {
	for _, f := range h.stops {
		f()
	}
}

func newHealthState() *healthState { return &healthState{} }

// drain makes /healthz answer 503 from now on, so routers stop sending new requests.
func (h *healthState) drain() { h.draining.Store(true) }

// handleHealthz serves GET /healthz.
func handleHealthz(h *healthState) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, body := http.StatusOK, map[string]string{"status": "ok"}
		if h.draining.Load() {
			status, body = http.StatusServiceUnavailable, map[string]string{"status": "shutting down"}
		}
		// Redis down is not this process failing: the limits are counted here meanwhile, so 200.
		if h.redis != nil {
			body["redis"] = "unavailable"
			if h.redis.Healthy() {
				body["redis"] = "ok"
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		if err := encode(w, status, body); err != nil {
			loggerFrom(r.Context()).WarnContext(r.Context(), "write health response", "err", err)
		}
	})
}
