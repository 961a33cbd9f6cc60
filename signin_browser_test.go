package main

import (
	"strings"
	"testing"

	"cloudinary-upload-api/internal/auth"
	"cloudinary-upload-api/internal/auth/authtest"
)

// In Chromium, Uppy's documented snippet with XHRUpload's headers carrying the user's token
// uploads into the user's own folder, from a page on another origin (so through a CORS
// preflight for Authorization).
func TestBrowserUppySignIn(t *testing.T) {
	site := newLibSite(t)
	browser := newBrowser(t)
	fake := newFakeCloudinary(t)
	idp := authtest.New(t)
	env := signInEnv(t, fake, idp)
	env["ALLOWED_ORIGINS"] = site.srv.URL
	srv := startServer(t, env)

	const sub = "google-oauth2|1234"
	token := authtest.Mint(t, idp.Key(t, "RS256"), goodClaims(sub))
	uppy := readSnippet(t, "uppy.js")
	const use = "  .use(XHRUpload, {\n"
	if strings.Count(uppy, use) != 1 {
		t.Fatalf("uppy.js: no single %q to add headers to", use)
	}
	// As docs/auth.md says: the token goes in XHRUpload's headers.
	site.bundles["uppy-signin.js"] = bundleUppy(t, site.dir,
		strings.Replace(uppy, use, use+"    headers: { Authorization: 'Bearer "+token+"' },\n", 1))

	seq := 0
	one := newLibFile(t, "signed-in.png", uniquePNG(t, &seq))
	items := uploadWith(t, newTab(t, browser), site, "uppy-signin", srv.url, paths([]libFile{one}))
	if len(items) != 1 || !items[0].OK || items[0].Error != "" {
		t.Fatalf("Uppy shows %+v, want the file uploaded", items)
	}
	ups := fake.Uploads()
	if len(ups) != 1 || ups[0].SHA256 != one.sha {
		t.Fatalf("the fake has %d uploads, want the picked file", len(ups))
	}
	folder := "users/" + auth.FolderName(sub)
	if got := ups[0].Params.Get("folder"); got != folder || folder != "users/google-oauth2_7C1234" {
		t.Errorf("folder = %q, want %q", got, folder)
	}
	if got := ups[0].Params.Get("context"); got != `uploaded_by=google-oauth2\|1234` {
		t.Errorf("context = %q", got)
	}

	// Without the token, the same page's upload is refused with the server's message.
	items = uploadWith(t, newTab(t, browser), site, "uppy", srv.url, paths([]libFile{one}))
	if len(items) != 1 || items[0].OK || items[0].Error != errSignInRequired.message {
		t.Errorf("Uppy without a token shows %+v, want %q", items, errSignInRequired.message)
	}
}
