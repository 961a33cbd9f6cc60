package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"cloudinary-upload-api/internal/auth"
	"cloudinary-upload-api/internal/auth/authtest"
)

// FilePond on its defaults, from a page on another origin, uploads a file and its undo (the
// revert button) sends DELETE /upload with the upload's answer: the file is gone at the fake
// Cloudinary and in the local store, through the answer's delete token (no sign-in).
func TestBrowserFilePondRevert(t *testing.T) {
	site := newLibSite(t)
	browser := newBrowser(t)
	fake := newFakeCloudinary(t)
	fakeEnv := baseEnv(t, fake)
	local := localEnv(t)
	for _, env := range []map[string]string{fakeEnv, local} {
		env["ALLOWED_ORIGINS"] = site.srv.URL
	}
	dir := local["UPLOAD_DIR"]
	lastLocal := func(t *testing.T) string { // the public id of the local store's one file
		t.Helper()
		recs := localRecords(t, dir)
		if len(recs) != 1 {
			t.Fatalf("the local store holds %d files, want 1", len(recs))
		}
		return recs[0].Result.PublicID
	}
	seq := 0
	for _, b := range []struct {
		name   string
		srv    *testServer
		last   func(t *testing.T) string // the public id of the last upload
		stored func(t *testing.T, id string) bool
	}{
		{"fake_cloudinary", startServer(t, fakeEnv), func(t *testing.T) string {
			ups := fake.Uploads()
			if len(ups) == 0 {
				return ""
			}
			var a struct {
				PublicID string `json:"public_id"`
			}
			if err := json.Unmarshal(ups[len(ups)-1].Response, &a); err != nil {
				t.Fatal(err)
			}
			return a.PublicID
		}, func(_ *testing.T, id string) bool { _, ok := fake.Asset(id); return ok }},
		{"local_store", startServer(t, local), lastLocal, func(t *testing.T, id string) bool { return localStored(t, dir, id) }},
	} {
		t.Run(b.name, func(t *testing.T) {
			tab := newTab(t, browser)
			f := newLibFile(t, "revert-me.png", uniquePNG(t, &seq))
			items := uploadWith(t, tab, site, "filepond-defaults", b.srv.url, []string{f.path})
			if len(items) != 1 || !items[0].OK {
				t.Fatalf("FilePond shows %+v, want the file uploaded", items)
			}
			id := b.last(t)
			if id == "" || !b.stored(t, id) {
				t.Fatalf("the upload %q is not stored", id)
			}
			filepondRevert(t, tab, b.srv)
			if b.stored(t, id) {
				t.Errorf("%s is still stored after FilePond's revert", id)
			}
		})
	}
}

// Signed in, FilePond with server.headers carrying the user's token uploads into the user's
// folder with no delete token, and its undo deletes the file through the signed destroy (and
// the local store's Destroy): the token rides on the revert's DELETE as on the upload.
func TestBrowserFilePondRevertSignedIn(t *testing.T) {
	site := newLibSite(t)
	browser := newBrowser(t)
	fake := newFakeCloudinary(t)
	idp := authtest.New(t)
	const sub = "auth0|filepond"
	token := authtest.Mint(t, idp.Key(t, "RS256"), goodClaims(sub))
	site.bundles["filepond-signin.js"] = []byte(`import * as FilePond from 'filepond'
FilePond.create(document.querySelector('input[type="file"]'), {
  server: { url: '` + snippetAPI + `/upload', headers: { Authorization: 'Bearer ` + token + `' } },
})
`)
	fakeEnv := signInEnv(t, fake, idp)
	local := localEnv(t)
	for k, v := range signInEnv(t, fake, idp) {
		if strings.HasPrefix(k, "AUTH_") {
			local[k] = v
		}
	}
	for _, env := range []map[string]string{fakeEnv, local} {
		env["ALLOWED_ORIGINS"] = site.srv.URL
	}
	dir := local["UPLOAD_DIR"]
	folder := "users/" + auth.FolderName(sub) + "/"
	seq := 0
	for _, b := range []struct {
		name   string
		srv    *testServer
		last   func(t *testing.T) map[string]any // the last upload's answer
		stored func(t *testing.T, id string) bool
	}{
		{"fake_cloudinary", startServer(t, fakeEnv), func(t *testing.T) map[string]any {
			ups := fake.Uploads()
			if len(ups) == 0 {
				t.Fatal("nothing reached the fake")
			}
			var a map[string]any
			if err := json.Unmarshal(ups[len(ups)-1].Response, &a); err != nil {
				t.Fatal(err)
			}
			return a
		}, func(_ *testing.T, id string) bool { _, ok := fake.Asset(id); return ok }},
		{"local_store", startServer(t, local), func(t *testing.T) map[string]any {
			recs := localRecords(t, dir)
			if len(recs) != 1 {
				t.Fatalf("the local store holds %d files, want 1", len(recs))
			}
			return map[string]any{"public_id": recs[0].Result.PublicID, "delete_token_sha256": recs[0].DeleteTokenSHA256}
		}, func(t *testing.T, id string) bool { return localStored(t, dir, id) }},
	} {
		t.Run(b.name, func(t *testing.T) {
			tab := newTab(t, browser)
			f := newLibFile(t, "mine.png", uniquePNG(t, &seq))
			items := uploadWith(t, tab, site, "filepond-signin", b.srv.url, []string{f.path})
			if len(items) != 1 || !items[0].OK {
				t.Fatalf("FilePond shows %+v, want the file uploaded", items)
			}
			answer := b.last(t)
			id, _ := answer["public_id"].(string)
			if !strings.HasPrefix(id, folder) || !b.stored(t, id) {
				t.Fatalf("the upload %q is not stored in %s", id, folder)
			}
			if answer["delete_token"] != nil || answer["delete_token_sha256"] != nil && answer["delete_token_sha256"] != "" {
				t.Errorf("a signed-in upload got a delete token: %v", answer)
			}
			filepondRevert(t, tab, b.srv)
			if b.stored(t, id) {
				t.Errorf("%s is still stored after FilePond's revert", id)
			}
		})
	}
}

// filepondRevert clicks FilePond's undo button on the one file it shows, and waits until FilePond
// removes the item. The button is disabled while it fades in; FilePond removes the item once its
// DELETE has been answered (whatever the answer).
func filepondRevert(t *testing.T, tab context.Context, srv *testServer) {
	t.Helper()
	if err := chromedp.Do(tab,
		chromedp.Poll[chromedp.Void](`(() => { const b = document.querySelector('.filepond--action-revert-item-processing'); if (!b || b.disabled) return false; b.click(); return true })()`, chromedp.WithPollingTimeout(0)),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll('.filepond--item').length === 0`, chromedp.WithPollingTimeout(0)),
	); err != nil {
		t.Fatalf("revert: %v\nlogs:\n%s", err, srv.logs)
	}
}
