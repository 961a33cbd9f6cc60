package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// putFile sends body as PUT /upload/{name}?query; size -1 sends it without a Content-Length.
func putFile(t *testing.T, c *http.Client, baseURL, name, query string, body io.Reader, size int64, header http.Header) *http.Response {
	t.Helper()
	url := baseURL + "/upload/" + name
	if query != "" {
		url += "?" + query
	}
	req, err := http.NewRequest(http.MethodPut, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	if size < 0 {
		req.Body = io.NopCloser(body) // hides the length: sent chunked
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// curlPut runs `curl -T file url` (curl appends the file's name to a URL ending in /) and returns
// the status, the X-Metadata-Removed header and the answer.
func curlPut(t *testing.T, file, url string, args ...string) (status, removed string, answer map[string]any) {
	t.Helper()
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("curl is not installed")
		}
		t.Skip("curl is not installed")
	}
	dir := t.TempDir()
	out, headers := filepath.Join(dir, "out.json"), filepath.Join(dir, "headers")
	cmd := append([]string{"-sS", "--max-time", "60", "-o", out, "-D", headers, "-w", "%{http_code}", "-T", file}, args...)
	got, err := exec.Command(curl, append(cmd, url)...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl -T %s %s: %v: %s", file, url, err, got)
	}
	h, err := os.ReadFile(headers)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(h), "\r\n") {
		if name, value, ok := strings.Cut(line, ":"); ok && strings.EqualFold(name, metadataRemovedHeader) {
			removed = strings.TrimSpace(value)
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &answer); err != nil {
		t.Fatalf("curl got a non-JSON answer %q: %v", b, err)
	}
	return string(got), removed, answer
}

// curl -T photo.png http://host/upload/?tags=… stores the photo, GPS removed, to Cloudinary and to
// the local store, answered as a form with one file is.
func TestPutWithCurl(t *testing.T) {
	photo := guardTestPNG(t)
	file := filepath.Join(t.TempDir(), "photo.png")
	if err := os.WriteFile(file, photo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, store := range []string{"cloudinary", "local"} {
		t.Run(store, func(t *testing.T) {
			fake := newFakeCloudinary(t)
			env := baseEnv(t, fake)
			dir := t.TempDir()
			if store == "local" {
				env["STORAGE"], env["UPLOAD_DIR"] = "local", dir
			}
			srv := startServer(t, env)
			status, removed, answer := curlPut(t, file, srv.url+"/upload/?public_id=holiday/beach&tags=curl,put")
			if status != "200" || removed != "gps" {
				t.Fatalf("status %s, X-Metadata-Removed %q (%v); want 200 and gps", status, removed, answer)
			}
			if answer["public_id"] != "holiday/beach" || answer["delete_token"] == nil {
				t.Errorf("answer %v, want public_id holiday/beach with a delete_token", answer)
			}
			if tags, _ := answer["tags"].([]any); len(tags) != 2 || tags[0] != "curl" || tags[1] != "put" {
				t.Errorf("tags %v, want curl, put", answer["tags"])
			}
			if answer["original_filename"] != "photo" {
				t.Errorf("original_filename %v, want photo (curl appends the file's name to the URL)", answer["original_filename"])
			}
			tags := exiftoolTags(t, storedFile(t, store, fake, dir))
			if tags["GPS:GPSLatitude"] != nil || tags["IFD0:Make"] != "Cam" {
				t.Errorf("stored file's metadata: %v; want GPS removed, Make kept", tags)
			}
		})
	}
}

// The refusals of PUT are the form's: the same errors, statuses and messages.
func TestPutRefusals(t *testing.T) {
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	env["MAX_UPLOAD_BYTES"] = "100000"
	env["RATE_LIMIT"] = "off"
	srv := startServer(t, env)
	c := newClient(t)
	img := testPNG(t, 4, 4)
	big := append(testPNG(t, 2, 2), make([]byte, 200_000)...)
	for _, tc := range []struct {
		name, query string
		body        []byte
		size        int64 // -1: sent without a Content-Length
		status      int
		message     string
	}{
		{"empty", "", nil, 0, http.StatusBadRequest, errEmptyFile.message},
		{"too large by Content-Length", "", big, int64(len(big)), http.StatusRequestEntityTooLarge, errTooLarge(100000).message},
		{"too large as it streams", "", big, -1, http.StatusRequestEntityTooLarge, errTooLarge(100000).message},
		{"wrong type", "", []byte("just some text, not an image at all"), 35, http.StatusUnsupportedMediaType, "file type text/plain is not allowed (allowed: image/*)"},
		{"bad public_id", "public_id=../x", img, int64(len(img)), http.StatusBadRequest, "public_id must be"},
		{"repeated tags", "tags=a&tags=b", img, int64(len(img)), http.StatusBadRequest, `query parameter "tags" appears twice`},
		{"uploaded_by", "context=uploaded_by%3Dme", img, int64(len(img)), http.StatusBadRequest, errUploadedBy.message},
		{"malformed query", "tags=%zz", img, int64(len(img)), http.StatusBadRequest, "the query string is malformed"},
	} {
		resp := putFile(t, c, srv.url, "a.png", tc.query, bytes.NewReader(tc.body), tc.size, nil)
		var got apiErrorBody
		decodeBody(t, resp, &got)
		if resp.StatusCode != tc.status || !strings.HasPrefix(got.Error.Message, tc.message) {
			t.Errorf("%s: %d %q, want %d %q", tc.name, resp.StatusCode, got.Error.Message, tc.status, tc.message)
		}
	}
	if n := len(fake.Uploads()); n != 0 {
		t.Errorf("fake stored %d files, want none", n)
	}
	// A parameter the server does not use is ignored, as the form's other fields are.
	resp := putFile(t, c, srv.url, "a.png", "description=x&tags=ok", bytes.NewReader(img), int64(len(img)), nil)
	answer := decodeOK(t, resp, "an ignored parameter")
	if tags, _ := answer["tags"].([]any); len(tags) != 1 || tags[0] != "ok" {
		t.Errorf("tags %v, want ok", answer["tags"])
	}
	if ups := fake.Uploads(); len(ups) != 1 || ups[0].SHA256 != sha256Hex(img) {
		t.Errorf("fake stored %+v, want the file as sent", ups)
	}
	// Other methods on the path: 405 naming PUT.
	resp, err := c.Get(srv.url + "/upload/a.png")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodPut {
		t.Errorf("GET /upload/a.png: %d Allow %q, want 405 PUT", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// PUT is protected as POST /upload is: UPLOAD_TOKENS' Bearer token.
func TestPutNeedsTheToken(t *testing.T) {
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	token := strings.Repeat("t", 32)
	env["UPLOAD_TOKENS"] = token
	srv := startServer(t, env)
	c := newClient(t)
	img := testPNG(t, 4, 4)
	resp := putFile(t, c, srv.url, "a.png", "", bytes.NewReader(img), int64(len(img)), nil)
	var got apiErrorBody
	decodeBody(t, resp, &got)
	if resp.StatusCode != http.StatusUnauthorized || got.Error.Message != errUnauthorized.message {
		t.Errorf("without the token: %d %q, want 401 %q", resp.StatusCode, got.Error.Message, errUnauthorized.message)
	}
	resp = putFile(t, c, srv.url, "a.png", "", bytes.NewReader(img), int64(len(img)), http.Header{"Authorization": {"Bearer " + token}})
	decodeOK(t, resp, "with the token")
	if n := len(fake.Uploads()); n != 1 {
		t.Errorf("fake stored %d files, want 1", n)
	}
}

// A page on an allowed origin may PUT: CORS's preflight allows the method.
func TestPutPreflight(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.AllowedOrigins = []string{"https://app.example"}
	h := newServer(discardLogger(), cfg, testStorage(acceptAllUploader{}), newHealthState())
	req := httptest.NewRequest(http.MethodOptions, "/upload/a.png", nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", http.MethodPut)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNoContent || rec.Header().Get("Access-Control-Allow-Methods") != http.MethodPut ||
		rec.Header().Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Errorf("preflight: %d, Allow-Methods %q, Allow-Origin %q; want 204 allowing PUT from the page's origin",
			rec.Code, rec.Header().Get("Access-Control-Allow-Methods"), rec.Header().Get("Access-Control-Allow-Origin"))
	}
}
