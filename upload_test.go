package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"cloudinary-upload-api/internal/store"
	"cloudinary-upload-api/internal/testkit"
)

// testPNG makes a real PNG of the given size.
func testPNG(t testing.TB, w, h int) []byte {
	t.Helper()
	return testkit.PNG(t, w, h)
}

// testJPEG makes a real JPEG of the given size.
func testJPEG(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for x := 0; x < w; x++ {
		img.Set(x, x%h, color.RGBA{255, uint8(x), 0, 255})
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// postForm sends a ready-made multipart body to /upload.
func postForm(t *testing.T, c *http.Client, baseURL, contentType string, body io.Reader) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, baseURL+"/upload", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST /upload: %v", err)
	}
	return resp
}

func TestUploadRoundTrip(t *testing.T) {
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	env["UPLOAD_FOLDER"] = "site/uploads"
	env["UPLOAD_PRESET"] = "signed_thumbs"
	srv := startServer(t, env)
	client := newClient(t)

	for _, tc := range []struct {
		name     string
		file     []byte
		filename string
		fields   [][2]string
		format   string
	}{
		{"png_with_public_id_and_tags", testPNG(t, 64, 48), "cat.png", [][2]string{{"public_id", "cats/tom"}, {"tags", "cats, pets"}}, "png"},
		{"jpeg_without_fields", testJPEG(t, 120, 80), "dog.jpg", nil, "jpg"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(fake.Uploads())
			ct, body := multipartBody(t, tc.fields, tc.filename, tc.file)
			resp := postForm(t, client, srv.url, ct, bytes.NewReader(body))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			var got map[string]any
			decodeBody(t, resp, &got)

			ups := fake.Uploads()
			if len(ups) != before+1 {
				t.Fatalf("fake recorded %d uploads, want %d", len(ups), before+1)
			}
			up := ups[len(ups)-1]
			if got, want := up.SHA256, sha256Hex(tc.file); got != want {
				t.Errorf("fake received sha256 %s, want %s", got, want)
			}
			if got, want := up.Params.Get("folder"), "site/uploads"; got != want {
				t.Errorf("folder = %q, want %q", got, want)
			}
			if got, want := up.Params.Get("upload_preset"), "signed_thumbs"; got != want {
				t.Errorf("upload_preset = %q, want %q", got, want)
			}
			if got, want := up.Params.Get("filename_override"), tc.filename; got != want {
				t.Errorf("filename_override = %q, want %q", got, want)
			}
			// Cloudinary's answer is passed on as it was sent: its own field names, none added.
			for _, k := range []string{"asset_id", "public_id", "version", "signature", "format", "resource_type", "created_at", "bytes", "etag", "secure_url"} {
				if _, ok := got[k]; !ok {
					t.Errorf("answer lacks Cloudinary's %q: %v", k, got)
				}
			}
			if got, want := got["bytes"], float64(len(tc.file)); got != want {
				t.Errorf("bytes = %v, want %v", got, want)
			}
			if _, ok := got["Response"]; ok {
				t.Errorf("answer has the SDK's Go struct fields: %v", got)
			}
			if tc.fields == nil {
				if up.Params.Has("public_id") || up.Params.Has("overwrite") {
					t.Errorf("public_id/overwrite sent without a client public_id: %v", up.Params)
				}
				return
			}
			if got, want := up.Params.Get("public_id"), "cats/tom"; got != want {
				t.Errorf("public_id = %q, want %q", got, want)
			}
			if got, want := strings.Join(up.Tags(), ","), "cats,pets"; got != want {
				t.Errorf("tags = %q, want %q", got, want)
			}
			if got, want := up.Params.Get("overwrite"), "false"; got != want {
				t.Errorf("overwrite = %q, want %q", got, want)
			}
			if got, want := got["public_id"], "site/uploads/cats/tom"; got != want {
				t.Errorf("public_id in answer = %v, want %v", got, want)
			}
		})
	}
}

