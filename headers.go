package main

import "net/http"

// withSecurityHeaders sets headers that make every answer inert in a browser: no type sniffing,
// no Referer leaving with links, and a CSP under which an answer opened as a page can load and
// run nothing and be framed by no one. They are set before the handler runs, so a handler that
// serves a page sets its own Content-Security-Policy over this one.
//
// Answers that Go's server writes itself, before any handler (431 for oversize headers, 400 for
// a malformed request line), carry none of these and are plain text.
func withSecurityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		next.ServeHTTP(w, r)
	})
}
