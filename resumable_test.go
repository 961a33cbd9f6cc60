package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloudinary-upload-api/internal/auth/authtest"
)

// tusClient speaks the tus protocol to a test server, as the client libraries do.
type tusClient struct {
	t    *testing.T
	c    *http.Client
	base string
}

func newTusClient(t *testing.T, c *http.Client, base string) *tusClient {
	return &tusClient{t: t, c: c, base: base}
}

// do sends one request with the tus version header and hdr (pairs of name, value), and reads
// the answer whole.
func (tc *tusClient) do(method, url string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	tc.t.Helper()
	if !strings.HasPrefix(url, "http") {
		url = tc.base + url
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		tc.t.Fatal(err)
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if b, ok := body.(*bytes.Reader); ok {
		req.ContentLength = int64(b.Len())
	}
	resp, err := tc.c.Do(req)
	if err != nil {
		tc.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tc.t.Fatalf("%s %s: read answer: %v", method, url, err)
	}
	return resp, b
}

// create makes an upload of length bytes (-1: deferred) with metadata pairs, and returns its URL.
func (tc *tusClient) create(length int64, meta ...string) string {
	tc.t.Helper()
	resp, body := tc.do(http.MethodPost, "/upload/resumable/", nil, tusCreateHeaders(length, meta...)...)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Location") == "" {
		tc.t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	return resp.Header.Get("Location")
}

func tusCreateHeaders(length int64, meta ...string) []string {
	var pairs []string
	for i := 0; i+1 < len(meta); i += 2 {
		pairs = append(pairs, meta[i]+" "+base64.StdEncoding.EncodeToString([]byte(meta[i+1])))
	}
	h := []string{"Upload-Metadata", strings.Join(pairs, ",")}
	if length < 0 {
		return append(h, "Upload-Defer-Length", "1")
	}
	return append(h, "Upload-Length", strconv.FormatInt(length, 10))
}

// patch sends b at offset.
func (tc *tusClient) patch(url string, offset int64, b []byte, hdr ...string) (*http.Response, []byte) {
	tc.t.Helper()
	h := append([]string{"Content-Type", "application/offset+octet-stream", "Upload-Offset", strconv.FormatInt(offset, 10)}, hdr...)
	return tc.do(http.MethodPatch, url, bytes.NewReader(b), h...)
}

// offset asks HEAD where the upload stands.
func (tc *tusClient) offset(url string) int64 {
	tc.t.Helper()
	resp, _ := tc.do(http.MethodHead, url, nil)
	if resp.StatusCode != http.StatusOK {
		tc.t.Fatalf("HEAD %s: %d", url, resp.StatusCode)
	}
	n, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil {
		tc.t.Fatalf("HEAD %s: Upload-Offset %q", url, resp.Header.Get("Upload-Offset"))
	}
	return n
}

// send uploads file in PATCHes of step bytes and returns the last answer, which must be 200.
func (tc *tusClient) send(url string, file []byte, step int) map[string]any {
	tc.t.Helper()
	for off := 0; off < len(file); off += step {
		end := min(off+step, len(file))
		resp, body := tc.patch(url, int64(off), file[off:end])
		if end < len(file) {
			if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Upload-Offset") != strconv.Itoa(end) {
				tc.t.Fatalf("PATCH at %d: %d, offset %q: %s", off, resp.StatusCode, resp.Header.Get("Upload-Offset"), body)
			}
			continue
		}
		var got map[string]any
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &got) != nil {
			tc.t.Fatalf("last PATCH: %d %s", resp.StatusCode, body)
		}
		return got
	}
	tc.t.Fatal("empty file")
	return nil
}