// A field the server would have used, after the file, is refused with 400 (the file went up
// without it); one it ignores anywhere is ignored there too. TestUploadFieldAfterTheFile
// (multifile_test.go) checks the answer's whole shape.
func TestUploadFieldsAfterFileAreNotUsed(t *testing.T) {
	fake := newFakeCloudinary(t)
	srv := startServer(t, baseEnv(t, fake))

	ct, body := buildForm(t, filePartOf("file", "a.png", testPNG(t, 4, 4)), field("public_id", "late"))
	resp := postForm(t, newClient(t), srv.url, ct, bytes.NewReader(body))
	var e struct{ Error struct{ Message string } }
	decodeBody(t, resp, &e)
	if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(e.Error.Message, `form field "public_id" came after a file`) {
		t.Errorf("a public_id after the file: %d %q, want 400 naming it", resp.StatusCode, e.Error.Message)
	}
	if ups := fake.Uploads(); len(ups) != 1 || ups[0].Params.Has("public_id") {
		t.Fatalf("a field after the file reached Cloudinary: %+v", ups)
	}
}

// streamedPNG is a PNG header followed by n zero bytes in total, generated as it is read.
func streamedPNG(t testing.TB, n int64) io.Reader {
	head := testPNG(t, 2, 2)
	return io.MultiReader(bytes.NewReader(head), io.LimitReader(zeroReader{}, n-int64(len(head))))
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// streamForm sends a multipart form whose file part is read from file. With size < 0 the request
// has no Content-Length (so the server sends the file in chunks); otherwise the file must be size
// bytes long and the request declares its exact length (so the server streams it in one request).
func streamForm(ctx context.Context, t *testing.T, c *http.Client, baseURL string, file io.Reader, size int64) (*http.Response, error) {
	t.Helper()
	ct, prefix, suffix := formAround(t, filePartOf("file", "big.png", nil))
	pr, pw := io.Pipe()
	go func() {
		_, err := io.Copy(pw, io.MultiReader(bytes.NewReader(prefix), file, bytes.NewReader(suffix)))
		pw.CloseWithError(err)
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/upload", pr)
	if err != nil {
		t.Fatal(err)
	}
	if size >= 0 {
		req.ContentLength = int64(len(prefix)) + size + int64(len(suffix))
	}
	req.Header.Set("Content-Type", ct)
	resp, err := c.Do(req)
	pr.Close() // stops the writer goroutine whatever happened
	return resp, err
}

// streamAnswer is what an upload streamed in the background came to: its answer's status,
// protocol and error message (a note instead when the answer is not JSON), or the client's error.
type streamAnswer struct {
	status         int
	proto, message string
	err            error
}

// goStreamForm runs streamForm in the background, and returns where its answer will come, read
// whole.
func goStreamForm(ctx context.Context, t *testing.T, c *http.Client, baseURL string, file io.Reader, size int64) <-chan streamAnswer {
	answer := make(chan streamAnswer, 1)
	go func() {
		resp, err := streamForm(ctx, t, c, baseURL, file, size)
		if err != nil {
			answer <- streamAnswer{err: err, message: "(client error: " + err.Error() + ")"}
			return
		}
		defer resp.Body.Close()
		a := streamAnswer{status: resp.StatusCode, proto: resp.Proto}
		b, err := io.ReadAll(resp.Body)
		var e apiErrorBody
		switch {
		case err != nil:
			a.err = err
		case !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json"):
			a.message = fmt.Sprintf("(Content-Type %q, not JSON: %q)", resp.Header.Get("Content-Type"), b)
		case json.Unmarshal(b, &e) != nil:
			a.message = fmt.Sprintf("(not JSON: %q)", b)
		default:
			a.message = e.Error.Message
		}
		answer <- a
	}()
	return answer
}

func TestUploadOverLimitMidStream(t *testing.T) {
	const limit = 100 << 20 // the default MAX_UPLOAD_BYTES
	fake := newFakeCloudinary(t)
	srv := startServer(t, baseEnv(t, fake))

	resp, err := streamForm(context.Background(), t, newClient(t), srv.url, streamedPNG(t, limit+1), -1)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	var got apiErrorBody
	decodeBody(t, resp, &got)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d (%q), want 413", resp.StatusCode, got.Error.Message)
	}
	if want := "larger than the limit of 100 MiB"; !strings.Contains(got.Error.Message, want) {
		t.Errorf("message %q, want %q", got.Error.Message, want)
	}
	// Without a Content-Length the file goes in chunks: the limit is passed while the server
	// reads the next chunk, which is then never sent.
	if n := fake.MaxFileBytesSeen(); n > limit {
		t.Errorf("Cloudinary received %d file bytes, more than the %d limit", n, limit)
	}
	if len(fake.Uploads()) != 0 {
		t.Errorf("an oversized file was stored")
	}
}

func TestClientDisconnectCancelsUpstream(t *testing.T) {
	fake := newFakeCloudinary(t)
	srv := startServer(t, baseEnv(t, fake))

	ctx, cancel := context.WithCancel(context.Background())
	file, fileW := io.Pipe()
	result := goStreamForm(ctx, t, newClient(t), srv.url, file, 1<<20) // never completed
	if err := writeWithin(t, fileW, testPNG(t, 16, 16)); err != nil {
		t.Fatal(err)
	}
	if err := writeWithin(t, fileW, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	within(t, fake.FirstBytes, "the upload at the fake") // under way upstream
	// The client goes away.
	cancel()
	// Ends the client's body writer without completing the form: a plain Close let a fast
	// client finish a valid body before it noticed the cancel, and the upload succeeded.
	errGone := errors.New("client went away")
	fileW.CloseWithError(errGone)
	if err := within(t, fake.Aborted, "the fake to see the upload aborted"); err == nil {
		t.Errorf("upstream request ended without error")
	}
	if err := within(t, result, "the client's error").err; !errors.Is(err, context.Canceled) && !errors.Is(err, errGone) {
		t.Errorf("client error %v, want context.Canceled", err)
	}
	if len(fake.Uploads()) != 0 {
		t.Errorf("a cancelled upload was stored")
	}
}

// An upstream that takes the request's headers and then stops reading leaves the server blocked
// writing the file to it. UPLOAD_TIMEOUT must end that write: the client gets 504 and the
// upstream connection is closed, not left hanging.
func TestUpstreamThatStopsReadingGets504(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			conns <- c // never read: the server's writes fill the socket buffers, then block
		}
	}()
	env := baseEnv(t, newFakeCloudinary(t))
	env["CLOUDINARY_URL"] = "cloudinary://" + fakeAPIKey + ":" + fakeAPISecret + "@" + fakeCloudName + "?upload_prefix=http://" + ln.Addr().String()
	env["UPLOAD_TIMEOUT"] = "300ms"
	srv := startServer(t, env)

	const size = 64 << 20 // far more than loopback's socket buffers; below 100 MiB: one request
	resp, err := streamForm(context.Background(), t, newClient(t), srv.url, streamedPNG(t, size), size)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	var got apiErrorBody
	decodeBody(t, resp, &got)
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("status %d (%q), want 504", resp.StatusCode, got.Error.Message)
	}
	c := within(t, conns, "the stalled upstream's connection")
	defer c.Close()
	// Read what the server managed to send; the server must have closed its end.
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil { // a bound on failure, not a wait
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("upstream connection after %d bytes: %v; want it closed by the server", n, err)
	}
	if n >= size {
		t.Errorf("the whole file reached the stalled upstream (%d bytes)", n)
	}
}

