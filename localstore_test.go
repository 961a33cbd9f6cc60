package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"cloudinary-upload-api/internal/localstore"
)

// newLocalServer is the handler with a local store in a fresh directory.
func newLocalServer(t *testing.T, env map[string]string) (http.Handler, string) {
	t.Helper()
	if env == nil {
		env = map[string]string{}
	}
	cfg, err := loadConfig(mapGetenv(env))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg.UploadDir = dir
	s, err := newLocalStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return newServer(discardLogger(), cfg, localStorage(s), newHealthState()), dir
}

func serve(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func uploadReq(t *testing.T, fields [][2]string, filename string, file []byte) *http.Request {
	ct, body := multipartBody(t, fields, filename, file)
	req := httptest.NewRequest(http.MethodPost, "http://uploads.test/upload", bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	return req
}

// listFiles is every regular file under dir, relative.
func listFiles(t *testing.T, dir string) []string {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestLocalStoreRoundTrip(t *testing.T) {
	t.Parallel()
	h, _ := newLocalServer(t, map[string]string{"UPLOAD_FOLDER": "site"})
	img := testPNG(t, 40, 30)
	rec := serve(h, uploadReq(t, [][2]string{{"public_id", "cats/tom"}, {"tags", "a,b"}}, "tom.png", img))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"public_id": "site/cats/tom", "format": "png", "resource_type": "image", "bytes": float64(len(img)),
		"width": float64(40), "height": float64(30), "original_filename": "tom", "type": "upload",
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
	for _, k := range []string{"version", "created_at", "etag", "url", "secure_url", "tags"} {
		if _, ok := got[k]; !ok {
			t.Errorf("answer lacks Cloudinary's %q", k)
		}
	}
	for _, k := range []string{"file", "content_type", "existing"} {
		if _, ok := got[k]; ok {
			t.Errorf("answer has internal field %q", k)
		}
	}
	secureURL, _ := got["secure_url"].(string)
	if !regexp.MustCompile(`^http://uploads\.test/files/[0-9a-f]{32}\.png$`).MatchString(secureURL) {
		t.Fatalf("secure_url = %q, want an absolute URL of this server", secureURL)
	}

	// Served back as stored, with the headers that keep a stored file harmless.
	get := serve(h, httptest.NewRequest(http.MethodGet, secureURL, nil))
	if get.Code != http.StatusOK || !bytes.Equal(get.Body.Bytes(), img) {
		t.Fatalf("GET %s: %d, %d bytes", secureURL, get.Code, get.Body.Len())
	}
	for k, want := range map[string]string{
		"Content-Type":            "image/png",
		"X-Content-Type-Options":  "nosniff",
		"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
		"Cache-Control":           "public, max-age=31536000, immutable",
		"ETag":                    `"` + got["etag"].(string) + `"`,
		"Content-Disposition":     `inline; filename=tom.png`,
	} {
		if v := get.Header().Get(k); v != want {
			t.Errorf("%s = %q, want %q", k, v, want)
		}
	}
	// Revalidation and ranges come from http.ServeContent.
	req := httptest.NewRequest(http.MethodGet, secureURL, nil)
	req.Header.Set("If-None-Match", get.Header().Get("ETag"))
	if r := serve(h, req); r.Code != http.StatusNotModified {
		t.Errorf("If-None-Match: %d, want 304", r.Code)
	}
	req = httptest.NewRequest(http.MethodGet, secureURL, nil)
	req.Header.Set("Range", "bytes=0-7")
	if r := serve(h, req); r.Code != http.StatusPartialContent || r.Body.String() != "\x89PNG\r\n\x1a\n" {
		t.Errorf("Range: %d %q, want 206 with the PNG signature", r.Code, r.Body)
	}

	// The same public_id again is never overwritten, and without sign-in nobody owns it: 409,
	// and nothing of the existing file.
	again := serve(h, uploadReq(t, [][2]string{{"public_id", "cats/tom"}}, "other.png", testPNG(t, 5, 5)))
	if again.Code != http.StatusConflict || strings.Contains(again.Body.String(), "cats/tom") || strings.Contains(again.Body.String(), "url") {
		t.Errorf("second upload with the same public_id: %d %s, want 409 without the existing file", again.Code, again.Body)
	}
}

func TestLocalStoreBaseURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, publicURL, proto, want string
	}{
		{"from_host", "", "", "http://uploads.test/files/"},
		{"forwarded_https", "", "https", "https://uploads.test/files/"},
		{"forwarded_garbage_ignored", "", "javascript", "http://uploads.test/files/"},
		{"public_url_wins", "https://cdn.example.com/", "http", "https://cdn.example.com/files/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, _ := newLocalServer(t, map[string]string{"PUBLIC_URL": tc.publicURL})
			req := uploadReq(t, nil, "a.png", testPNG(t, 2, 2))
			if tc.proto != "" {
				req.Header.Set("X-Forwarded-Proto", tc.proto)
			}
			var got struct {
				URL       string `json:"url"`
				SecureURL string `json:"secure_url"`
			}
			rec := serve(h, req)
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
			if !strings.HasPrefix(got.SecureURL, tc.want) || got.URL != got.SecureURL {
				t.Errorf("url %q secure_url %q, want under %q", got.URL, got.SecureURL, tc.want)
			}
		})
	}
}