func resumableEnv(t *testing.T, fake *fakeCloudinary) map[string]string {
	env := chunkEnv(t, fake)
	env["RATE_LIMIT"] = "off" // small PATCHes are many requests
	return env
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func readPattern(t *testing.T, n int64) []byte {
	mk, _ := patternPNG(t, n)
	b, err := io.ReadAll(mk())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestResumableUploadInPatchesIsOneChunkedUpload(t *testing.T) {
	fake := newFakeCloudinary(t)
	srv := startServer(t, resumableEnv(t, fake))
	tc := newTusClient(t, newClient(t), srv.url)
	file := readPattern(t, 2*minChunkBytes+777_777)

	resp, _ := tc.do(http.MethodOptions, "/upload/resumable/", nil)
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Tus-Version") != "1.0.0" ||
		resp.Header.Get("Tus-Max-Size") != strconv.Itoa(1<<30) || !strings.Contains(resp.Header.Get("Tus-Extension"), "creation-defer-length") {
		t.Errorf("OPTIONS: %d %v", resp.StatusCode, resp.Header)
	}
	url := tc.create(int64(len(file)), "filename", "holiday.png", "public_id", "trips/holiday", "tags", "a,b", "filetype", "image/png")
	if !strings.HasPrefix(url, srv.url+"/upload/resumable/") {
		t.Errorf("Location %q", url)
	}
	if got := tc.offset(url); got != 0 {
		t.Errorf("HEAD of a new upload: offset %d", got)
	}
	// PATCHes of 3 MB: chunks of 5 MiB are cut across them.
	got := tc.send(url, file, 3_000_000)
	if got["public_id"] != "trips/holiday" || !strings.HasPrefix(fmt.Sprint(got["secure_url"]), "https://") {
		t.Errorf("answer: %v", got)
	}
	ups := fake.Uploads()
	if len(ups) != 1 {
		t.Fatalf("fake stored %d uploads, want 1", len(ups))
	}
	if ups[0].SHA256 != sha(file) || ups[0].Bytes != int64(len(file)) {
		t.Errorf("stored %d bytes, sha256 %s; want %d, %s", ups[0].Bytes, ups[0].SHA256, len(file), sha(file))
	}
	if strings.Join(ups[0].Chunks, "\n") != strings.Join(wantRanges(int64(len(file)), minChunkBytes), "\n") {
		t.Errorf("chunks %v", ups[0].Chunks)
	}
	if tags := ups[0].Tags(); strings.Join(tags, ",") != "a,b" {
		t.Errorf("tags %v", tags)
	}
	// The answer again, for a client that lost it; HEAD says it is complete.
	resp, body := tc.do(http.MethodGet, url, nil)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"trips/holiday"`)) {
		t.Errorf("GET: %d %s", resp.StatusCode, body)
	}
	if got := tc.offset(url); got != int64(len(file)) {
		t.Errorf("HEAD after the end: %d", got)
	}
	// Another client (another address) is told there is no such upload.
	other := newTusClient(t, clientFrom(t, "127.0.0.2"), srv.url)
	if resp, _ := other.do(http.MethodHead, url, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("HEAD by another client: %d", resp.StatusCode)
	}
	if resp, body := other.do(http.MethodGet, url, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET by another client: %d %s", resp.StatusCode, body)
	}
	// Termination.
	if resp, _ := tc.do(http.MethodDelete, url, nil); resp.StatusCode != http.StatusNoContent {
		t.Errorf("DELETE: %d", resp.StatusCode)
	}
	if resp, _ := tc.do(http.MethodHead, url, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("HEAD after DELETE: %d", resp.StatusCode)
	}
}

func TestResumableRefusals(t *testing.T) {
	fake := newFakeCloudinary(t)
	env := resumableEnv(t, fake)
	env["MAX_UPLOAD_BYTES"] = "20000000"
	srv := startServer(t, env)
	tc := newTusClient(t, newClient(t), srv.url)
	for _, c := range []struct {
		name   string
		status int
		hdr    []string
	}{
		{"no tus version", http.StatusPreconditionFailed, []string{"Tus-Resumable", "", "Upload-Length", "10"}},
		{"another tus version", http.StatusPreconditionFailed, []string{"Tus-Resumable", "0.2.2", "Upload-Length", "10"}},
		{"no length", http.StatusBadRequest, nil},
		{"both lengths", http.StatusBadRequest, []string{"Upload-Length", "10", "Upload-Defer-Length", "1"}},
		{"bad length", http.StatusBadRequest, []string{"Upload-Length", "-3"}},
		{"empty", http.StatusBadRequest, []string{"Upload-Length", "0"}},
		{"too large", http.StatusRequestEntityTooLarge, []string{"Upload-Length", "20000001"}},
		{"bad metadata", http.StatusBadRequest, []string{"Upload-Length", "10", "Upload-Metadata", "filename not-base64!"}},
		{"bad public_id", http.StatusBadRequest, tusCreateHeaders(10, "public_id", "../etc")},
		{"uploaded_by", http.StatusBadRequest, tusCreateHeaders(10, "context", "uploaded_by=someone")},
		{"body of another type", http.StatusUnsupportedMediaType, []string{"Upload-Length", "10", "Content-Type", "text/plain"}},
	} {
		var body io.Reader
		if c.name == "body of another type" {
			body = bytes.NewReader([]byte("0123456789"))
		}
		resp, b := tc.do(http.MethodPost, "/upload/resumable/", body, c.hdr...)
		var e apiErrorBody
		if resp.StatusCode != c.status || json.Unmarshal(b, &e) != nil || e.Error.Message == "" {
			t.Errorf("%s: %d %s, want %d with a JSON error", c.name, resp.StatusCode, b, c.status)
		}
		if c.status == http.StatusPreconditionFailed && resp.Header.Get("Tus-Version") != "1.0.0" {
			t.Errorf("%s: Tus-Version %q", c.name, resp.Header.Get("Tus-Version"))
		}
	}
	url := tc.create(10)
	for _, c := range []struct {
		name   string
		status int
		offset int64
		body   string
		hdr    []string
	}{
		{"wrong content type", http.StatusUnsupportedMediaType, 0, "0123", []string{"Content-Type", "application/octet-stream"}},
		{"bad offset", http.StatusBadRequest, 0, "0123", []string{"Upload-Offset", "x"}},
		{"offset ahead", http.StatusConflict, 4, "0123", nil},
		{"past the length", http.StatusRequestEntityTooLarge, 0, "0123456789A", nil},
	} {
		resp, b := tc.patch(url, c.offset, []byte(c.body), c.hdr...)
		if resp.StatusCode != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, resp.StatusCode, b, c.status)
		}
	}
	if resp, b := tc.patch(srv.url+"/upload/resumable/0123456789abcdef0123456789abcdef", 0, []byte("x")); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown upload: %d %s", resp.StatusCode, b)
	}
	if resp, _ := tc.do(http.MethodPut, url, nil); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("PUT: %d", resp.StatusCode)
	}
	if resp, _ := tc.do(http.MethodGet, "/upload/resumable/", nil); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") == "" {
		t.Errorf("GET of the endpoint: %d", resp.StatusCode)
	}
	for _, method := range []string{http.MethodHead, http.MethodDelete, http.MethodPatch} {
		if resp, _ := tc.do(method, url, nil, "Tus-Resumable", "", "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0"); resp.StatusCode != http.StatusPreconditionFailed {
			t.Errorf("%s without Tus-Resumable: %d", method, resp.StatusCode)
		}
	}
	if resp, b := tc.do(http.MethodGet, tc.create(10), nil); resp.StatusCode != http.StatusConflict {
		t.Errorf("GET of an incomplete upload: %d %s", resp.StatusCode, b)
	}
	if n := len(fake.Uploads()); n != 0 {
		t.Errorf("fake stored %d uploads", n)
	}
}

func TestResumableDeferredLengthAndCreationWithUpload(t *testing.T) {
	fake := newFakeCloudinary(t)
	srv := startServer(t, resumableEnv(t, fake))
	tc := newTusClient(t, newClient(t), srv.url)
	file := readPattern(t, minChunkBytes+1000)

	// Creation with upload: the first bytes ride on the POST; the length comes with the last PATCH.
	first := 1_000_000
	resp, body := tc.do(http.MethodPost, "/upload/resumable/", bytes.NewReader(file[:first]),
		"Upload-Defer-Length", "1", "Content-Type", "application/offset+octet-stream")
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Upload-Offset") != strconv.Itoa(first) {
		t.Fatalf("POST with upload: %d offset %q %s", resp.StatusCode, resp.Header.Get("Upload-Offset"), body)
	}
	url := resp.Header.Get("Location")
	resp, _ = tc.do(http.MethodHead, url, nil)
	if resp.Header.Get("Upload-Defer-Length") != "1" || resp.Header.Get("Upload-Expires") == "" {
		t.Errorf("HEAD of a deferred upload: %v", resp.Header)
	}
	resp, body = tc.patch(url, int64(first), file[first:], "Upload-Length", strconv.Itoa(len(file)))
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("secure_url")) {
		t.Fatalf("last PATCH: %d %s", resp.StatusCode, body)
	}
	if ups := fake.Uploads(); len(ups) != 1 || ups[0].SHA256 != sha(file) {
		t.Errorf("stored %+v", ups)
	}
	// A small file in the POST itself: 201 with the answer.
	small := readPattern(t, 5000)
	resp, body = tc.do(http.MethodPost, "/upload/resumable/", bytes.NewReader(small),
		"Upload-Length", "5000", "Content-Type", "application/offset+octet-stream")
	if resp.StatusCode != http.StatusCreated || !bytes.Contains(body, []byte("secure_url")) {
		t.Errorf("POST of a whole file: %d %s", resp.StatusCode, body)
	}
}

// cutBody gives n bytes of b, then fails as a connection that broke would.
type cutBody struct {
	b []byte
	n int
}

func (c *cutBody) Read(p []byte) (int, error) {
	if c.n == 0 {
		return 0, errors.New("test: connection cut")
	}
	k := copy(p[:min(len(p), c.n)], c.b)
	c.b, c.n = c.b[k:], c.n-k
	return k, nil
}

func TestResumablePatchCutShortResumesWhereItStopped(t *testing.T) {
	fake := newFakeCloudinary(t)
	srv := startServer(t, resumableEnv(t, fake))
	tc := newTusClient(t, newClient(t), srv.url)
	file := readPattern(t, 3*minChunkBytes)
	url := tc.create(int64(len(file)), "filename", "cut.png")

	// The whole file in one PATCH, cut at 60 %.
	cut := len(file) * 6 / 10
	req, err := http.NewRequest(http.MethodPatch, url, &cutBody{b: file, n: cut})
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(file))
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set("Upload-Offset", "0")
	if resp, err := newClient(t).Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the cut PATCH got an answer: %d", resp.StatusCode)
	}
	// On the instance that holds its stream, the upload resumes where the bytes stopped arriving,
	// as HEAD says (a client that sends from elsewhere is told 409 and asks again).
	for deadline := time.Now().Add(testWait); ; {
		off := tc.offset(url)
		if off == 0 || off > int64(cut) {
			t.Fatalf("HEAD after the cut: %d, want some of the %d bytes sent", off, cut)
		}
		resp, b := tc.patch(url, off, file[off:])
		if resp.StatusCode == http.StatusOK {
			break
		}
		if resp.StatusCode != http.StatusConflict || time.Now().After(deadline) {
			t.Fatalf("PATCH after the cut: %d %s", resp.StatusCode, b)
		}
	}
	if n := srv.logs.count(`"msg":"resumable stream started"`); n != 1 {
		t.Errorf("%d streams started for one upload, want the first one, resumed", n)
	}
	if ups := fake.Uploads(); len(ups) != 1 || ups[0].SHA256 != sha(file) {
		t.Errorf("stored %d uploads", len(ups))
	}
}

func TestResumableGuardAcrossPatches(t *testing.T) {
	fake := newFakeCloudinary(t)
	srv := startServer(t, resumableEnv(t, fake))
	tc := newTusClient(t, newClient(t), srv.url)

	// A JPEG with GPS, longer than a chunk (a trailer after its end), in PATCHes of 1 MB.
	photo := append(guardTestJPEG(t), readPattern(t, minChunkBytes+4321)...)
	url := tc.create(int64(len(photo)), "filename", "photo.jpg")
	got := tc.send(url, photo, 1_000_000)
	if got["secure_url"] == nil {
		t.Fatalf("answer %v", got)
	}
	ups := fake.Uploads()
	if len(ups) != 1 {
		t.Fatalf("fake stored %d uploads", len(ups))
	}
	tags := exiftoolTags(t, ups[0].Prefix)
	for k := range tags {
		if strings.Contains(k, "GPS") {
			t.Errorf("stored photo keeps %s", k)
		}
	}
	if _, ok := tags["IFD0:Make"]; !ok && tags["IFD0:Orientation"] == nil {
		t.Logf("tags: %v", tags)
	}
	resp, _ := tc.do(http.MethodGet, url, nil)
	if resp.Header.Get("X-Metadata-Removed") != "gps" {
		t.Errorf("X-Metadata-Removed %q", resp.Header.Get("X-Metadata-Removed"))
	}

	// A pixel bomb is refused at its first PATCH; the upload is ended, nothing stored.
	bomb := guardTestBomb(t)
	url = tc.create(int64(len(bomb)))
	resp, body := tc.patch(url, 0, bomb[:20_000])
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("bomb's first PATCH: %d %s", resp.StatusCode, body)
	}
	if resp, _ := tc.do(http.MethodHead, url, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("HEAD of the refused upload: %d", resp.StatusCode)
	}
	if n := len(fake.Uploads()); n != 1 {
		t.Errorf("fake holds %d uploads, want the photo only", n)
	}
}

// A PATCH whose client went away unseen holds the upload's lock: a DELETE meanwhile is told 423,
// and a newer PATCH (the client resuming) takes over: the older one is ended, and the newer goes on
// from the bytes the older had brought.
func TestResumableNewerPatchTakesOver(t *testing.T) {
	fake := newFakeCloudinary(t)
	srv := startServer(t, resumableEnv(t, fake))
	tc := newTusClient(t, newClient(t), srv.url)
	file := readPattern(t, 100_000)
	url := tc.create(int64(len(file)))

	pr, pw := io.Pipe()
	defer pw.Close()
	req, err := http.NewRequest(http.MethodPatch, url, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(file))
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set("Upload-Offset", "0")
	done := make(chan int, 1)
	go func() {
		resp, err := newClient(t).Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	if err := writeWithin(t, pw, file[:50_000]); err != nil {
		t.Fatal(err)
	}
	// Once the server has taken bytes of the first PATCH, it holds the lock.
	for deadline := time.Now().Add(testWait); tc.offset(url) < 50_000; {
		if time.Now().After(deadline) {
			t.Fatal("the server never took the first PATCH's bytes")
		}
	}
	if resp, _ := tc.do(http.MethodDelete, url, nil); resp.StatusCode != http.StatusLocked {
		t.Errorf("DELETE during a PATCH: %d", resp.StatusCode)
	}
	resp, body := tc.patch(url, 50_000, file[50_000:])
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the newer PATCH: %d %s", resp.StatusCode, body)
	}
	pw.CloseWithError(errors.New("test: the older client is gone")) // if its answer has not ended its request
	if status := within(t, done, "the first PATCH's end"); status/100 == 2 {
		t.Errorf("the older PATCH: %d", status)
	}
	if ups := fake.Uploads(); len(ups) != 1 || ups[0].SHA256 != sha(file) {
		t.Errorf("fake stored %d uploads", len(ups))
	}
}

func TestResumableToTheLocalStore(t *testing.T) {
	env := localEnv(t)
	env["CHUNK_SIZE"] = strconv.Itoa(minChunkBytes)
	env["MAX_UPLOAD_BYTES"] = strconv.Itoa(1 << 30)
	env["RATE_LIMIT"] = "off"
	srv := startServer(t, env)
	tc := newTusClient(t, newClient(t), srv.url)
	file := readPattern(t, 2*minChunkBytes+12345)
	url := tc.create(int64(len(file)), "filename", "local.png")
	got := tc.send(url, file, 4_000_000)
	resp, err := newClient(t).Get(fmt.Sprint(got["secure_url"]))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || sha(b) != sha(file) {
		t.Fatalf("served file: %d, %d bytes, %v", resp.StatusCode, len(b), err)
	}
	// A terminated upload leaves nothing in the store's tmp/.
	url = tc.create(int64(len(file)))
	if resp, b := tc.patch(url, 0, file[:minChunkBytes+10]); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PATCH: %d %s", resp.StatusCode, b)
	}
	if resp, _ := tc.do(http.MethodDelete, url, nil); resp.StatusCode != http.StatusNoContent {
		t.Errorf("DELETE: %d", resp.StatusCode)
	}
	left, err := filepath.Glob(filepath.Join(env["UPLOAD_DIR"], "tmp", "chunks-*"))
	if err != nil || len(left) != 0 {
		t.Errorf("chunks left after DELETE: %v %v", left, err)
	}
}

// An upload belongs to whoever created it: another user, a script with an upload token, or a
// client without a token is told there is none (or to sign in); its owner goes on, into their folder.
func TestResumableBelongsToItsUser(t *testing.T) {
	const script = "script-token-0123456789"
	fake := newFakeCloudinary(t)
	idp := authtest.New(t)
	env := signInEnv(t, fake, idp)
	env["UPLOAD_TOKENS"] = script
	env["RATE_LIMIT"] = "off"
	srv := startServer(t, env)
	tc := newTusClient(t, newClient(t), srv.url)
	alice := "Bearer " + authtest.Mint(t, idp.Key(t, "RS256"), goodClaims("alice"))
	bob := "Bearer " + authtest.Mint(t, idp.Key(t, "RS256"), goodClaims("bob"))
	file := readPattern(t, 20_000)

	resp, body := tc.do(http.MethodPost, "/upload/resumable/", nil, append(tusCreateHeaders(int64(len(file)), "public_id", "mine"), "Authorization", alice)...)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	url := resp.Header.Get("Location")
	if resp, b := tc.patch(url, 0, file[:10_000], "Authorization", alice); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("alice's PATCH: %d %s", resp.StatusCode, b)
	}
	for _, who := range []string{bob, "Bearer " + script} {
		for _, method := range []string{http.MethodHead, http.MethodGet, http.MethodDelete} {
			if resp, _ := tc.do(method, url, nil, "Authorization", who); resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s by another: %d, want 404", method, resp.StatusCode)
			}
		}
		if resp, b := tc.patch(url, 10_000, file[10_000:], "Authorization", who); resp.StatusCode != http.StatusNotFound {
			t.Errorf("PATCH by another: %d %s, want 404", resp.StatusCode, b)
		}
	}
	for _, method := range []string{http.MethodHead, http.MethodGet, http.MethodDelete, http.MethodPatch, http.MethodPost} {
		target := url
		if method == http.MethodPost {
			target = srv.url + "/upload/resumable/"
		}
		if resp, _ := tc.do(method, target, nil, "Upload-Length", "10", "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0"); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d, want 401", method, resp.StatusCode)
		}
	}
	resp, body = tc.patch(url, 10_000, file[10_000:], "Authorization", alice)
	var got map[string]any
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &got) != nil {
		t.Fatalf("alice's last PATCH: %d %s", resp.StatusCode, body)
	}
	if got["public_id"] != "users/alice/mine" || uploadedBy(got) != "alice" {
		t.Errorf("answer: %v", got)
	}
}

// USER_QUOTA counts the bytes of resumable uploads too: a PATCH that would pass it is refused.
func TestResumableCountsAgainstTheQuota(t *testing.T) {
	fake := newFakeCloudinary(t)
	env := resumableEnv(t, fake)
	env["USER_QUOTA"] = "3MB/day"
	srv := startServer(t, env)
	tc := newTusClient(t, newClient(t), srv.url)
	file := readPattern(t, 5_000_000)
	url := tc.create(int64(len(file)))
	if resp, b := tc.patch(url, 0, file[:2_000_000]); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PATCH within the quota: %d %s", resp.StatusCode, b)
	}
	resp, b := tc.patch(url, 2_000_000, file[2_000_000:])
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("PATCH past the quota: %d %s", resp.StatusCode, b)
	}
	if got := tc.offset(url); got != 2_000_000 {
		t.Errorf("offset after the refusal: %d", got)
	}
}

// Past Upload-Expires (RESUMABLE_EXPIRY after its creation) an upload is gone: 410 until swept.
func TestResumableExpires(t *testing.T) {
	fake := newFakeCloudinary(t)
	env := resumableEnv(t, fake)
	env["RESUMABLE_EXPIRY"] = "1ns" // expired as soon as it is made
	srv := startServer(t, env)
	tc := newTusClient(t, newClient(t), srv.url)
	url := tc.create(10)
	for _, method := range []string{http.MethodHead, http.MethodGet} {
		if resp, _ := tc.do(method, url, nil); resp.StatusCode != http.StatusGone {
			t.Errorf("%s of an expired upload: %d, want 410", method, resp.StatusCode)
		}
	}
	if resp, b := tc.patch(url, 0, []byte("0123456789")); resp.StatusCode != http.StatusGone {
		t.Errorf("PATCH of an expired upload: %d %s, want 410", resp.StatusCode, b)
	}
}
