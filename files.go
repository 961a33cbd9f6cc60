package main

import (
	"errors"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"cloudinary-upload-api/internal/store"
)

// handleFiles serves GET /files/{name}: the files of a store that serves its own (the local
// store's), immutable once written.
func handleFiles(s store.Serving) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		f, err := s.OpenStored(name)
		if errors.Is(err, fs.ErrNotExist) {
			writeError(w, r, errNotFound)
			return
		}
		if err != nil {
			writeError(w, r, err)
			return
		}
		defer func() { _ = f.Close() }() // read-only: closing cannot lose data

		h := w.Header()
		h.Set("Content-Type", f.ContentType)
		h.Set("X-Content-Type-Options", "nosniff")
		// A stored file is never a page: no script, no plugin, no form, even if a browser renders it.
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; sandbox")
		h.Set("Cross-Origin-Resource-Policy", "cross-origin") // pages on other origins may show the images
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
		h.Set("ETag", `"`+f.Etag+`"`)
		disposition := "attachment"
		if inlineSafe(f.ContentType) {
			disposition = "inline"
		}
		if f.Filename != "" {
			if d := mime.FormatMediaType(disposition, map[string]string{"filename": f.Filename}); d != "" {
				disposition = d
			}
		}
		h.Set("Content-Disposition", disposition)
		http.ServeContent(w, r, name, f.Created, f) // ranges, HEAD, If-None-Match
	})
}

// inlineSafe reports whether a browser may show the type in place: raster images only.
// SVG and everything else is sent as an attachment.
func inlineSafe(contentType string) bool {
	base, _, _ := strings.Cut(contentType, ";")
	switch base {
	case "image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp", "image/x-icon", "image/vnd.microsoft.icon":
		return true
	}
	return false
}

// requestBaseURL is this server's base URL as the client reached it: the Host header the
// client sent (Go's server has already refused malformed ones) and the scheme of its connection.
// X-Forwarded-Proto is believed only when it says exactly http or https: it comes from Heroku's
// router there, and elsewhere a client that lies about it only gets a wrong URL back for itself.
// Deployments behind a proxy that rewrites Host set PUBLIC_URL instead.
func requestBaseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	switch p := strings.ToLower(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto"))); p {
	case "http", "https":
		scheme = p
	}
	u := url.URL{Scheme: scheme, Host: r.Host}
	return u.String()
}
