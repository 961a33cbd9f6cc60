package cloudinary_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cloudinary/cloudinary-go/v2/api"
	cldupload "github.com/cloudinary/cloudinary-go/v2/api/uploader"

	"cloudinary-upload-api/internal/cloudinary"
	"cloudinary-upload-api/internal/cloudinary/cloudinarytest"
	"cloudinary-upload-api/internal/store"
	"cloudinary-upload-api/internal/testkit"
)

// The upload request is built by the Client rather than by the SDK's Upload (client.go says why): it must be the
// request the SDK would send. First the SDK's fields, caught by a plain server, are compared with
// ours signed at the same second, signature included, for each signing setting. Then both send
// the same file to the fake, which checks each signature, and their requests are compared.
func TestUploadRequestIsTheSDKs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		query  string // added to CLOUDINARY_URL
		p      store.Params
		folder string
		preset string
	}{
		{name: "no choices", p: store.Params{}},
		{name: "every field", p: store.Params{PublicID: "shots/cat-1", Tags: []string{"a", "b=c", "d"}, Filename: "cat photo.png"}, folder: "incoming", preset: "signed-preset"},
		{name: "sha256 signatures", query: "&signature_algorithm=sha256", p: store.Params{Tags: []string{"x", "y"}}},
		{name: "signature version 1", query: "&signature_version=1", p: store.Params{Tags: []string{"a=b"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			params := cldupload.UploadParams{PublicID: tc.p.PublicID, Tags: tc.p.Tags, Folder: tc.folder,
				UploadPreset: tc.preset, FilenameOverride: tc.p.Filename}
			if tc.p.PublicID != "" {
				params.Overwrite = api.Bool(false)
			}
			pic := testPNG(t, 3, 2)

			catcher := newFieldCatcher(t)
			sdk := newSDKUploader(t, "cloudinary://"+cloudinarytest.APIKey+":"+cloudinarytest.APISecret+"@"+cloudinarytest.CloudName+"?upload_prefix="+url.QueryEscape(catcher.srv.URL)+tc.query)
			if _, err := sdk.Upload(context.Background(), bytes.NewReader(pic), params); err != nil {
				t.Fatalf("SDK upload: %v", err)
			}
			ours := newTestClient(t, catcher.srv.URL, tc.query, tc.folder, tc.preset)
			ts, err := strconv.ParseInt(catcher.fields.Get("timestamp"), 10, 64)
			if err != nil {
				t.Fatalf("SDK's timestamp: %v", err)
			}
			fields, err := ours.Fields(tc.p, time.Unix(ts, 0))
			if err != nil {
				t.Fatal(err)
			}
			if !equalValues(catcher.fields, fields) {
				t.Fatalf("fields differ:\n SDK %v\nours %v", catcher.fields, fields)
			}
			if tc.query != "" {
				return // the fake signs with SHA-1, version 2, as Cloudinary does by default
			}

			fake := cloudinarytest.New(t)
			sdk = newSDKUploader(t, fake.CloudinaryURL())
			ours = newTestClient(t, fake.URL(), "", tc.folder, tc.preset)
			res, err := sdk.Upload(context.Background(), bytes.NewReader(pic), params)
			if err != nil || res.Error.Message != "" {
				t.Fatalf("SDK upload: %v %q", err, res.Error.Message)
			}
			if _, err := ours.Upload(context.Background(), bytes.NewReader(pic), tc.p); err != nil {
				t.Fatalf("our upload: %v", err)
			}
			got := fake.Uploads()
			if len(got) != 2 {
				t.Fatalf("the fake accepted %d uploads, want 2", len(got))
			}
			sdkReq, ourReq := got[0], got[1]
			if sdkReq.Filename != ourReq.Filename || sdkReq.SHA256 != ourReq.SHA256 {
				t.Errorf("file part: SDK %q %s, ours %q %s", sdkReq.Filename, sdkReq.SHA256, ourReq.Filename, ourReq.SHA256)
			}
			for _, h := range []string{"User-Agent", "Transfer-Encoding", "Content-Length"} {
				if s, o := sdkReq.Header.Values(h), ourReq.Header.Values(h); !slices.Equal(s, o) {
					t.Errorf("%s: SDK %q, ours %q", h, s, o)
				}
			}
		})
	}
}

// newTestClient is a Client for the fake's credentials at prefix, its connections closed with the test.
func newTestClient(t *testing.T, prefix, query, folder, preset string) *cloudinary.Client {
	t.Helper()
	creds, err := cloudinary.ParseURL("cloudinary://" + cloudinarytest.APIKey + ":" + cloudinarytest.APISecret + "@" + cloudinarytest.CloudName +
		"?upload_prefix=" + url.QueryEscape(prefix) + query)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cloudinary.New(creds, cloudinary.Options{Folder: folder, Preset: preset, ChunkSize: cloudinary.MinChunkBytes, StallTimeout: time.Minute,
		Backoff: func(int) time.Duration { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// newSDKUploader is the SDK's uploader for url (testkit.SDKUploader: call it before t.Parallel).
func newSDKUploader(t *testing.T, cldURL string) *cldupload.API {
	t.Helper()
	return testkit.SDKUploader(t, cldURL)
}

// testPNG is a real PNG of w × h.
func testPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	return testkit.PNG(t, w, h)
}

// fieldCatcher keeps the text fields of the last upload it was sent, and answers like a success.
type fieldCatcher struct {
	srv    *httptest.Server
	fields url.Values
}

func newFieldCatcher(t *testing.T) *fieldCatcher {
	c := &fieldCatcher{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		defer r.MultipartForm.RemoveAll()
		c.fields = url.Values(r.MultipartForm.Value)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"public_id":"caught"}`)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func equalValues(a, b url.Values) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}
