package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloudinary-upload-api/internal/admission"
	"cloudinary-upload-api/internal/auth"
	"cloudinary-upload-api/internal/auth/authtest"
	"cloudinary-upload-api/internal/ratelimit"
	"cloudinary-upload-api/internal/ratelimit/redistest"
)

// quotaField is the quota's member of an answer's RateLimit field: bytes left, seconds to reset.
func quotaField(t *testing.T, resp *http.Response) (left, reset int64) {
	t.Helper()
	m := regexp.MustCompile(`(?:^|, )"quota";r=(\d+);t=(\d+)(?:,|$)`).FindStringSubmatch(resp.Header.Get("RateLimit"))
	if m == nil {
		t.Fatalf("RateLimit %q has no quota member", resp.Header.Get("RateLimit"))
	}
	left, _ = strconv.ParseInt(m[1], 10, 64)
	reset, _ = strconv.ParseInt(m[2], 10, 64)
	return left, reset
}

// uploadStreamed sends a PNG of size bytes from c: with its Content-Length when known, else
// chunked (no length). It returns the answer, its body read.
func uploadStreamed(t *testing.T, c *http.Client, baseURL string, size int64, known bool) (*http.Response, apiErrorBody) {
	t.Helper()
	length := size
	if !known {
		length = -1
	}
	resp, err := streamForm(context.Background(), t, c, baseURL, streamedPNG(t, size), length)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	var got apiErrorBody
	decodeBody(t, resp, &got)
	return resp, got
}

// wantQuotaRefusal checks a 429 of USER_QUOTA: its message, Retry-After within the window, and
// the bytes the RateLimit field says are left.
func wantQuotaRefusal(t *testing.T, what string, resp *http.Response, got apiErrorBody, left int64) {
	t.Helper()
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(got.Error.Message, "upload quota") {
		t.Fatalf("%s: %d %q, want 429 for the quota", what, resp.StatusCode, got.Error.Message)
	}
	retry, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || retry < 1 || retry > 86400 {
		t.Errorf("%s: Retry-After %q, want seconds within the day's window", what, resp.Header.Get("Retry-After"))
	}
	if l, reset := quotaField(t, resp); l != left || reset != int64(retry) {
		t.Errorf("%s: RateLimit says %d bytes left, reset in %d s; want %d left, reset at Retry-After (%d)", what, l, reset, left, retry)
	}
}

// TestQuotaRefusesByContentLength: an upload whose Content-Length would pass the quota gets 429
// before a byte of its body is sent, and nothing reaches Cloudinary.
func TestQuotaRefusesByContentLength(t *testing.T) {
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	env["USER_QUOTA"] = "40MB/day"
	srv := startServer(t, env)
	c := newClient(t)

	resp, got := uploadStreamed(t, c, srv.url, 8_000_000, true)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("first upload: %d %q", resp.StatusCode, got.Error.Message)
	}
	stored := fake.Uploads()[0].Bytes
	if left, reset := quotaField(t, resp); left != 40_000_000-stored || reset < 86399 || reset > 86400 {
		t.Errorf("after %d bytes stored: %d left, reset in %d s; want %d left, a day", stored, left, reset, 40_000_000-stored)
	}
	if p := resp.Header.Get("RateLimit-Policy"); p != `"default";q=20;w=20, "quota";q=40000000;qu="content-bytes";w=86400` {
		t.Errorf("RateLimit-Policy %q", p)
	}

	// 34 MB are more than the 32 left, and more than the server reads to drain a refused body:
	// the answer can only come before the body, which is never sent.
	requests := fake.RequestCount()
	resp, body, err := rawExchange(t, srv.url, func(conn net.Conn) error {
		_, err := io.WriteString(conn, "POST /upload HTTP/1.1\r\nHost: uploads.test\r\n"+
			"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 34000000\r\n\r\n")
		return err
	})
	if err != nil {
		t.Fatalf("no answer before the body: %v", err)
	}
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), "upload quota") {
		t.Fatalf("34 MB with 32 left: %d %s, want 429", resp.StatusCode, body)
	}
	if retry, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || retry < 86399 || retry > 86400 {
		t.Errorf("Retry-After %q, want the window's end", resp.Header.Get("Retry-After"))
	}
	if n := fake.RequestCount(); n != requests {
		t.Errorf("the refused upload reached Cloudinary (%d requests, was %d)", n, requests)
	}
	// The refusal reserved nothing: the 32 MB left can still be used.
	resp, got = uploadStreamed(t, c, srv.url, 31_000_000, true)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("31 MB with 32 left: %d %q", resp.StatusCode, got.Error.Message)
	}
}

