package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// h2cClient speaks only HTTP/2 without TLS, with prior knowledge: as Cloud Run's front end does
// with --use-http2.
func h2cClient(t *testing.T) *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// TestH2CUpload40MiB: over HTTP/1, Cloud Run refuses a request over 32 MiB; over HTTP/2 (h2c) a
// 40 MiB file goes through, and reaches Cloudinary byte for byte.
func TestH2CUpload40MiB(t *testing.T) {
	fake := newFakeCloudinary(t)
	srv := startServer(t, baseEnv(t, fake))
	img := paddedPNG(t, 40<<20)
	resp, err := streamForm(context.Background(), t, h2cClient(t), srv.url, bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatalf("POST over h2c: %v", err)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("answered over %s, want HTTP/2", resp.Proto)
	}
	decodeOK(t, resp, "40 MiB over h2c")
	if ups := fake.Uploads(); len(ups) != 1 || ups[0].SHA256 != sha256Hex(img) {
		t.Fatalf("the fake did not get the 40 MiB file byte for byte: %+v", ups)
	}
}

// TestH2CCurl: the check Cloud Run's documentation gives, curl --http2-prior-knowledge, uploads.
func TestH2CCurl(t *testing.T) {
	curl := needTool(t, "curl", "curl")
	fake := newFakeCloudinary(t)
	srv := startServer(t, baseEnv(t, fake))
	dir := t.TempDir()
	file := filepath.Join(dir, "photo.png")
	img := testPNG(t, 20, 20)
	if err := os.WriteFile(file, img, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(curl, "-sS", "--max-time", "60", "--http2-prior-knowledge", "-o", filepath.Join(dir, "out.json"),
		"-w", "%{http_version} %{http_code}", "-F", "file=@"+file, srv.url+"/upload").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v: %s", err, out)
	}
	if string(out) != "2 200" {
		t.Errorf("curl --http2-prior-knowledge: %q, want HTTP/2 and 200", out)
	}
	if ups := fake.Uploads(); len(ups) != 1 || ups[0].SHA256 != sha256Hex(img) {
		t.Errorf("curl's upload did not arrive as sent: %+v", ups)
	}
}

// TestH2CBodyTimers: BODY_IDLE_TIMEOUT and MIN_UPLOAD_RATE cut an HTTP/2 upload (its stream has
// its own read deadline) with their 408s, while another upload on the same connection goes on.
func TestH2CBodyTimers(t *testing.T) {
	for _, tc := range []struct {
		name, variable, value, message string
		trickle                        bool
	}{
		{"stalled", "BODY_IDLE_TIMEOUT", "200ms", errBodyIdle.message, false},
		{"too_slow", "MIN_UPLOAD_RATE", "64KiB/s,grace=500ms,window=500ms", errTooSlow.message, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFakeCloudinary(t)
			env := baseEnv(t, fake)
			env[tc.variable] = tc.value
			srv := startServer(t, env)
			client := h2cClient(t)

			img := paddedPNG(t, 1<<20)
			file, fileW := io.Pipe()
			defer fileW.Close()
			result := goStreamForm(context.Background(), t, client, srv.url, file, int64(len(img)))
			if _, err := fileW.Write(img[:64<<10]); err != nil {
				t.Fatal(err)
			}
			<-fake.FirstBytes
			stop := make(chan struct{})
			defer close(stop)
			if tc.trickle { // a byte every 10 ms: never idle, far under 64 KiB/s
				go func() {
					tick := time.NewTicker(10 * time.Millisecond)
					defer tick.Stop()
					for i := 64 << 10; ; i++ {
						select {
						case <-stop:
							return
						case <-tick.C:
						}
						if _, err := fileW.Write(img[i : i+1]); err != nil {
							return
						}
					}
				}()
			}
			// Meanwhile a whole upload on the same connection: its stream has its own deadline.
			if status, _, msg := smallUpload(t, client, srv.url); status != http.StatusOK {
				t.Errorf("upload beside the slow one: %d %q", status, msg)
			}
			a := <-result
			if a.status != http.StatusRequestTimeout || a.message != tc.message || a.proto != "HTTP/2.0" {
				t.Fatalf("got %s %d %q, want HTTP/2.0 408 %q", a.proto, a.status, a.message, tc.message)
			}
			if n := len(fake.Uploads()); n != 1 {
				t.Errorf("%d uploads stored, want the whole one only", n)
			}
		})
	}
}

// TestH2CEarlyError: a file over MAX_UPLOAD_BYTES gets its 413 over HTTP/2 while the client is
// still sending, without the server reading the rest (as it must over HTTP/1, so that the answer
// is seen): the stream carries the answer, and flow control stops the client.
func TestH2CEarlyError(t *testing.T) {
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	env["MAX_UPLOAD_BYTES"] = "1048576"
	srv := startServer(t, env)
	ct, head, tail := formAround(t, filePartOf("file", "big.png", nil))
	sent := &sentCounter{r: io.MultiReader(bytes.NewReader(head), bytes.NewReader(paddedPNG(t, 24<<20)), bytes.NewReader(tail))}
	var body io.Reader = sent
	req, err := http.NewRequest(http.MethodPost, srv.url+"/upload", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	resp, err := h2cClient(t).Do(req)
	if err != nil {
		t.Fatalf("the answer did not reach the client: %v", err)
	}
	var got apiErrorBody
	decodeBody(t, resp, &got)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.ProtoMajor != 2 {
		t.Errorf("%s %d %q, want HTTP/2 413", resp.Proto, resp.StatusCode, got.Error.Message)
	}
	if n := len(fake.Uploads()); n != 0 {
		t.Errorf("%d uploads stored, want none", n)
	}
	// Over HTTP/1 the server reads up to 32 MiB more so that the answer is seen; over HTTP/2 the
	// stream carries it, so nothing is drained (measured: the client's transport took 11.6 MB of
	// the 24 MiB, against all of it with the drain).
	if n := srv.logs.count("drained request body"); n != 0 {
		t.Errorf("the server drained the body of an HTTP/2 request (sent %d bytes of 24 MiB)", sent.n.Load())
	}
}

// sentCounter counts what the client's transport took of a request body.
type sentCounter struct {
	r io.Reader
	n atomic.Int64
}

func (c *sentCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// TestH2CSIGTERMLetsUploadFinish: an HTTP/2 upload in flight at SIGTERM finishes (the server sends
// GOAWAY, and waits for the stream within SHUTDOWN_TIMEOUT).
func TestH2CSIGTERMLetsUploadFinish(t *testing.T) {
	fake := newFakeCloudinary(t)
	srv := startServer(t, baseEnv(t, fake))
	img := paddedPNG(t, 1<<20)
	file, fileW := io.Pipe()
	result := goStreamForm(context.Background(), t, h2cClient(t), srv.url, file, int64(len(img)))
	if _, err := fileW.Write(img[:len(img)/2]); err != nil {
		t.Fatal(err)
	}
	<-fake.FirstBytes
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	srv.logs.waitFor(t, `"msg":"shutting down"`)
	if _, err := fileW.Write(img[len(img)/2:]); err != nil {
		t.Fatal(err)
	}
	fileW.Close()
	if a := <-result; a.err != nil || a.status != http.StatusOK {
		t.Fatalf("HTTP/2 upload during shutdown: status %d, err %v", a.status, a.err)
	}
	if err := <-srv.done; err != nil {
		t.Fatalf("run after SIGTERM: %v", err)
	}
	close(srv.done)
	if got := fake.Uploads(); len(got) != 1 || got[0].SHA256 != sha256Hex(img) {
		t.Fatalf("the upload did not arrive whole: %+v", got)
	}
}
