package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// answerGuard bounds how long a test waits for an answer that must come before the body is
// sent: under drainTimeout, so that an answer that waits for the drain fails the test. It only
// keeps a broken server from hanging the test; nothing is asserted about how long answers take.
const answerGuard = 10 * time.Second

// rawRequest opens a connection from ip and writes the head of a POST /upload whose body is
// bodyLen bytes, a multipart form with boundary b unless extra, header lines added to it, has a
// Content-Type.
func rawRequest(t *testing.T, baseURL, ip string, bodyLen int, extra ...string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn := dialFrom(t, baseURL, ip)
	head := "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(bodyLen) + "\r\n"
	if !strings.Contains(strings.Join(extra, "\n"), "Content-Type:") {
		head += "Content-Type: multipart/form-data; boundary=b\r\n"
	}
	for _, h := range extra {
		head += h + "\r\n"
	}
	if _, err := io.WriteString(conn, head+"\r\n"); err != nil {
		t.Fatal(err)
	}
	return conn, bufio.NewReader(conn)
}

// readAnswer reads one response from br within answerGuard.
func readAnswer(t *testing.T, conn net.Conn, br *bufio.Reader) (*http.Response, string) {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(answerGuard)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer while the body is still unsent: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return resp, string(b)
}

// formStart is the start of a multipart body with boundary b whose file is a PNG, padded to n
// bytes in all by formPadding.
func formStart(t *testing.T) []byte {
	return append([]byte("--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n"), paddedPNG(t, 4*sniffLen)...)
}

// An answer decided before the body is read leaves at once: the client, which has sent the
// headers and a little of an 8 MiB body, reads the answer before sending the rest. Then it
// sends the rest (which the server reads and drops) and the connection serves another request.
func TestEarlyAnswerLeavesAtOnce(t *testing.T) {
	fake := newFakeCloudinary(t)
	const bodyLen = 8 << 20
	cases := []struct {
		name   string
		env    map[string]string
		extra  []string
		prime  func(t *testing.T, url string) // makes the next request be refused
		ip     string
		status int
	}{
		{name: "401 without a token", env: map[string]string{"UPLOAD_TOKENS": hostileToken}, status: http.StatusUnauthorized},
		{name: "413 by Content-Length", env: map[string]string{"MAX_UPLOAD_BYTES": "65536"}, status: http.StatusRequestEntityTooLarge},
		{name: "403 from another origin", env: map[string]string{"ALLOWED_ORIGINS": "https://app.example"},
			extra: []string{"Origin: https://evil.example", "Sec-Fetch-Site: cross-site"}, status: http.StatusForbidden},
		{name: "429 past the rate limit", env: map[string]string{"RATE_LIMIT": "1/h"}, ip: "127.0.0.5",
			prime: func(t *testing.T, url string) { smallUpload(t, clientFrom(t, "127.0.0.5"), url) }, status: http.StatusTooManyRequests},
		{name: "415 by Content-Type", extra: []string{"Content-Type: text/plain"}, status: http.StatusUnsupportedMediaType},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := baseEnv(t, fake)
			for k, v := range tc.env {
				env[k] = v
			}
			srv := startServer(t, env)
			if tc.prime != nil {
				tc.prime(t, srv.url)
			}
			ip := tc.ip
			if ip == "" {
				ip = "127.0.0.4"
			}
			conn, br := rawRequest(t, srv.url, ip, bodyLen, tc.extra...)
			start := formStart(t)
			if _, err := conn.Write(start); err != nil {
				t.Fatal(err)
			}
			resp, body := readAnswer(t, conn, br)
			if resp.StatusCode != tc.status || !strings.Contains(body, `"message"`) {
				t.Fatalf("answer %d %s, want %d", resp.StatusCode, body, tc.status)
			}
			// The rest of the body is read and dropped: the client can send it all, and the
			// connection stays open for the next request.
			if _, err := io.CopyN(conn, zeroReader{}, int64(bodyLen-len(start))); err != nil {
				t.Fatalf("sending the rest after the answer: %v", err)
			}
			if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			if resp, body := readAnswer(t, conn, br); resp.StatusCode != http.StatusOK {
				t.Errorf("next request on the connection: %d %s", resp.StatusCode, body)
			}
		})
	}
}

// The 503 of a spent budget leaves at once too.
func TestEarlyBusyAnswerLeavesAtOnce(t *testing.T) {
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	env["MAX_CONCURRENT_UPLOADS"] = "1"
	env["ADMISSION_WAIT"] = "1ms"
	srv := startServer(t, env)
	held := holdUpload(t, clientFrom(t, "127.0.0.2"), srv.url, fake)
	conn, br := rawRequest(t, srv.url, "127.0.0.3", 8<<20)
	if _, err := conn.Write(formStart(t)); err != nil {
		t.Fatal(err)
	}
	if resp, body := readAnswer(t, conn, br); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("answer %d %s, want 503 with Retry-After", resp.StatusCode, body)
	}
	if s := held.finish(t); s != http.StatusOK {
		t.Errorf("held upload: %d", s)
	}
}