func TestSIGTERMLetsUploadFinish(t *testing.T) {
	fake := newFakeCloudinary(t)
	srv := startServer(t, baseEnv(t, fake))
	img := append(testPNG(t, 2, 2), make([]byte, 4*sniffLen)...) // two halves, each more than the sniffed head
	half := len(img) / 2

	file, fileW := io.Pipe()
	result := goStreamForm(context.Background(), t, newClient(t), srv.url, file, int64(len(img)))
	if err := writeWithin(t, fileW, img[:half]); err != nil {
		t.Fatal(err)
	}
	within(t, fake.FirstBytes, "the upload at the fake")
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := writeWithin(t, fileW, img[half:]); err != nil {
		t.Fatal(err)
	}
	fileW.Close()
	if a := within(t, result, "the answer during shutdown"); a.err != nil || a.status != http.StatusOK {
		t.Fatalf("upload during shutdown: status %d, err %v", a.status, a.err)
	}
	if err := within(t, srv.done, "run to return after SIGTERM"); err != nil {
		t.Fatalf("run after SIGTERM: %v", err)
	}
	close(srv.done)
	if got := fake.Uploads(); len(got) != 1 || got[0].SHA256 != sha256Hex(img) {
		t.Fatalf("the upload did not arrive whole: %+v", got)
	}
	if !strings.Contains(srv.logs.String(), `"msg":"shutting down"`) {
		t.Errorf("no shutdown line in the logs")
	}
}

