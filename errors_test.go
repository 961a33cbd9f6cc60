package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"cloudinary-upload-api/internal/store"
)

// The README's error table, in two parts. Rows whose request never reaches a store run against the
// handler alone, with a store that fails the test if it is called and no network at all. Rows
// about what Cloudinary answers run through the real server against the fake. Every row checks
// the whole message the client is told.

// errorCase is one row of the README's error table.
type errorCase struct {
	name        string
	env         map[string]string // on top of the part's own
	method      string            // default POST
	path        string            // default /upload
	contentType string            // default: the multipart body's own
	body        func(t *testing.T) []byte
	wantStatus  int
	wantMessage string // the whole JSON error message; empty only for a 200
	wantHeader  [2]string
}

// Helpers that build the rows' bodies.
var (
	errTestPNG = func(t *testing.T) []byte { return testPNG(t, 8, 8) }
	errTestBig = func(t *testing.T) []byte { return append(testPNG(t, 8, 8), make([]byte, 100_000)...) }
)

func errTestForm(fields [][2]string, name string, file func(t *testing.T) []byte) func(t *testing.T) []byte {
	return func(t *testing.T) []byte {
		var f []byte
		if file != nil {
			f = file(t)
		}
		_, b := multipartBody(t, fields, name, f)
		return b
	}
}

func errTestRaw(s string) func(t *testing.T) []byte {
	return func(*testing.T) []byte { return []byte(s) }
}

// noStore is the store of the rows that must never reach one.
type noStore struct{ calls *atomic.Int32 }

func (s noStore) Upload(_ context.Context, file io.Reader, _ store.Params) (json.RawMessage, error) {
	s.calls.Add(1)
	return nil, errors.New("the request reached the store")
}

