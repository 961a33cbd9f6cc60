package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The hostile-input suite: each attack gets its documented answer, a well-behaved client is served
// after each one, memory stays bounded, and nothing reaches Cloudinary unless it is a valid file.
// goleak (TestMain) checks that no attack leaves a goroutine behind.

const hostileToken = "hostile-suite-token-0123456789"

// goodUpload is the well-behaved client: it must succeed whatever came before.
func goodUpload(t *testing.T, c *http.Client, baseURL string, fake *fakeCloudinary) {
	t.Helper()
	before := len(fake.Uploads())
	img := testPNG(t, 12, 12)
	ct, body := multipartBody(t, [][2]string{{"tags", "good"}}, "good.png", img)
	req, err := http.NewRequest(http.MethodPost, baseURL+"/upload", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Authorization", "Bearer "+hostileToken)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("well-behaved upload: %v", err)
	}
	decodeOK(t, resp, "well-behaved upload")
	ups := fake.Uploads()
	if len(ups) != before+1 || ups[len(ups)-1].SHA256 != sha256Hex(img) {
		t.Fatalf("well-behaved upload did not arrive whole")
	}
}

// rawExchange writes req on a fresh connection, then reads one response; the deadline only
// guards against a hang and is no part of what is tested.
func rawExchange(t *testing.T, baseURL string, write func(net.Conn) error) (*http.Response, []byte, error) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(baseURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := write(conn); err != nil {
		return nil, nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// repeatReader yields n copies of b without holding them.
func repeatReader(b string, n int) io.Reader {
	return io.LimitReader(&cycle{s: b}, int64(len(b)*n))
}

type cycle struct {
	s string
	i int
}

func (c *cycle) Read(p []byte) (int, error) {
	for k := range p {
		p[k] = c.s[c.i]
		c.i = (c.i + 1) % len(c.s)
	}
	return len(p), nil
}

func TestHostileInput(t *testing.T) {
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	env["UPLOAD_TOKENS"] = hostileToken + ",second-token-abcdefghijkl"
	env["RATE_LIMIT"] = "off" // its own test below; here one address sends everything
	env["READ_HEADER_TIMEOUT"] = "300ms"
	srv := startServer(t, env)
	client := newClient(t)
	goodUpload(t, client, srv.url, fake)

	const b = "hostile-boundary"
	mp := "multipart/form-data; boundary=" + b
	png := testPNG(t, 64, 64) // larger than the sniffed head
	big := append(testPNG(t, 4, 4), make([]byte, 2*sniffLen)...)
	filePart := func(disposition string, content []byte) string {
		return "--" + b + "\r\nContent-Disposition: " + disposition + "\r\nContent-Type: image/png\r\n\r\n" + string(content) + "\r\n"
	}
	end := "--" + b + "--\r\n"

	cases := []struct {
		name        string
		contentType string
		auth        string
		body        func() io.Reader
		status      int
		message     string
		stored      int  // uploads Cloudinary stores
		upstream    bool // whether a request to Cloudinary may start (a streamed file broken mid-way)
	}{
		{name: "missing_token", auth: "-", contentType: mp, body: func() io.Reader {
			return strings.NewReader(filePart(`form-data; name="file"; filename="a.png"`, png) + end)
		},
			status: 401, message: "upload token"},
		{name: "wrong_token", auth: "Bearer not-the-token-0123456789", contentType: mp, body: func() io.Reader {
			return strings.NewReader(filePart(`form-data; name="file"; filename="a.png"`, png) + end)
		},
			status: 401, message: "upload token"},
		{name: "basic_auth_instead_of_bearer", auth: "Basic " + hostileToken, contentType: mp, body: func() io.Reader { return strings.NewReader(end) },
			status: 401, message: "upload token"},
		{name: "bad_boundary", contentType: "multipart/form-data; boundary=other", body: func() io.Reader {
			return strings.NewReader(filePart(`form-data; name="file"; filename="a.png"`, png) + end)
		},
			status: 400, message: "no delimiter line of the boundary"},
		{name: "unterminated_part_header", contentType: mp, body: func() io.Reader {
			return strings.NewReader("--" + b + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n")
		}, status: 400, message: "request body ended"}, // the body ended in the part's headers
		{name: "ten_thousand_tiny_parts", contentType: mp, body: func() io.Reader {
			return io.MultiReader(repeatReader("--"+b+"\r\nContent-Disposition: form-data; name=\"tags\"\r\n\r\na\r\n", 10_000), strings.NewReader(end))
		}, status: 400, message: `"tags" appears twice`},
		{name: "ten_thousand_nameless_parts", contentType: mp, body: func() io.Reader {
			return io.MultiReader(repeatReader("--"+b+"\r\n\r\n\r\n", 10_000), strings.NewReader(end))
		}, status: 400, message: "form part without a name"},
		{name: "one_megabyte_part_header", contentType: mp, body: func() io.Reader {
			return io.MultiReader(strings.NewReader("--"+b+"\r\nContent-Disposition: form-data; name=\"file\"; filename=\""),
				repeatReader("a", 1<<20), strings.NewReader("\"\r\n\r\n"+string(png)+"\r\n"+end))
		}, status: 400, message: "form fields and part headers are larger than 64 KiB"},
		{name: "fifty_megabyte_text_field", contentType: mp, body: func() io.Reader {
			return io.MultiReader(strings.NewReader("--"+b+"\r\nContent-Disposition: form-data; name=\"tags\"\r\n\r\n"),
				repeatReader("t", 50<<20), strings.NewReader("\r\n"+filePart(`form-data; name="file"; filename="a.png"`, png)+end))
		}, status: 400, message: `"tags" is longer than 2048 bytes`},
		{name: "file_part_without_name", contentType: mp, body: func() io.Reader { return strings.NewReader(filePart(`form-data; filename="a.png"`, png) + end) },
			status: 400, message: "form part without a name"},
		{name: "two_file_parts_both_stored", contentType: mp, body: func() io.Reader {
			return strings.NewReader(filePart(`form-data; name="file"; filename="a.png"`, png) + filePart(`form-data; name="file"; filename="b.png"`, big) + end)
		}, status: 200, stored: 2, upstream: true},
		{name: "filename_with_dotdot", contentType: mp, body: func() io.Reader {
			return strings.NewReader(filePart(`form-data; name="file"; filename="../../etc/passwd.png"`, png) + end)
		}, status: 200, stored: 1, upstream: true},
		{name: "filename_with_nul", contentType: mp, body: func() io.Reader {
			return strings.NewReader(filePart("form-data; name=\"file\"; filename=\"../pass\x00wd.png\"", png) + end)
		}, status: 400, message: "malformed multipart body"}, // Go's MIME header reader refuses NUL
		{name: "svg_named_png", contentType: mp, body: func() io.Reader {
			return strings.NewReader(filePart(`form-data; name="file"; filename="a.png"`, []byte(`<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>`)) + end)
		}, status: 415, message: "image/svg+xml is not allowed"},
		// Last: its upstream request is cut off when the body ends, and may reach the fake only
		// after the client has its answer. A row after it could count that straggler as its own.
		// (The other rows that reach Cloudinary finish their requests before they answer.)
		{name: "unterminated_file_part", contentType: mp, body: func() io.Reader {
			return strings.NewReader("--" + b + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n" + string(big))
		}, status: 400, message: "request body ended before the file was complete", upstream: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			requestsBefore, storedBefore := fake.RequestCount(), len(fake.Uploads())
			req, err := http.NewRequest(http.MethodPost, srv.url+"/upload", tc.body())
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", tc.contentType)
			switch tc.auth {
			case "":
				req.Header.Set("Authorization", "Bearer "+hostileToken)
			case "-":
			default:
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("POST: %v", err)
			}
			if tc.status == http.StatusOK {
				var ok map[string]any
				decodeBody(t, resp, &ok)
				if resp.StatusCode != 200 {
					t.Fatalf("status %d: %v", resp.StatusCode, ok)
				}
			} else {
				var got apiErrorBody
				decodeBody(t, resp, &got)
				if resp.StatusCode != tc.status || !strings.Contains(got.Error.Message, tc.message) {
					t.Fatalf("%d %q, want %d with %q", resp.StatusCode, got.Error.Message, tc.status, tc.message)
				}
			}
			if tc.status == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
			}
			if got := len(fake.Uploads()) - storedBefore; got != tc.stored {
				t.Errorf("Cloudinary stored %d uploads, want %d", got, tc.stored)
			}
			if !tc.upstream && fake.RequestCount() != requestsBefore {
				t.Errorf("a refused request reached Cloudinary")
			}
			if tc.name == "filename_with_dotdot" {
				ups := fake.Uploads()
				if fo := ups[len(ups)-1].Params.Get("filename_override"); fo != "passwd.png" {
					t.Errorf("filename_override = %q, want the base name passwd.png", fo)
				}
			}
			goodUpload(t, client, srv.url, fake)
		})
	}

	t.Run("fifty_megabyte_field_keeps_memory_bounded", func(t *testing.T) {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		body := io.MultiReader(strings.NewReader("--"+b+"\r\nContent-Disposition: form-data; name=\"public_id\"\r\n\r\n"), repeatReader("p", 50<<20))
		req, err := http.NewRequest(http.MethodPost, srv.url+"/upload", body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", mp)
		req.Header.Set("Authorization", "Bearer "+hostileToken)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got apiErrorBody
		decodeBody(t, resp, &got)
		runtime.ReadMemStats(&after) // no GC first: what the request left in use counts
		if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 8<<20 {
			t.Errorf("heap in use grew by %d bytes for a 50 MB field, want under 8 MiB", grew)
		}
		if resp.StatusCode != 400 {
			t.Errorf("status %d", resp.StatusCode)
		}
		goodUpload(t, client, srv.url, fake)
	})

	t.Run("oversize_headers_get_go's_431", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodPost, srv.url+"/upload", strings.NewReader(end))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+hostileToken)
		req.Header.Set("X-Padding", strings.Repeat("x", 80<<10)) // over MaxHeaderBytes (64 KiB) and Go's 4 KiB slack
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		// Go's server answers before any handler runs: plain text, not our JSON.
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || !strings.Contains(string(body), "431 Request Header Fields Too Large") {
			t.Errorf("%d %q, want Go's 431", resp.StatusCode, body)
		}
		goodUpload(t, client, srv.url, fake)
	})

	t.Run("slow_headers_are_cut_off", func(t *testing.T) {
		resp, _, err := rawExchange(t, srv.url, func(c net.Conn) error {
			_, err := io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+hostileToken+"\r\nX-Slow: ")
			return err // and then nothing, as a slowloris client would
		})
		// Past READ_HEADER_TIMEOUT Go closes the connection without an answer.
		if err == nil {
			t.Fatalf("slow client got an answer: %d", resp.StatusCode)
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("the server kept the slow connection open: %v", err)
		}
		goodUpload(t, client, srv.url, fake)
	})

	t.Run("body_stops_midway", func(t *testing.T) {
		full := filePart(`form-data; name="file"; filename="a.png"`, big) + end
		sent := full[:len(full)/2]
		requestsBefore := len(fake.Uploads())
		resp, body, err := rawExchange(t, srv.url, func(c net.Conn) error {
			head := fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", hostileToken, mp, len(full))
			if _, err := io.WriteString(c, head+sent); err != nil {
				return err
			}
			return c.(*net.TCPConn).CloseWrite() // the client stops sending but still listens
		})
		if err != nil {
			t.Fatal(err)
		}
		// Two documented answers, depending on which the server notices first: the body's end
		// (400) or the closed connection, which cancels the request (499, as logged).
		switch {
		case resp.StatusCode == 400 && strings.Contains(string(body), "request body ended before the file was complete"):
		case resp.StatusCode == 499 && strings.Contains(string(body), "client closed the request"):
		default:
			t.Errorf("%d %s, want 400 body ended or 499 client closed", resp.StatusCode, body)
		}
		if len(fake.Uploads()) != requestsBefore {
			t.Errorf("a half file was stored")
		}
		goodUpload(t, client, srv.url, fake)
	})

	t.Run("security_headers_on_errors_and_results", func(t *testing.T) {
		resp, err := client.Get(srv.url + "/nope")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for k, want := range map[string]string{
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "no-referrer",
			"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
		} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("%s = %q, want %q", k, got, want)
			}
		}
	})

	if strings.Contains(srv.logs.String(), hostileToken) || strings.Contains(srv.logs.String(), "second-token-abcdefghijkl") {
		t.Errorf("an upload token is in the logs")
	}
}