func TestCurlUpload(t *testing.T) {
	curl := needTool(t, "curl", "curl")
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	env["MAX_UPLOAD_BYTES"] = "1048576"
	srv := startServer(t, env)
	dir := t.TempDir()
	small := filepath.Join(dir, "photo.png")
	big := filepath.Join(dir, "big.png")
	img := testPNG(t, 20, 20)
	if err := os.WriteFile(small, img, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(big, append(testPNG(t, 2, 2), make([]byte, 3<<20)...), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file, status string
	}{{small, "200"}, {big, "413"}} {
		out, err := exec.Command(curl, "-sS", "--max-time", "60", "-o", filepath.Join(dir, "out.json"), "-w", "%{http_code}",
			"-F", "tags=curl", "-F", "file=@"+tc.file, srv.url+"/upload").CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v: %s", tc.file, err, out)
		}
		if string(out) != tc.status {
			t.Errorf("curl %s: status %s, want %s", filepath.Base(tc.file), out, tc.status)
		}
		answer, err := os.ReadFile(filepath.Join(dir, "out.json"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(answer, []byte("{")) {
			t.Errorf("curl got a non-JSON answer: %q", answer)
		}
	}
	if ups := fake.Uploads(); len(ups) != 1 || ups[0].SHA256 != sha256Hex(img) || strings.Join(ups[0].Tags(), ",") != "curl" {
		t.Errorf("curl upload did not arrive as sent: %+v", ups)
	}
}

func FuzzUpload(f *testing.F) {
	f.Add("multipart/form-data; boundary=x", []byte("--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n\x89PNG\r\n\x1a\n\r\n--x--\r\n"))
	f.Add("multipart/form-data; boundary=x", []byte("--x\r\nContent-Disposition: form-data; name=\"tags\"\r\n\r\na,b\r\n--x\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nGIF89a\r\n--x--"))
	f.Add("multipart/form-data; boundary=\"\"", []byte("--\r\n"))
	f.Add("text/plain", []byte("hello"))
	h := newServer(discardLogger(), testConfig(), testStorage(acceptAllUploader{}), newHealthState())
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		req, err := http.NewRequest(http.MethodPost, "/upload", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", contentType)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for Content-Type %q: %s", rec.Code, contentType, rec.Body)
		}
		if !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
			t.Fatalf("non-JSON answer %d", rec.Code)
		}
	})
}

// acceptAllUploader stores nothing and answers like Cloudinary would.
type acceptAllUploader struct{}

// testStorage is a store of the tests' own, with no routes of its own.
func testStorage(up uploader) storage { return storage{up: up, name: "other"} }

func (acceptAllUploader) Upload(_ context.Context, file io.Reader, p store.Params) (json.RawMessage, error) {
	n, err := io.Copy(io.Discard, file)
	if err != nil {
		return nil, err
	}
	return []byte(fmt.Sprintf(`{"public_id":%q,"bytes":%d}`, p.PublicID, n)), nil
}

// TestEarlyErrorReachesClientStillSending sends a large body without reading the answer until
// it is all sent, as a browser does. Without the drain, the server closes with unread data and
// the client's write fails with a reset.
func TestEarlyErrorReachesClientStillSending(t *testing.T) {
	env := localEnv(t)
	env["MAX_UPLOAD_BYTES"] = "65536"
	srv := startServer(t, env)
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ct, body := multipartBody(t, nil, "big.png", append(testPNG(t, 2, 2), make([]byte, 24<<20)...))
	head := fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", ct, len(body))
	if _, err := conn.Write(append([]byte(head), body...)); err != nil {
		t.Fatalf("sending the body: %v (the server closed before reading it)", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	var got apiErrorBody
	decodeBody(t, resp, &got)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(got.Error.Message, "64 KiB") {
		t.Errorf("answer %d %q, want the 413", resp.StatusCode, got.Error.Message)
	}
}
