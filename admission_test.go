package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// clientFrom is an HTTP client whose connections come from ip (all of 127.0.0.0/8 is local), so
// that the server sees another client for each address.
func clientFrom(t *testing.T, ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// dialFrom opens a raw connection to the server from ip.
func dialFrom(t *testing.T, baseURL, ip string) net.Conn {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	conn, err := d.Dial("tcp", strings.TrimPrefix(baseURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// paddedPNG is a real PNG followed by zeros up to n bytes: sniffed as a PNG, of any size.
func paddedPNG(t testing.TB, n int) []byte {
	img := testPNG(t, 4, 4)
	return append(img, make([]byte, n-len(img))...)
}

// metricsText fetches /metrics.
func metricsText(t *testing.T, c *http.Client, baseURL string) string {
	t.Helper()
	resp, err := c.Get(baseURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// heldUpload is an upload whose file waits for release before its last bytes.
type heldUpload struct {
	w      *io.PipeWriter
	rest   []byte
	answer <-chan streamAnswer
}

// holdUpload starts an upload from c and returns once the fake has seen its first bytes: the
// upload has been admitted and holds its reservation.
func holdUpload(t *testing.T, c *http.Client, baseURL string, fake *fakeCloudinary) *heldUpload {
	t.Helper()
	return holdUploadOf(t, c, baseURL, fake, 4*sniffLen)
}

// holdUploadOf is holdUpload of a file of about size bytes: the upload reserves what its size asks.
func holdUploadOf(t *testing.T, c *http.Client, baseURL string, fake *fakeCloudinary, size int) *heldUpload {
	t.Helper()
	img := paddedPNG(t, size)
	r, w := io.Pipe()
	h := &heldUpload{w: w, rest: img[len(img)/2:], answer: goStreamForm(context.Background(), t, c, baseURL, r, int64(len(img)))}
	t.Cleanup(func() { w.Close() })
	if err := writeWithin(t, w, img[:len(img)/2]); err != nil {
		t.Fatal(err)
	}
	within(t, fake.FirstBytes, "the held upload at the fake")
	return h
}

// finish sends the rest of the file and returns the answer's status.
func (h *heldUpload) finish(t *testing.T) int {
	t.Helper()
	if err := writeWithin(t, h.w, h.rest); err != nil {
		t.Fatal(err)
	}
	h.w.Close()
	return within(t, h.answer, "the held upload's answer").status // 0 when the request failed
}

// smallUpload posts a small PNG and returns the answer.
func smallUpload(t *testing.T, c *http.Client, baseURL string) (int, http.Header, string) {
	t.Helper()
	ct, body := multipartBody(t, nil, "s.png", testPNG(t, 3, 3))
	resp := postForm(t, c, baseURL, ct, bytes.NewReader(body))
	var got apiErrorBody
	decodeBody(t, resp, &got)
	return resp.StatusCode, resp.Header, got.Error.Message
}

// 16 people uploading four 2 MB photos each, at once, on the defaults: every upload gets in.
func TestManyConcurrentUploadsOnDefaults(t *testing.T) {
	fake := newFakeCloudinary(t)
	srv := startServer(t, baseEnv(t, fake))
	ct, body := multipartBody(t, nil, "photo.png", paddedPNG(t, 2_000_000))
	var wg sync.WaitGroup
	statuses := make(chan int, 64)
	for person := range 16 {
		c := clientFrom(t, fmt.Sprintf("127.0.0.%d", 10+person))
		for range 4 {
			wg.Go(func() {
				req, err := http.NewRequest(http.MethodPost, srv.url+"/upload", bytes.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				req.Header.Set("Content-Type", ct)
				resp, err := c.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				statuses <- resp.StatusCode
			})
		}
	}
	wg.Wait()
	close(statuses)
	counts := map[int]int{}
	for s := range statuses {
		counts[s]++
	}
	if counts[http.StatusOK] != 64 {
		t.Fatalf("answers by status: %v, want 64 × 200", counts)
	}
}

func TestPerClientCap(t *testing.T) {
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	env["MAX_UPLOADS_PER_CLIENT"] = "4"
	srv := startServer(t, env)
	greedy := clientFrom(t, "127.0.0.2")
	var held []*heldUpload
	for range 4 {
		held = append(held, holdUpload(t, greedy, srv.url, fake))
	}
	status, h, msg := smallUpload(t, greedy, srv.url)
	if status != http.StatusTooManyRequests || msg != errClientBusy.message || h.Get("Retry-After") == "" {
		t.Errorf("fifth upload of one client: %d %q Retry-After %q, want 429 %q with Retry-After", status, msg, h.Get("Retry-After"), errClientBusy.message)
	}
	if status, _, msg := smallUpload(t, clientFrom(t, "127.0.0.3"), srv.url); status != http.StatusOK {
		t.Errorf("another client meanwhile: %d %q, want 200", status, msg)
	}
	for i, u := range held {
		if s := u.finish(t); s != http.StatusOK {
			t.Errorf("held upload %d: %d", i, s)
		}
	}
	if status, _, msg := smallUpload(t, greedy, srv.url); status != http.StatusOK {
		t.Errorf("once its uploads are done: %d %q, want 200", status, msg)
	}
}

// A browser opens six connections per host: on the defaults, all six uploads of one page get in.
func TestSixUploadsOfOneClientOnDefaults(t *testing.T) {
	fake := newFakeCloudinary(t)
	srv := startServer(t, baseEnv(t, fake))
	holdAllThenFinish(t, clientFrom(t, "127.0.0.2"), srv.url, fake, 6)
}

// holdAllThenFinish starts n uploads from c, each held before its last bytes so that all n are
// in flight at once, then lets them finish: every one must be 200.
func holdAllThenFinish(t *testing.T, c *http.Client, baseURL string, fake *fakeCloudinary, n int) {
	t.Helper()
	var held []*heldUpload
	for range n {
		held = append(held, holdUpload(t, c, baseURL, fake))
	}
	for i, u := range held {
		if s := u.finish(t); s != http.StatusOK {
			t.Errorf("upload %d of %d held at once: %d, want 200", i, n, s)
		}
	}
}

func TestMemoryBudgetWaitsThenRefuses(t *testing.T) {
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	env["CHUNK_SIZE"] = strconv.Itoa(minChunkBytes)
	env["METRICS"] = "true"
	cfg := testConfig()
	cfg.ChunkSize = minChunkBytes
	streamed := cfg.uploadReservation(false)
	budget := 4*streamed + cfg.uploadReservationFor(0)/2 // 4 held uploads, and not even the smallest fifth
	if budget < cfg.uploadReservation(true) {
		t.Fatalf("a budget of %d bytes is refused at start-up: a chunked upload needs %d", budget, cfg.uploadReservation(true))
	}
	env["UPLOAD_MEMORY"] = strconv.FormatInt(budget, 10)
	env["ADMISSION_WAIT"] = "100ms"
	srv := startServer(t, env)
	var held []*heldUpload
	for i := range 4 {
		// Larger than the largest buffers: each reserves all an upload may.
		held = append(held, holdUploadOf(t, clientFrom(t, fmt.Sprintf("127.0.0.%d", 2+i)), srv.url, fake, requestBufferBytes+4*sniffLen))
	}
	status, h, msg := smallUpload(t, clientFrom(t, "127.0.0.9"), srv.url)
	if status != http.StatusServiceUnavailable || msg != errTooBusy.message || h.Get("Retry-After") != retryAfterBusy {
		t.Errorf("upload past the budget: %d %q Retry-After %q, want 503 %q with Retry-After %s", status, msg, h.Get("Retry-After"), errTooBusy.message, retryAfterBusy)
	}
	m := metricsText(t, newClient(t), srv.url)
	for _, want := range []string{"upload_admission_wait_seconds_count 1", `upload_refusals_total{reason="budget"} 1`} {
		if !strings.Contains(m, "\n"+want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	for i, u := range held {
		if s := u.finish(t); s != http.StatusOK {
			t.Errorf("held upload %d: %d", i, s)
		}
	}
	if status, _, msg := smallUpload(t, clientFrom(t, "127.0.0.9"), srv.url); status != http.StatusOK {
		t.Errorf("once memory is back: %d %q", status, msg)
	}
}

// Uploads that break off mid-body give back everything they held: memory and the client's places.
func TestAbortedUploadsGiveBackTheirReservations(t *testing.T) {
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	env["CHUNK_SIZE"] = strconv.Itoa(minChunkBytes)
	env["RATE_LIMIT"] = "off"
	cfg := testConfig()
	env["UPLOAD_MEMORY"] = strconv.FormatInt(8*cfg.uploadReservation(false), 10) // exactly 8
	env["MAX_MEMORY_PER_CLIENT"] = "100%"                                        // all 8 from one client
	srv := startServer(t, env)

	img := paddedPNG(t, 64<<10)
	ct, head, _ := formAround(t, filePartOf("file", "a.png", nil))
	for i := range 100 {
		conn, br := rawRequest(t, srv.url, "127.0.0.2", len(head)+len(img)+100, "Content-Type: "+ct)
		cut := len(head) + sniffLen + i*512 // each stops somewhere past the sniffed head
		if _, err := conn.Write(append(slices.Clone(head), img...)[:cut]); err != nil {
			t.Fatal(err)
		}
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil { // the body breaks off here
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("abort %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("abort %d: status %d, want 400", i, resp.StatusCode)
		}
		conn.Close()
	}
	// All 8 of the budget, and all 8 of the client's places, are free again.
	holdAllThenFinish(t, clientFrom(t, "127.0.0.2"), srv.url, fake, 8)
}

// Slow bodies from one address hold no one else up, and end with 408 once under the rate.
func TestSlowBodiesAreCut(t *testing.T) {
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	// Short grace and window so the test takes a fraction of a second; the rule is the same.
	env["MIN_UPLOAD_RATE"] = "64KiB/s,grace=1s,window=500ms"
	env["MAX_UPLOADS_PER_CLIENT"] = "off" // all 32 get in: the rate alone must deal with them
	env["MAX_MEMORY_PER_CLIENT"] = "off"
	env["RATE_LIMIT"] = "off"
	env["METRICS"] = "true"
	srv := startServer(t, env)

	const slow = 32
	img := paddedPNG(t, 1<<20)
	ct, head, _ := formAround(t, filePartOf("file", "slow.png", nil))
	type answer struct {
		status int
		body   string
	}
	answers := make(chan answer, slow)
	stop := make(chan struct{})
	defer close(stop)
	for range slow {
		conn, br := rawRequest(t, srv.url, "127.0.0.2", len(head)+len(img)+100, "Content-Type: "+ct)
		if _, err := conn.Write(append(slices.Clone(head), img[:2*sniffLen]...)); err != nil {
			t.Fatal(err)
		}
		got := make(chan struct{})
		go func() { // one byte per read, a hundred a second: far under 64 KiB/s, never idle
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for i := 2 * sniffLen; ; i++ {
				select {
				case <-got:
					return
				case <-stop:
					return
				case <-tick.C:
				}
				if _, err := conn.Write(img[i : i+1]); err != nil {
					return
				}
			}
		}()
		go func() {
			defer close(got)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				answers <- answer{body: err.Error()}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			answers <- answer{resp.StatusCode, string(b)}
		}()
	}
	for range slow {
		within(t, fake.FirstBytes, "a slow upload at the fake") // every slow upload is in, and holds its reservation
	}
	good := clientFrom(t, "127.0.0.3")
	for i := range 3 {
		if status, _, msg := smallUpload(t, good, srv.url); status != http.StatusOK {
			t.Errorf("good client's upload %d among slow ones: %d %q", i, status, msg)
		}
	}
	for range slow {
		a := within(t, answers, "a slow upload's answer")
		if a.status != http.StatusRequestTimeout || !strings.Contains(a.body, errTooSlow.message) {
			t.Errorf("slow body: %d %q, want 408 %q", a.status, a.body, errTooSlow.message)
		}
	}
	if m := metricsText(t, good, srv.url); !strings.Contains(m, fmt.Sprintf("\n"+`upload_refusals_total{reason="too_slow"} %d`+"\n", slow)) {
		t.Errorf("/metrics does not count %d too_slow refusals", slow)
	}
	if n := len(fake.Uploads()); n != 3 {
		t.Errorf("%d uploads stored, want the good client's 3", n)
	}
}

func TestOriginCheck(t *testing.T) {
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	env["ALLOWED_ORIGINS"] = "https://app.example"
	env["METRICS"] = "true"
	srv := startServer(t, env)
	c := newClient(t)
	ct, body := multipartBody(t, nil, "a.png", testPNG(t, 2, 2))
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    int
	}{
		{"foreign_origin", map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{"cross_site_fetch", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"allowed_origin", map[string]string{"Origin": "https://app.example", "Sec-Fetch-Site": "cross-site"}, http.StatusOK},
		{"no_origin", nil, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A refusal comes before the body is read: this body never gets a byte.
			var reqBody io.Reader = bytes.NewReader(body)
			if tc.want == http.StatusForbidden {
				pr, pw := io.Pipe()
				defer pw.Close()
				reqBody = pr
			}
			for _, path := range []string{"/upload", "/sign"} {
				b := reqBody
				if path == "/sign" {
					b = strings.NewReader(`{"public_id":"x"}`)
				}
				req, err := http.NewRequest(http.MethodPost, srv.url+path, b)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", ct)
				if path == "/sign" {
					req.Header.Set("Content-Type", "application/json")
				}
				for k, v := range tc.headers {
					req.Header.Set(k, v)
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				var got apiErrorBody
				decodeBody(t, resp, &got)
				if tc.want == http.StatusForbidden && (resp.StatusCode != tc.want || got.Error.Message != errForeignOrigin.message) {
					t.Errorf("%s: %d %q, want 403 %q", path, resp.StatusCode, got.Error.Message, errForeignOrigin.message)
				}
				if tc.want == http.StatusOK && resp.StatusCode != http.StatusOK {
					t.Errorf("%s: %d %q, want 200", path, resp.StatusCode, got.Error.Message)
				}
			}
		})
	}
	if m := metricsText(t, c, srv.url); !strings.Contains(m, "\n"+`upload_refusals_total{reason="origin"} 4`+"\n") {
		t.Errorf("/metrics does not count 4 origin refusals")
	}
}

func TestAnyOriginWhenAllowedOriginsIsStar(t *testing.T) {
	fake := newFakeCloudinary(t)
	srv := startServer(t, baseEnv(t, fake))
	ct, body := multipartBody(t, nil, "a.png", testPNG(t, 2, 2))
	req, err := http.NewRequest(http.MethodPost, srv.url+"/upload", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Origin", "https://anyone.example")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := newClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	decodeOK(t, resp, "cross-site upload with ALLOWED_ORIGINS=*")
}

func TestCloudinaryURLUploadTimeoutIs504(t *testing.T) {
	fake := newFakeCloudinary(t)
	fake.SetBehaviour(fakeBehaviour{Hang: true})
	env := baseEnv(t, fake)
	env["CLOUDINARY_URL"] = fake.CloudinaryURL() + "&upload_timeout=1" // seconds, as the SDK reads it
	srv := startServer(t, env)
	status, _, msg := smallUpload(t, newClient(t), srv.url)
	if status != http.StatusGatewayTimeout || msg != errUpstreamTimeout.message {
		t.Fatalf("upload_timeout fired: %d %q, want 504 %q", status, msg, errUpstreamTimeout.message)
	}
}

// waitForCount returns once n log lines contain s (bounded as waitFor is).
func (b *logBuffer) waitForCount(t *testing.T, s string, n int) {
	t.Helper()
	giveUp := time.After(30 * time.Second)
	for {
		b.mu.Lock()
		if b.wake == nil {
			b.wake = make(chan struct{})
		}
		wake := b.wake
		b.mu.Unlock()
		if b.count(s) >= n {
			return
		}
		select {
		case <-wake:
		case <-giveUp:
			t.Fatalf("fewer than %d log lines with %q:\n%s", n, s, b)
		}
	}
}

// The attack of issue 18, scaled down: two addresses open chunked uploads (of unknown length)
// that send a little and then trickle. Each holds only its buffers and the chunk's first block,
// not a whole chunk, and each address at most its share of the memory: a third address still
// uploads, in chunks too.
func TestTwoAddressesCannotSpendTheBudget(t *testing.T) {
	fake := newFakeCloudinary(t)
	env := chunkEnv(t, fake)
	env["UPLOAD_MEMORY"] = "40MiB" // 4 chunked uploads' worth when each reserved a whole chunk at once
	env["RATE_LIMIT"] = "off"
	env["MIN_UPLOAD_RATE"] = "off" // the attackers trickle; here they simply hold
	srv := startServer(t, env)
	type attacker struct {
		w      *io.PipeWriter
		answer chan int
		done   chan struct{}
	}
	var attackers []attacker
	for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		c := clientFrom(t, ip)
		for range 3 {
			r, w := io.Pipe()
			a := attacker{w: w, answer: make(chan int, 1), done: make(chan struct{})}
			attackers = append(attackers, a)
			t.Cleanup(func() { // the attacker leaves
				w.CloseWithError(errors.New("attacker leaves"))
				<-a.done
			})
			go func() {
				defer close(a.done)
				resp, err := streamForm(context.Background(), t, c, srv.url, r, -1)
				if err != nil {
					a.answer <- 0
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				a.answer <- resp.StatusCode
			}()
			decided := srv.logs.count(`admitted"`)
			// The first bytes, then nothing more: the upload holds what it holds.
			go func() { _, _ = w.Write(paddedPNG(t, 64<<10)) }()
			srv.logs.waitForCount(t, `admitted"`, decided+1)
		}
	}
	// A third address uploads, streamed and in chunks.
	c := clientFrom(t, "127.0.0.4")
	if status, _, msg := smallUpload(t, c, srv.url); status != http.StatusOK {
		t.Errorf("third address, small upload: %d %q", status, msg)
	}
	resp, err := streamForm(context.Background(), t, c, srv.url, streamedPNG(t, 6<<20), -1)
	if err != nil {
		t.Fatal(err)
	}
	decodeOK(t, resp, "third address, chunked upload")
	// Each address's third upload is past its share, and refused at once.
	for i, a := range attackers {
		if i%3 != 2 {
			continue
		}
		if s := <-a.answer; s != http.StatusTooManyRequests {
			t.Errorf("attacker's third upload: %d, want 429", s)
		}
	}
}