// TestQuotaStopsAStreamedUpload: an upload of unknown length is counted as it streams and stopped
// with 429 when it passes the quota; nothing is stored (at Cloudinary, where a first chunk was
// already sent, or in the local store), and the failure spends none of the quota.
func TestQuotaStopsAStreamedUpload(t *testing.T) {
	for _, storage := range []string{"cloudinary", "local"} {
		t.Run(storage, func(t *testing.T) {
			fake := newFakeCloudinary(t)
			env := baseEnv(t, fake)
			dir := t.TempDir()
			env["USER_QUOTA"] = "10MB/day"
			env["CHUNK_SIZE"] = "5242880"
			env["STORAGE"] = storage
			env["UPLOAD_DIR"] = dir
			srv := startServer(t, env)
			c := newClient(t)
			stored := func() int {
				if storage == "local" {
					entries, err := os.ReadDir(dir)
					if err != nil {
						t.Fatal(err)
					}
					return len(entries)
				}
				return len(fake.Uploads())
			}

			resp, got := uploadStreamed(t, c, srv.url, 2_000_000, true)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("first upload: %d %q", resp.StatusCode, got.Error.Message)
			}
			left, _ := quotaField(t, resp)
			if left < 7_990_000 || left > 8_000_000 {
				t.Fatalf("%d bytes left after 2 MB, want 8 MB less what the guard may have removed", left)
			}
			before := stored()

			// 9 MB without a length: a first chunk of 5 MiB goes to Cloudinary, then the quota is
			// passed while the second is read.
			resp, got = uploadStreamed(t, c, srv.url, 9_000_000, false)
			wantQuotaRefusal(t, "9 MB streamed with 8 left", resp, got, left)
			if n := stored(); n != before {
				t.Errorf("the stopped upload was stored: %d files, was %d", n, before)
			}
			if storage == "cloudinary" && fake.MaxFileBytesSeen() > left {
				t.Errorf("Cloudinary received %d bytes of the file, more than the %d left", fake.MaxFileBytesSeen(), left)
			}

			// Nothing of the stopped upload was spent: what was left still fits.
			resp, got = uploadStreamed(t, c, srv.url, left-1000, false)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("an upload of what was left after the failure: %d %q", resp.StatusCode, got.Error.Message)
			}
			if l, _ := quotaField(t, resp); l > 1000 {
				t.Errorf("%d bytes left, want at most 1000", l)
			}
		})
	}
}

// TestQuotaIsPerClient: each client has its own quota; one upload larger than the whole quota is
// 413, without Retry-After, since no wait helps; refusals are counted.
func TestQuotaIsPerClient(t *testing.T) {
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	env["USER_QUOTA"] = "1MB/hour"
	env["METRICS"] = "true"
	srv := startServer(t, env)
	one, other := clientFrom(t, "127.0.0.2"), clientFrom(t, "127.0.0.3")

	for i, want := range []int{http.StatusOK, http.StatusTooManyRequests} {
		resp, got := uploadStreamed(t, one, srv.url, 600_000, true)
		if resp.StatusCode != want {
			t.Fatalf("upload %d of 600 kB from one client: %d %q, want %d", i+1, resp.StatusCode, got.Error.Message, want)
		}
	}
	if resp, got := uploadStreamed(t, other, srv.url, 600_000, true); resp.StatusCode != http.StatusOK {
		t.Fatalf("another client's first upload: %d %q", resp.StatusCode, got.Error.Message)
	}
	// A fresh client: with some of its quota spent, passing what is left would be a 429 first.
	resp, got := uploadStreamed(t, clientFrom(t, "127.0.0.4"), srv.url, 1_100_000, false)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("Retry-After") != "" ||
		got.Error.Message != "not stored: this upload is larger than the whole upload quota of 1MB/hour" {
		t.Errorf("1.1 MB against a quota of 1 MB: %d Retry-After %q %q, want 413 without", resp.StatusCode, resp.Header.Get("Retry-After"), got.Error.Message)
	}
	if n := len(fake.Uploads()); n != 2 {
		t.Errorf("%d uploads stored, want 2", n)
	}
	metrics := metricsText(t, one, srv.url)
	if want := fmt.Sprintf("upload_refusals_total{reason=%q} 2\n", "quota"); !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %q", want)
	}
}