// A client that asks Expect: 100-continue and is refused before its body gets the answer at
// once, without 100 Continue, and sends nothing; an admitted one is told to go on.
func TestExpectContinue(t *testing.T) {
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	env["UPLOAD_TOKENS"] = hostileToken
	env["MAX_UPLOAD_BYTES"] = "1048576"
	env["ALLOWED_ORIGINS"] = "https://app.example"
	srv := startServer(t, env)
	auth := "Authorization: Bearer " + hostileToken
	for _, tc := range []struct {
		name   string
		length int
		extra  []string
		status int
	}{
		{"no token", 8 << 20, nil, http.StatusUnauthorized},
		{"413 by Content-Length", 32 << 20, []string{auth}, http.StatusRequestEntityTooLarge},
		{"403 from another origin", 1000, []string{auth, "Origin: https://evil.example", "Sec-Fetch-Site: cross-site"}, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, br := rawRequest(t, srv.url, "127.0.0.2", tc.length, append(tc.extra, "Expect: 100-continue")...)
			resp, body := readAnswer(t, conn, br)
			if resp.StatusCode != tc.status {
				t.Fatalf("answer %d %s, want %d at once, without 100 Continue", resp.StatusCode, body, tc.status)
			}
			// Nothing more: the server closes the connection, having read none of the body.
			if n, err := br.ReadByte(); err != io.EOF {
				t.Errorf("after the answer: %q, %v; want the connection closed", n, err)
			}
		})
	}
	t.Run("admitted", func(t *testing.T) {
		img := paddedPNG(t, 4*sniffLen)
		ct, body := multipartBody(t, nil, "a.png", img)
		conn, br := rawRequest(t, srv.url, "127.0.0.2", len(body), auth, "Expect: 100-continue", "Content-Type: "+ct)
		if resp, body := readAnswer(t, conn, br); resp.StatusCode != http.StatusContinue {
			t.Fatalf("answer %d %s, want 100 Continue", resp.StatusCode, body)
		}
		if _, err := conn.Write(body); err != nil {
			t.Fatal(err)
		}
		if resp, body := readAnswer(t, conn, br); resp.StatusCode != http.StatusOK {
			t.Fatalf("answer %d %s, want 200", resp.StatusCode, body)
		}
	})
}

// curl sends Expect: 100-continue and waits a second for an answer before sending: refused, it
// sends nothing of its 20 MB.
func TestCurlExpectContinueRefused(t *testing.T) {
	curl := needTool(t, "curl", "curl")
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	env["UPLOAD_TOKENS"] = hostileToken
	srv := startServer(t, env)
	file := filepath.Join(t.TempDir(), "big.png")
	if err := os.WriteFile(file, paddedPNG(t, 20_000_000), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(curl, "-sS", "--max-time", "60", "-o", os.DevNull, "-H", "Expect: 100-continue", "-w", "%{http_code} %{size_upload}",
		"-F", "file=@"+file, srv.url+"/upload").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v: %s", err, out)
	}
	status, sent, _ := strings.Cut(string(out), " ")
	if status != "401" || sent != "0" {
		t.Errorf("curl: status %s after sending %s bytes, want 401 after sending none", status, sent)
	}
	if fake.RequestCount() != 0 {
		t.Errorf("reached Cloudinary")
	}
}

// A client that half-closes its sending side once the whole body is sent still waits for the
// answer: the file is stored and answered, every time.
func TestHalfCloseAfterTheBody(t *testing.T) {
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	env["RATE_LIMIT"] = "off"
	srv := startServer(t, env)
	img := paddedPNG(t, 64<<10)
	ct, body := multipartBody(t, nil, "a.png", img)
	statuses := map[int]int{}
	for range 30 {
		conn, br := rawRequest(t, srv.url, "127.0.0.2", len(body), "Content-Type: "+ct)
		if _, err := conn.Write(body); err != nil {
			t.Fatal(err)
		}
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		resp, _ := readAnswer(t, conn, br)
		statuses[resp.StatusCode]++
		conn.Close()
	}
	if statuses[http.StatusOK] != 30 {
		t.Errorf("30 uploads, each half-closed after its body: %v, want 30 × 200", statuses)
	}
	if n := len(fake.Uploads()); n != 30 {
		t.Errorf("%d uploads stored, want 30", n)
	}
}
