package main

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// uploadPage is the page served at GET /: plain HTML, one <style>, one <script>, no build step.
//
//go:embed web/index.html
var uploadPage []byte

// pageCSP is the page's Content-Security-Policy: its own style and script by hash, nothing
// inline besides them, and images from this server (local store) or Cloudinary.
func pageCSP(page []byte) (string, error) {
	style, err := elementText(page, "style")
	if err != nil {
		return "", err
	}
	script, err := elementText(page, "script")
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("default-src 'none'; script-src '%s'; style-src '%s'; "+
		"img-src 'self' https://res.cloudinary.com data: blob:; connect-src 'self'; "+
		"base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
		cspHash(script), cspHash(style)), nil
}

// elementText returns the text of the page's only <tag> element, as the browser hashes it.
func elementText(page []byte, tag string) ([]byte, error) {
	open, end := []byte("<"+tag+">"), []byte("</"+tag+">")
	if bytes.Count(page, open) != 1 || bytes.Count(page, []byte("<"+tag)) != 1 {
		return nil, fmt.Errorf("page: want exactly one <%s> without attributes", tag)
	}
	_, rest, _ := bytes.Cut(page, open)
	text, _, ok := bytes.Cut(rest, end)
	if !ok {
		return nil, fmt.Errorf("page: <%s> is not closed", tag)
	}
	return text, nil
}

func cspHash(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// handlePage serves GET /: the upload page, with its CSP computed once, here.
func handlePage(page []byte) http.Handler {
	csp, cspErr := pageCSP(page)
	sum := sha256.Sum256(page)
	etag := `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cspErr != nil { // the embedded page is checked by a test: this is a build that skipped it
			writeError(w, r, errors.Join(errInternal, cspErr))
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache") // revalidated by ETag: a new build shows at once
		h.Set("ETag", etag)
		http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(page))
	})
}