func TestLocalStoreServesOnlyItsOwnFiles(t *testing.T) {
	t.Parallel()
	h, dir := newLocalServer(t, map[string]string{"ALLOWED_TYPES": "*"})
	rec := serve(h, uploadReq(t, nil, "notes.txt", []byte("plain text, served as an attachment\n")))
	var got struct {
		SecureURL string `json:"secure_url"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	txt := serve(h, httptest.NewRequest(http.MethodGet, got.SecureURL, nil))
	if cd := txt.Header().Get("Content-Disposition"); txt.Code != 200 || !strings.HasPrefix(cd, "attachment") {
		t.Errorf("text file: %d, Content-Disposition %q, want an attachment", txt.Code, cd)
	}
	name := got.SecureURL[strings.LastIndex(got.SecureURL, "/")+1:]
	key := strings.TrimSuffix(name, ".txt")

	// Plant what the store did not write: a file without a record, a symlink to a secret outside,
	// a half-written temp file.
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	planted := strings.Repeat("a", 32) + ".png"
	if err := os.WriteFile(filepath.Join(dir, "files", planted), testPNG(t, 2, 2), 0o600); err != nil {
		t.Fatal(err)
	}
	// A symlink replacing a real stored file (its record stays).
	if err := os.Rename(filepath.Join(dir, "files", name), filepath.Join(dir, "files", name+".moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secretFile, filepath.Join(dir, "files", name)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		"/files/" + planted,
		"/files/" + name, // now a symlink
		"/files/" + key + ".json",
		"/files/../meta/" + key + ".json",
		"/files/%2e%2e%2fmeta%2f" + key + ".json",
		"/files/..%2f..%2fetc%2fpasswd",
		"/files/" + name + ".moved",
		"/files/" + strings.ToUpper(name),
		"/files/",
	} {
		r := serve(h, httptest.NewRequest(http.MethodGet, "http://uploads.test"+p, nil))
		if r.Code == http.StatusOK || strings.Contains(r.Body.String(), "secret") {
			t.Errorf("GET %s: %d %q, want it refused", p, r.Code, r.Body)
		}
	}
	if r := serve(h, httptest.NewRequest(http.MethodDelete, got.SecureURL, nil)); r.Code != http.StatusMethodNotAllowed {
		t.Errorf("DELETE /files/...: %d, want 405", r.Code)
	}
}

func TestLocalStoreLeavesNothingOnFailure(t *testing.T) {
	t.Parallel()
	h, dir := newLocalServer(t, map[string]string{"MAX_UPLOAD_BYTES": "5000"})
	// Over the limit mid-stream (no Content-Length): written partly, then refused.
	ct, body := multipartBody(t, nil, "big.png", append(testPNG(t, 4, 4), make([]byte, 20000)...))
	req := httptest.NewRequest(http.MethodPost, "/upload", io.MultiReader(bytes.NewReader(body)))
	req.ContentLength = -1
	req.Header.Set("Content-Type", ct)
	if r := serve(h, req); r.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", r.Code)
	}
	// The body ends before the file does.
	ct, body = multipartBody(t, nil, "cut.png", append(testPNG(t, 4, 4), make([]byte, 4000)...))
	req = httptest.NewRequest(http.MethodPost, "/upload", bytes.NewReader(body[:len(body)-1500]))
	req.Header.Set("Content-Type", ct)
	if r := serve(h, req); r.Code != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", r.Code)
	}
	if files := listFiles(t, dir); len(files) != 0 {
		t.Errorf("failed uploads left files behind: %v", files)
	}
}

func TestLocalStoreFailureIs500(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	s, err := localstore.New(t.TempDir(), "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // every write now fails, as on a broken disk
		t.Fatal(err)
	}
	h := newServer(discardLogger(), cfg, localStorage(s), newHealthState())
	rec := serve(h, uploadReq(t, nil, "a.png", testPNG(t, 2, 2)))
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), `"internal error"`) {
		t.Errorf("upload to a broken store: %d %s, want 500 internal error", rec.Code, rec.Body)
	}
}

func TestLocalStoreSamePublicIDRace(t *testing.T) {
	t.Parallel()
	h, dir := newLocalServer(t, nil)
	const n = 8
	type answer struct {
		status    int
		SecureURL string `json:"secure_url"`
		Existing  bool   `json:"existing"`
	}
	answers := make(chan answer, n)
	for i := range n {
		req := uploadReq(t, [][2]string{{"public_id", "race/winner"}}, "a.png", testPNG(t, 3+i, 3)) // t.Fatal only here, not in the goroutine
		go func() {
			rec := serve(h, req)
			a := answer{status: rec.Code}
			_ = json.Unmarshal(rec.Body.Bytes(), &a) // an empty answer fails the checks below
			answers <- a
		}()
	}
	created, taken := 0, 0
	for range n {
		switch a := within(t, answers, "an upload's answer"); {
		case a.status == http.StatusOK && !a.Existing && a.SecureURL != "":
			created++
		case a.status == http.StatusConflict && a.SecureURL == "":
			taken++
		}
	}
	if created != 1 || taken != n-1 {
		t.Errorf("%d uploads created the public id, %d were told it is taken; want 1 and %d", created, taken, n-1)
	}
	var stored []string
	for _, f := range listFiles(t, dir) {
		if strings.HasPrefix(f, "files"+string(filepath.Separator)) {
			stored = append(stored, f)
		}
	}
	if len(stored) != 1 {
		t.Errorf("files stored: %v, want one", stored)
	}
}