func TestRefusedClientStillSendingSeesTheAnswer(t *testing.T) {
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	env["UPLOAD_TOKENS"] = hostileToken
	srv := startServer(t, env)
	ct, body := multipartBody(t, nil, "big.png", append(testPNG(t, 2, 2), make([]byte, 24<<20)...))
	resp, answer, err := rawExchange(t, srv.url, func(c net.Conn) error {
		head := fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", ct, len(body))
		_, err := c.Write(append([]byte(head), body...))
		return err // fails with "broken pipe" if the server stops reading at the 401
	})
	if err != nil {
		t.Fatalf("client without a token: %v", err)
	}
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(answer), "upload token") {
		t.Errorf("%d %s, want the 401", resp.StatusCode, answer)
	}
	if fake.RequestCount() != 0 {
		t.Errorf("reached Cloudinary")
	}
}

func TestForgedForwardedForCannotDodgeTheLimit(t *testing.T) {
	for _, trust := range []string{"false", "true"} {
		t.Run("trust_proxy_"+trust, func(t *testing.T) {
			fake := newFakeCloudinary(t)
			env := baseEnv(t, fake)
			env["RATE_LIMIT"] = "2/min"
			env["TRUST_PROXY"] = trust
			srv := startServer(t, env)
			client := newClient(t)
			var last *http.Response
			for i := range 3 {
				req, err := http.NewRequest(http.MethodPost, srv.url+"/upload", strings.NewReader("x"))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "text/plain")
				// A new forged address each time; behind Heroku the router appends the real one on the right.
				req.Header.Set("X-Forwarded-For", fmt.Sprintf("10.0.0.%d, 203.0.113.50", i))
				if trust == "false" {
					req.Header.Set("X-Forwarded-For", fmt.Sprintf("10.0.0.%d", i))
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				if last != nil {
					last.Body.Close()
				}
				last = resp
			}
			var got apiErrorBody
			decodeBody(t, last, &got)
			if last.StatusCode != http.StatusTooManyRequests || last.Header.Get("Retry-After") != "30" {
				t.Fatalf("third request: %d Retry-After %q (%q), want 429 after 30 s", last.StatusCode, last.Header.Get("Retry-After"), got.Error.Message)
			}
			if trust == "false" { // /sign spends the same budget (with TRUST_PROXY, this client is 127.0.0.1)
				resp := postSign(t, client, srv.url, "", `{}`)
				decodeBody(t, resp, &got)
				if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
					t.Errorf("POST /sign after the budget: %d, want 429 with Retry-After", resp.StatusCode)
				}
			}
			if fake.RequestCount() != 0 {
				t.Errorf("reached Cloudinary")
			}
			if trust == "false" && !strings.Contains(srv.logs.String(), "TRUST_PROXY is off") {
				t.Errorf("no warning about X-Forwarded-For without TRUST_PROXY")
			}
			// /healthz is never limited.
			resp, err := client.Get(srv.url + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("/healthz = %d while the client is limited", resp.StatusCode)
			}
		})
	}
}