func TestErrorsBeforeTheStore(t *testing.T) {
	t.Parallel()
	const boundary = "XyZ-test-boundary"
	mp := "multipart/form-data; boundary=" + boundary
	text := func(*testing.T) []byte { return []byte("just some text, not an image") }
	svg := func(*testing.T) []byte {
		return []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`)
	}
	for _, tc := range []errorCase{
		{name: "get_is_405", method: http.MethodGet, wantStatus: 405, wantMessage: "method not allowed", wantHeader: [2]string{"Allow", "POST"}},
		{name: "unknown_path_is_404", method: http.MethodGet, path: "/nope", wantStatus: 404, wantMessage: "not found"},
		{name: "json_body_is_415", contentType: "application/json", body: errTestRaw(`{"file":"x"}`), wantStatus: 415, wantMessage: "Content-Type must be multipart/form-data with a boundary"},
		{name: "multipart_without_boundary_is_415", contentType: "multipart/form-data", body: errTestRaw("x"), wantStatus: 415, wantMessage: "Content-Type must be multipart/form-data with a boundary"},
		{name: "text_file_refused_under_image_star", body: errTestForm(nil, "notes.png", text), wantStatus: 415, wantMessage: "file type text/plain is not allowed (allowed: image/*)"},
		{name: "svg_refused_under_image_star", body: errTestForm(nil, "x.svg", svg), wantStatus: 415, wantMessage: "file type image/svg+xml is not allowed (allowed: image/*)"},
		{name: "malformed_body_is_400", contentType: mp, body: errTestRaw("--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"\r\nno blank line"), wantStatus: 400, wantMessage: `request body ended before the file was complete`},
		{name: "no_file_part_is_400", body: errTestForm([][2]string{{"tags", "a"}}, "", nil), wantStatus: 400, wantMessage: `form has no file part (a part with a filename, named "file", "files", "files[]" or "filepond")`},
		{name: "empty_file_is_400", body: errTestForm(nil, "empty.png", func(*testing.T) []byte { return []byte{} }), wantStatus: 400, wantMessage: "file is empty"},
		{name: "bad_public_id_is_400", body: errTestForm([][2]string{{"public_id", "../etc/passwd"}}, "a.png", errTestPNG), wantStatus: 400, wantMessage: `public_id must be 1-255 characters of letters, digits, '-', '_', '.' and '/' between names`},
		{name: "duplicate_field_is_400", body: errTestForm([][2]string{{"tags", "a"}, {"tags", "b"}}, "a.png", errTestPNG), wantStatus: 400, wantMessage: `form field "tags" appears twice`},
		{name: "long_field_is_400", body: errTestForm([][2]string{{"tags", strings.Repeat("t", 5000)}}, "a.png", errTestPNG), wantStatus: 400, wantMessage: `form field "tags" is longer than 2048 bytes`},
		{name: "too_large_by_content_length_is_413", env: map[string]string{"MAX_UPLOAD_BYTES": "1000"}, body: errTestForm(nil, "big.png", errTestBig), wantStatus: 413, wantMessage: "request is larger than the limit of 10 files of 1000 bytes"},
		{name: "too_large_by_content_length_one_file_a_request_is_413", env: map[string]string{"MAX_UPLOAD_BYTES": "1000", "MAX_FILES_PER_REQUEST": "1"}, body: errTestForm(nil, "big.png", errTestBig), wantStatus: 413, wantMessage: "file is larger than the limit of 1000 bytes"},
		{name: "malformed_image_is_400", body: errTestForm(nil, "a.jpg", guardTestTwoSOF), wantStatus: 400, wantMessage: `the image cannot be read exactly: malformed JPEG: two frame headers (SOF markers) before the image data`},
		{name: "pixel_bomb_is_413", body: errTestForm(nil, "bomb.png", guardTestBomb), wantStatus: 413, wantMessage: `image is 100000 × 100000 pixels: more than 20000 on a side or 50000000 in all (MAX_IMAGE_DIMENSION, MAX_PIXELS)`},
		{name: "pixel_bomb_is_413_with_strip_off", env: map[string]string{"STRIP_METADATA": "off"}, body: errTestForm(nil, "bomb.png", guardTestBomb), wantStatus: 413, wantMessage: `image is 100000 × 100000 pixels: more than 20000 on a side or 50000000 in all (MAX_IMAGE_DIMENSION, MAX_PIXELS)`},
		{name: "image_metadata_over_1mib_is_413", body: errTestForm(nil, "a.jpg", guardTestHugeMetadata), wantStatus: 413, wantMessage: "the image's metadata is larger than 1 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"CLOUD_NAME": "c", "API_KEY": "k", "API_SECRET": "s", "RATE_LIMIT": "off"}
			for k, v := range tc.env {
				env[k] = v
			}
			cfg, err := loadConfig(mapGetenv(env))
			if err != nil {
				t.Fatal(err)
			}
			calls := &atomic.Int32{}
			h := newServer(discardLogger(), cfg, testStorage(noStore{calls}), newHealthState())
			method, path, body, contentType := caseRequest(t, tc)
			req := httptest.NewRequest(method, path, body)
			if contentType != "" {
				req.Header.Set("Content-Type", contentType)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			resp := rec.Result()
			checkCase(t, tc, resp)
			if n := calls.Load(); n != 0 {
				t.Errorf("a refused request reached the store %d times", n)
			}
		})
	}
}

func TestErrorsFromCloudinary(t *testing.T) {
	wrongSecret := func(fake *fakeCloudinary) string {
		return strings.Replace(fake.CloudinaryURL(), ":"+fakeAPISecret+"@", ":wrong-secret@", 1)
	}
	form := errTestForm(nil, "a.png", errTestPNG)
	for _, tc := range []struct {
		errorCase
		behaviour     *fakeBehaviour
		cloudinaryURL func(*fakeCloudinary) string // default the fake's own
		// abandoned: the upload starts, then is given up as the file streams (a later GIF frame
		// too large), so its request may or may not have reached the fake by then.
		abandoned bool
	}{
		{errorCase: errorCase{name: "cloudinary_401_is_502", body: form, wantStatus: 502, wantMessage: "Cloudinary rejected the server's credentials"}, cloudinaryURL: wrongSecret},
		{errorCase: errorCase{name: "cloudinary_500_is_502", body: form, wantStatus: 502, wantMessage: "Cloudinary failed to process the upload"}, behaviour: &fakeBehaviour{Status: 500, Body: `{"error":{"message":"General Error"}}`}},
		{errorCase: errorCase{name: "cloudinary_html_502_is_502", body: form, wantStatus: 502, wantMessage: "Cloudinary failed to process the upload"}, behaviour: &fakeBehaviour{Status: 502, ContentType: "text/html", Body: "<html><body>Bad Gateway</body></html>"}},
		{errorCase: errorCase{name: "cloudinary_not_json_is_502", body: form, wantStatus: 502, wantMessage: "Cloudinary sent an answer that is not JSON"}, behaviour: &fakeBehaviour{Status: 200, ContentType: "text/html", Body: "<html>maintenance</html>"}},
		{errorCase: errorCase{name: "cloudinary_reset_is_502", body: form, wantStatus: 502, wantMessage: "could not reach Cloudinary"}, behaviour: &fakeBehaviour{Reset: true}},
		{errorCase: errorCase{name: "cloudinary_rate_limit_is_503", body: form, wantStatus: 503, wantMessage: "Cloudinary is limiting the upload rate; try again later"}, behaviour: &fakeBehaviour{Status: 420, Body: `{"error":{"message":"Rate Limit Exceeded"}}`}},
		{errorCase: errorCase{name: "cloudinary_silent_is_504", env: map[string]string{"UPLOAD_TIMEOUT": "300ms"}, body: form, wantStatus: 504, wantMessage: "Cloudinary did not answer in time"}, behaviour: &fakeBehaviour{Hang: true}},
		{errorCase: errorCase{name: "cloudinary_invalid_image_is_400", body: form, wantStatus: 400, wantMessage: "Cloudinary rejected the file: Invalid image file"}, behaviour: &fakeBehaviour{Status: 400, Body: `{"error":{"message":"Invalid image file"}}`}},
		// The image guard finds this frame only once the file's first bytes have gone upstream.
		{errorCase: errorCase{name: "gif_frame_past_the_limits_is_413", body: errTestForm(nil, "far.gif", guardTestGIFFrameFar), wantStatus: 413, wantMessage: `image is 30016 × 16 pixels: more than 20000 on a side or 50000000 in all (MAX_IMAGE_DIMENSION, MAX_PIXELS)`}, abandoned: true},
		{errorCase: errorCase{name: "svg_allowed_when_named", env: map[string]string{"ALLOWED_TYPES": "image/*,image/svg+xml"}, body: errTestForm(nil, "x.svg", func(*testing.T) []byte {
			return []byte(`<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"></svg>`)
		}), wantStatus: 200}},
		{errorCase: errorCase{name: "unknown_field_is_ignored", body: errTestForm([][2]string{{"folder", "elsewhere"}}, "a.png", errTestPNG), wantStatus: 200}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFakeCloudinary(t)
			env := baseEnv(t, fake)
			if tc.cloudinaryURL != nil {
				env["CLOUDINARY_URL"] = tc.cloudinaryURL(fake)
			}
			for k, v := range tc.env {
				env[k] = v
			}
			if tc.behaviour != nil {
				fake.SetBehaviour(*tc.behaviour)
			}
			srv := startServer(t, env)
			method, path, body, contentType := caseRequest(t, tc.errorCase)
			req, err := http.NewRequest(method, srv.url+path, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", contentType)
			resp, err := newClient(t).Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			checkCase(t, tc.errorCase, resp)
			if fake.RequestCount() == 0 && !tc.abandoned {
				t.Errorf("the request never reached the fake Cloudinary")
			}
			if tc.abandoned && len(fake.Uploads()) != 0 {
				t.Errorf("an abandoned upload was stored")
			}
			if strings.Contains(srv.logs.String(), fakeAPISecret) {
				t.Errorf("the API secret is in the logs")
			}
		})
	}
}

