package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestTrustProxyModes runs the server with each TRUST_PROXY mode and a budget of two requests: the
// rate limit follows the address in the header the mode names, and ignores the other headers a
// client (or another platform's proxy) could send.
func TestTrustProxyModes(t *testing.T) {
	// forged gives a request the headers of every mode, each naming a new address per request i.
	forged := func(i int) map[string]string {
		return map[string]string{
			"X-Forwarded-For":  fmt.Sprintf("10.9.%d.1, 10.9.%d.2, 10.9.%d.3", i, i, i),
			"Fly-Client-IP":    fmt.Sprintf("10.8.%d.1", i),
			"CF-Connecting-IP": fmt.Sprintf("10.7.%d.1", i),
		}
	}
	for _, tc := range []struct {
		mode string
		// client sets, in the headers of request i, the address the mode must find: the same
		// client for i < 3, another for i == 3. For false, the connection's address decides.
		client func(h map[string]string, i int, addr string)
	}{
		{"false", nil},
		{"heroku", func(h map[string]string, i int, addr string) {
			h["X-Forwarded-For"] = fmt.Sprintf("10.9.%d.1, %s", i, addr)
		}},
		{"fly", func(h map[string]string, i int, addr string) { h["Fly-Client-IP"] = addr }},
		{"cloudflare", func(h map[string]string, i int, addr string) { h["CF-Connecting-IP"] = addr }},
		{"xff:2", func(h map[string]string, i int, addr string) { // Google's load balancer: client, then itself
			h["X-Forwarded-For"] = fmt.Sprintf("10.9.%d.1, %s, 35.191.%d.9", i, addr, i)
		}},
	} {
		t.Run(strings.ReplaceAll(tc.mode, ":", "_"), func(t *testing.T) {
			fake := newFakeCloudinary(t)
			env := baseEnv(t, fake)
			env["RATE_LIMIT"] = "2/min"
			env["TRUST_PROXY"] = tc.mode
			srv := startServer(t, env)
			one, other := clientFrom(t, "127.0.0.2"), clientFrom(t, "127.0.0.3")
			send := func(c *http.Client, i int, addr string) int {
				t.Helper()
				req, err := http.NewRequest(http.MethodPost, srv.url+"/upload", strings.NewReader("x"))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "text/plain") // 415 once past the rate limit
				h := forged(i)
				if tc.client != nil {
					tc.client(h, i, addr)
				}
				for k, v := range h {
					req.Header.Set(k, v)
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				var body apiErrorBody
				decodeBody(t, resp, &body)
				return resp.StatusCode
			}
			// Three requests of one client, each with new addresses in every other header; the
			// connection changes too, except for false, where it is what names the client.
			conns := []*http.Client{one, other, one}
			if tc.mode == "false" {
				conns = []*http.Client{one, one, one}
			}
			for i, want := range []int{http.StatusUnsupportedMediaType, http.StatusUnsupportedMediaType, http.StatusTooManyRequests} {
				if got := send(conns[i], i, "198.51.100.7"); got != want {
					t.Fatalf("request %d of one client: %d, want %d", i+1, got, want)
				}
			}
			// Another client, with the headers of the limited one's first request otherwise.
			next := one
			if tc.mode == "false" {
				next = other
			}
			if got := send(next, 0, "198.51.100.8"); got != http.StatusUnsupportedMediaType {
				t.Errorf("another client: %d, want 415 (its own budget)", got)
			}
			if tc.mode != "false" && !strings.Contains(srv.logs.String(), `"trust_proxy":"`+tc.mode+`"`) {
				t.Errorf("the start-up log does not name TRUST_PROXY=%s", tc.mode)
			}
		})
	}
}

// TestTrustProxyFallsBack: with TRUST_PROXY=fly, requests without Fly-Client-IP (not through Fly's
// proxy) are counted under the connection's address, together, and the server says so once.
func TestTrustProxyFallsBack(t *testing.T) {
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	env["RATE_LIMIT"] = "2/min"
	env["TRUST_PROXY"] = "fly"
	srv := startServer(t, env)
	c := clientFrom(t, "127.0.0.2")
	var statuses []int
	for i := range 3 {
		req, err := http.NewRequest(http.MethodPost, srv.url+"/upload", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("X-Forwarded-For", fmt.Sprintf("10.0.0.%d", i)) // not the header fly names
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body apiErrorBody
		decodeBody(t, resp, &body)
		statuses = append(statuses, resp.StatusCode)
	}
	if fmt.Sprint(statuses) != "[415 415 429]" {
		t.Errorf("statuses %v, want [415 415 429]: one budget for the connection's address", statuses)
	}
	if n := srv.logs.count("no usable Fly-Client-IP"); n != 1 {
		t.Errorf("%d warnings about the missing Fly-Client-IP, want 1:\n%s", n, srv.logs)
	}
}

// TestTrustProxyRefusedAtStartUp: a value that names no mode stops the server, naming the choices.
func TestTrustProxyRefusedAtStartUp(t *testing.T) {
	_, err := loadConfig(mapGetenv(map[string]string{"TRUST_PROXY": "Fly-Client-IP"}))
	if err == nil || !strings.Contains(err.Error(), `TRUST_PROXY="Fly-Client-IP": want false, true or heroku`) {
		t.Errorf("error %v, want TRUST_PROXY refused with the choices", err)
	}
}
