package main

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// uploadPage is the page served at GET /: plain HTML, one <style>, one <script>, no build step.
//
//go:embed web/index.html
var uploadPage []byte

// pageCSP is the page's Content-Security-Policy: its own style and script by hash, nothing
// inline besides them, and images from this server (local store) or Cloudinary.
// extraImgSrc is PUBLIC_URL's origin, if any: the local store's previews come from there.
func pageCSP(page []byte, extraImgSrc string) (string, error) {
	style, err := elementText(page, "style")
	if err != nil {
		return "", err
	}
	script, err := elementText(page, "script")
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("default-src 'none'; script-src '%s'; style-src '%s'; "+
		"img-src 'self'%s https://res.cloudinary.com data: blob:; connect-src 'self'; "+
		"base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
		cspHash(script), cspHash(style), extraImgSrc), nil
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
// publicURL is PUBLIC_URL, whose origin may serve the local store's files under another name.
func handlePage(page []byte, publicURL string) http.Handler {
	var extra string
	if u, err := url.Parse(publicURL); publicURL != "" && err == nil {
		extra = " " + u.Scheme + "://" + u.Host
	}
	csp, cspErr := pageCSP(page, extra)
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