// caseRequest is a row's request: method, path, body and Content-Type.
func caseRequest(t *testing.T, tc errorCase) (method, path string, body io.Reader, contentType string) {
	t.Helper()
	method, path = tc.method, tc.path
	if method == "" {
		method = http.MethodPost
	}
	if path == "" {
		path = "/upload"
	}
	if tc.body != nil {
		b := tc.body(t)
		body = bytes.NewReader(b)
		contentType = tc.contentType
		if contentType == "" {
			// multipartBody's writer picks a random boundary: recover it from the body.
			first, _, _ := strings.Cut(string(b), "\r\n")
			contentType = "multipart/form-data; boundary=" + strings.TrimPrefix(first, "--")
		}
	}
	return method, path, body, contentType
}

// checkCase checks an answer against its row: the status, the whole message, the header.
func checkCase(t *testing.T, tc errorCase, resp *http.Response) {
	t.Helper()
	if tc.wantStatus == http.StatusOK {
		var ok map[string]any
		decodeBody(t, resp, &ok)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, want 200", resp.StatusCode)
		}
		return
	}
	var got apiErrorBody
	decodeBody(t, resp, &got)
	if resp.StatusCode != tc.wantStatus {
		t.Errorf("status %d (%q), want %d", resp.StatusCode, got.Error.Message, tc.wantStatus)
	}
	if got.Error.Message != tc.wantMessage {
		t.Errorf("message %q, want %q", got.Error.Message, tc.wantMessage)
	}
	if tc.wantHeader[0] != "" {
		if got := resp.Header.Get(tc.wantHeader[0]); got != tc.wantHeader[1] {
			t.Errorf("%s = %q, want %q", tc.wantHeader[0], got, tc.wantHeader[1])
		}
	}
}