// TestQuotaCountsEachFileOfAStreamedForm: in a form of several files sent without a length, the
// files stored stay spent, the one that passes the quota is refused and given back; an upload
// that fails upstream spends nothing either.
func TestQuotaCountsEachFileOfAStreamedForm(t *testing.T) {
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	env["USER_QUOTA"] = "1MB/hour"
	srv := startServer(t, env)
	c := newClient(t)
	var parts []formPart
	for i := range 3 {
		file, err := io.ReadAll(streamedPNG(t, int64(400_000+i)))
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, filePartOf("file", fmt.Sprintf("%d.png", i), file))
	}
	ct, body := buildForm(t, parts...)
	// A reader that is not a *bytes.Reader: the request has no Content-Length, and is chunked.
	resp := postForm(t, c, srv.url, ct, io.MultiReader(bytes.NewReader(body)))
	var got filesAnswerBody
	decodeBody(t, resp, &got)
	if resp.StatusCode != http.StatusTooManyRequests || len(got.Files) != 3 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("three files of 400 kB against 1 MB: %d Retry-After %q %+v, want 429 with three entries", resp.StatusCode, resp.Header.Get("Retry-After"), got)
	}
	if entryError(got.Files[0]) != "" || entryError(got.Files[1]) != "" || !strings.Contains(entryError(got.Files[2]), "upload quota") {
		t.Errorf("entries %+v: want the first two stored, the third refused for the quota", got.Files)
	}
	ups := fake.Uploads()
	if len(ups) != 2 {
		t.Fatalf("%d files stored, want 2", len(ups))
	}
	spent := ups[0].Bytes + ups[1].Bytes
	if left, _ := quotaField(t, resp); left != 1_000_000-spent {
		t.Errorf("%d bytes left, want %d: the stored files spent, the refused one given back", left, 1_000_000-spent)
	}

	fake.SetBehaviour(fakeBehaviour{Status: http.StatusInternalServerError, Body: `{"error":{"message":"boom"}}`})
	resp, apiErr := uploadStreamed(t, c, srv.url, 100_000, true)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("upload that fails upstream: %d %q, want 502", resp.StatusCode, apiErr.Error.Message)
	}
	if left, _ := quotaField(t, resp); left != 1_000_000-spent {
		t.Errorf("after a failed upload %d bytes left, want %d", left, 1_000_000-spent)
	}
}

// TestRedisSharesTheQuotaAcrossServers: with REDIS_URL, two servers count one quota per client.
func TestRedisSharesTheQuotaAcrossServers(t *testing.T) {
	redis := redistest.Start(t)
	fake := newFakeCloudinary(t)
	env := redisEnv(t, fake, redis.URL())
	env["USER_QUOTA"] = "1MB/hour"
	a, b := startServer(t, env), startServer(t, env)
	one, other := clientFrom(t, "127.0.0.2"), clientFrom(t, "127.0.0.3")

	resp, got := uploadStreamed(t, one, a.url, 600_000, true)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("600 kB to one server: %d %q", resp.StatusCode, got.Error.Message)
	}
	left, _ := quotaField(t, resp)
	resp, got = uploadStreamed(t, one, b.url, 600_000, true)
	wantQuotaRefusal(t, "600 kB more to the other server", resp, got, left)
	if retry, _ := strconv.Atoi(resp.Header.Get("Retry-After")); retry > 3600 {
		t.Errorf("Retry-After %d, beyond the hour's window", retry)
	}
	if resp, got := uploadStreamed(t, other, b.url, 600_000, true); resp.StatusCode != http.StatusOK {
		t.Errorf("another client: %d %q", resp.StatusCode, got.Error.Message)
	}
	if n := len(fake.Uploads()); n != 2 {
		t.Errorf("%d uploads stored, want 2", n)
	}
}