// TestTwoOriginHeadersAreRefused: with two Origin headers, CORS and the origin check could each
// read another one (the attack run saw both echoed in Access-Control-Allow-Origin). The request is
// refused, preflight too, and nothing is allowed.
func TestTwoOriginHeadersAreRefused(t *testing.T) {
	const good, evil = "https://app.example", "https://evil.example"
	for _, allowed := range []string{good, "*"} {
		t.Run("ALLOWED_ORIGINS="+allowed, func(t *testing.T) {
			fake := newFakeCloudinary(t)
			env := baseEnv(t, fake)
			env["ALLOWED_ORIGINS"] = allowed
			srv := startServer(t, env)
			c := newClient(t)
			ct, body := multipartBody(t, nil, "a.png", testPNG(t, 2, 2))
			for _, tc := range []struct {
				method string
				header http.Header
			}{
				{http.MethodPost, http.Header{"Origin": {good, evil}, "Content-Type": {ct}}},
				{http.MethodPost, http.Header{"Origin": {evil, good}, "Content-Type": {ct}}},
				{http.MethodOptions, http.Header{"Origin": {good, evil}, "Access-Control-Request-Method": {"POST"}}},
			} {
				req, err := http.NewRequest(tc.method, srv.url+"/upload", bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header = tc.header
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				var got apiErrorBody
				decodeBody(t, resp, &got)
				if resp.StatusCode != http.StatusBadRequest || got.Error.Message != errTwoOrigins.message {
					t.Errorf("%s with Origin %q: %d %q, want 400 %q", tc.method, tc.header["Origin"], resp.StatusCode, got.Error.Message, errTwoOrigins.message)
				}
				if acao := resp.Header.Values("Access-Control-Allow-Origin"); len(acao) != 0 {
					t.Errorf("%s with Origin %q: Access-Control-Allow-Origin %q", tc.method, tc.header["Origin"], acao)
				}
			}
			if n := fake.RequestCount(); n != 0 {
				t.Errorf("%d requests reached Cloudinary", n)
			}
		})
	}
}
