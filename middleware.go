package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"
)

type loggerKey struct{}

// loggerFrom returns the request's logger, which carries its request ID.
func loggerFrom(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok {
		return l
	}
	return slog.New(slog.DiscardHandler)
}

// validRequestID accepts what Heroku's router passes on: 20-200 characters of [A-Za-z0-9+/=-].
func validRequestID(id string) bool {
	if len(id) < 20 || len(id) > 200 {
		return false
	}
	for _, c := range []byte(id) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

// withRequestID reuses the router's X-Request-Id or makes one, echoes it,
// and gives the request a logger that carries it.
func withRequestID(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			var b [16]byte
			_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
			id = hex.EncodeToString(b[:])
		}
		w.Header().Set("X-Request-Id", id)
		ctx := context.WithValue(r.Context(), loggerKey{}, logger.With("request_id", id))
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// statusRecorder remembers the status a handler sent.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// logRequests writes one line per request: method, path, route, status, bytes received, duration.
func logRequests(routeOf func(*http.Request) string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		route := routeOf(r)
		rec := &statusRecorder{ResponseWriter: w}
		r, body := watchBody(rec, r) // the one layer that reads the connection, and counts
		defer func() {
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			loggerFrom(r.Context()).InfoContext(r.Context(), "request",
				"method", r.Method,
				"path", r.URL.Path,
				"route", route,
				"status", status,
				"bytes_in", body.Bytes(),
				"duration_ms", float64(time.Since(start).Microseconds())/1000,
			)
		}()
		next.ServeHTTP(rec, r)
	})
}

// recoverPanics turns a handler panic into a JSON 500 and logs the stack.
func recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v) // the server's way to abort a response: keep it
			}
			loggerFrom(r.Context()).ErrorContext(r.Context(), "panic", "value", v, "stack", string(debug.Stack()))
			writeError(w, r, errInternal)
		}()
		next.ServeHTTP(w, r)
	})
}

// refuseTwoOrigins answers 400 to a request with more than one Origin header (RFC 6454 §7.3 allows
// one): CORS and the origin check would each read one of them, and a CORS library may echo both.
// It runs before CORS, so a preflight with two is refused too.
func refuseTwoOrigins(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.Header.Values("Origin")) > 1 {
			writeError(w, r, errTwoOrigins)
			return
		}
		next.ServeHTTP(w, r)
	})
}