// TestQuotaRefusalsGiveTheReservationBack: an upload refused after its Content-Length was reserved
// (by admission, at MAX_UPLOADS_PER_CLIENT; by the form's rules) spends none of it.
func TestQuotaRefusalsGiveTheReservationBack(t *testing.T) {
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	env["USER_QUOTA"] = "1MB/hour"
	env["MAX_UPLOADS_PER_CLIENT"] = "1"
	srv := startServer(t, env)
	c := newClient(t)

	held := holdUpload(t, c, srv.url, fake)
	resp, got := uploadStreamed(t, c, srv.url, 100_000, true)
	if resp.StatusCode != http.StatusTooManyRequests || strings.Contains(got.Error.Message, "quota") {
		t.Fatalf("a second upload at MAX_UPLOADS_PER_CLIENT=1: %d %q, want 429 for the uploads in flight", resp.StatusCode, got.Error.Message)
	}
	if s := held.finish(t); s != http.StatusOK {
		t.Fatalf("the held upload: %d", s)
	}
	req, err := http.NewRequest(http.MethodPost, srv.url+"/upload", strings.NewReader(strings.Repeat("x", 100_000)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/plain")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	decodeBody(t, resp, &got)
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("text/plain: %d %q, want 415", resp.StatusCode, got.Error.Message)
	}
	resp, got = uploadStreamed(t, c, srv.url, 1000, true)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a last upload: %d %q", resp.StatusCode, got.Error.Message)
	}
	ups := fake.Uploads()
	if len(ups) != 2 {
		t.Fatalf("%d uploads stored, want 2", len(ups))
	}
	if left, _ := quotaField(t, resp); left != 1_000_000-ups[0].Bytes-ups[1].Bytes {
		t.Errorf("%d bytes left, want %d: only the two stored files spent", left, 1_000_000-ups[0].Bytes-ups[1].Bytes)
	}
}

// TestQuotaIsPerSignedInUser: the quota of a request that carries a signed-in user (as the sign-in
// middleware puts it in the context) is the user's: two users from one address each have their
// own, and neither spends the address's.
func TestQuotaIsPerSignedInUser(t *testing.T) {
	cfg := testConfig()
	spec, err := ratelimit.ParseQuota("1MB/hour")
	if err != nil {
		t.Fatal(err)
	}
	m := newMetrics("other")
	adm := newUploadAdmission(cfg, admission.NewMemoryLeases(), m)
	h := handleUpload(acceptAllUploader{}, cfg.uploadLimits(), adm, newUploadQuota(spec, proxyTrust{}, time.Now, nil, m))
	file, err := io.ReadAll(streamedPNG(t, 600_000))
	if err != nil {
		t.Fatal(err)
	}
	upload := func(user string) (int, int64) {
		req := uploadReq(t, nil, "a.png", file)
		req.RemoteAddr = "198.51.100.7:4000" // one address for all
		if user != "" {
			req = req.WithContext(auth.NewContext(req.Context(), auth.User{Subject: user}))
		}
		rec := serve(h, req)
		left, _ := quotaField(t, rec.Result())
		return rec.Code, left
	}
	for _, tc := range []struct {
		user   string
		status int
	}{
		{"auth0|alice", http.StatusOK}, {"auth0|bob", http.StatusOK}, {"", http.StatusOK},
		{"auth0|alice", http.StatusTooManyRequests}, {"auth0|bob", http.StatusTooManyRequests}, {"", http.StatusTooManyRequests},
	} {
		if status, left := upload(tc.user); status != tc.status || left != 400_000 {
			t.Errorf("600 kB from %q: %d with %d bytes left, want %d with 400 kB left", tc.user, status, left, tc.status)
		}
	}
}

// TestQuotaPerSignedInUserThroughRun: with sign-in on, two users behind one address each have
// their own USER_QUOTA, and neither spends the other's.
func TestQuotaPerSignedInUserThroughRun(t *testing.T) {
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	env["AUTH_JWT_SECRET"] = testJWTSecret
	env["USER_QUOTA"] = "1MB/hour"
	srv := startServer(t, env)
	c := clientFrom(t, "127.0.0.2")
	file, err := io.ReadAll(streamedPNG(t, 600_000))
	if err != nil {
		t.Fatal(err)
	}
	ct, body := buildForm(t, filePartOf("file", "a.png", file))
	for _, tc := range []struct {
		sub    string
		status int
	}{{"alice", http.StatusOK}, {"bob", http.StatusOK}, {"alice", http.StatusTooManyRequests}, {"bob", http.StatusTooManyRequests}} {
		req, err := http.NewRequest(http.MethodPost, srv.url+"/upload", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Authorization", "Bearer "+authtest.MintHS256(t, []byte(testJWTSecret), authtest.Claims(tc.sub, "", "", time.Minute)))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got apiErrorBody
		decodeBody(t, resp, &got)
		if resp.StatusCode != tc.status {
			t.Fatalf("600 kB from %s: %d %q, want %d", tc.sub, resp.StatusCode, got.Error.Message, tc.status)
		}
		if left, _ := quotaField(t, resp); left != 1_000_000-fake.Uploads()[0].Bytes {
			t.Errorf("%s: %d bytes left, want what one upload leaves", tc.sub, left)
		}
	}
	if n := len(fake.Uploads()); n != 2 {
		t.Errorf("%d uploads stored, want 2", n)
	}
}
