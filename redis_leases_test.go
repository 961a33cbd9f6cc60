package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"cloudinary-upload-api/internal/ratelimit/redistest"
)

// heldFile is a PNG whose first bytes flow at once and whose rest waits for release: an upload
// in flight for as long as the test wants.
type heldFile struct {
	head    io.Reader
	release chan struct{}
	rest    io.Reader
}

func newHeldFile(t *testing.T, size int64) *heldFile {
	const first = 64 << 10
	return &heldFile{
		head:    io.LimitReader(streamedPNG(t, size), first),
		release: make(chan struct{}),
		rest:    io.LimitReader(zeroReader{}, size-first),
	}
}

func (f *heldFile) Read(p []byte) (int, error) {
	if n, err := f.head.Read(p); n > 0 || err != io.EOF {
		return n, err
	}
	<-f.release
	return f.rest.Read(p)
}

// startHeld starts an upload of a held file and waits until the fake Cloudinary has its first
// bytes, so that it has been admitted. The answer comes on the channel once the file is released.
func startHeld(t *testing.T, fake *fakeCloudinary, c *http.Client, baseURL string) (*heldFile, <-chan streamAnswer) {
	t.Helper()
	const size = 1 << 20
	f := newHeldFile(t, size)
	answer := goStreamForm(context.Background(), t, c, baseURL, f, size)
	select {
	case <-fake.FirstBytes:
	case a := <-answer:
		t.Fatalf("the held upload ended at once: %d %s", a.status, a.message)
	}
	return f, answer
}

// TestRedisSharesUploadsInFlightAcrossServers: MAX_UPLOADS_PER_CLIENT counts a client's uploads
// on every server that shares the Redis.
func TestRedisSharesUploadsInFlightAcrossServers(t *testing.T) {
	redis := redistest.Start(t)
	fake := newFakeCloudinary(t)
	t.Cleanup(fake.Close)
	env := redisEnv(t, fake, redis.URL())
	env["RATE_LIMIT"] = "off"
	env["MAX_UPLOADS_PER_CLIENT"] = "2"
	a, b := startServer(t, env), startServer(t, env)
	one, other := clientFrom(t, "127.0.0.2"), clientFrom(t, "127.0.0.3")

	f1, s1 := startHeld(t, fake, one, a.url)
	f2, s2 := startHeld(t, fake, one, b.url)
	if resp, body := uploadPNG(t, one, a.url); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a third upload in flight, on a: %d %s, want 429 with Retry-After", resp.StatusCode, body)
	}
	if resp, body := uploadPNG(t, one, b.url); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a third upload in flight, on b: %d %s, want 429", resp.StatusCode, body)
	}
	if resp, body := uploadPNG(t, other, a.url); resp.StatusCode != http.StatusOK {
		t.Errorf("another client: %d %s", resp.StatusCode, body)
	}
	close(f1.release)
	if s := within(t, s1, "the first held upload's answer").status; s != http.StatusOK {
		t.Fatalf("the first held upload: %d", s)
	}
	if resp, body := uploadPNG(t, one, b.url); resp.StatusCode != http.StatusOK {
		t.Errorf("after one ended: %d %s, want 200", resp.StatusCode, body)
	}
	close(f2.release)
	if s := within(t, s2, "the second held upload's answer").status; s != http.StatusOK {
		t.Fatalf("the second held upload: %d", s)
	}
	rdb := newRedisClient(t, redis)
	if n, err := rdb.Exists(context.Background(), "upload-api:leases:127.0.0.2").Result(); err != nil || n != 0 {
		t.Errorf("leases left in Redis after every upload ended: %d %v", n, err)
	}
}

func newRedisClient(t *testing.T, s *redistest.Server) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// trickle is an endless file that sends its first 64 KiB at once, then a byte every 100 ms until
// stop is closed: an upload that stays alive under a short BODY_IDLE_TIMEOUT.
type trickle struct {
	head io.Reader
	tick *time.Ticker
	stop chan struct{}
}

func (f *trickle) Read(p []byte) (int, error) {
	if n, err := f.head.Read(p); n > 0 || err != io.EOF {
		return n, err
	}
	select {
	case <-f.stop:
		return 0, io.ErrUnexpectedEOF
	case <-f.tick.C:
		p[0] = 0
		return 1, nil
	}
}

// TestRedisLeasesOfAKilledServerLapse: a server killed (SIGKILL) with an upload in flight stops
// renewing its lease, and the client's place is free again once the lease's expiry has passed.
func TestRedisLeasesOfAKilledServerLapse(t *testing.T) {
	redis := redistest.Start(t)
	fake := newFakeCloudinary(t)
	t.Cleanup(fake.Close)
	env := redisEnv(t, fake, redis.URL())
	env["RATE_LIMIT"] = "off"
	env["MAX_UPLOADS_PER_CLIENT"] = "1"
	env["MIN_UPLOAD_RATE"] = "off"
	// A short expiry for the test: 1.25 times the longest silence, BODY_IDLE_TIMEOUT or UPLOAD_TIMEOUT.
	env["BODY_IDLE_TIMEOUT"], env["UPLOAD_TIMEOUT"] = "2s", "2s"
	const ttl = 2500 * time.Millisecond
	killed := startServerProcess(t, env)
	survivor := startServer(t, env)
	c := clientFrom(t, "127.0.0.2")

	f := &trickle{head: io.LimitReader(streamedPNG(t, 1<<20), 64<<10), tick: time.NewTicker(100 * time.Millisecond), stop: make(chan struct{})}
	defer f.tick.Stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := streamForm(context.Background(), t, c, killed.url, f, 10<<20); err == nil {
			resp.Body.Close()
		}
	}()
	within(t, fake.FirstBytes, "the upload at the fake") // admitted on the server about to be killed
	if resp, body := uploadPNG(t, c, survivor.url); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("the other server let a second upload in: %d %s", resp.StatusCode, body)
	}
	killed.kill(t)
	close(f.stop)
	within(t, done, "the killed server's client to end")

	rdb := newRedisClient(t, redis)
	ctx := context.Background()
	pttl, err := rdb.PTTL(ctx, "upload-api:leases:127.0.0.2").Result()
	if err != nil || pttl <= 0 || pttl > ttl {
		t.Fatalf("the dead server's lease lives %v more (%v), want within its expiry of %v", pttl, err, ttl)
	}
	// What is shown is the expiry itself: wait it out, then the place is free.
	<-time.After(pttl)
	if resp, body := uploadPNG(t, c, survivor.url); resp.StatusCode != http.StatusOK {
		t.Errorf("after the dead server's lease expired: %d %s, want 200", resp.StatusCode, body)
	}
}

// serverProcess is the server in a process of its own (this test binary, re-run), so that a test
// can kill it as a dyno dies, without any cleanup.
type serverProcess struct {
	url string
	cmd *exec.Cmd
	out chan struct{}
}

const helperEnvVar = "UPLOAD_API_TEST_SERVER_ENV"

// TestServerProcess is not a test: startServerProcess runs the binary with only it selected.
func TestServerProcess(t *testing.T) {
	raw := os.Getenv(helperEnvVar)
	if raw == "" {
		t.Skip("the server process of TestRedisLeasesOfAKilledServerLapse")
	}
	var env map[string]string
	if err := json.Unmarshal([]byte(raw), &env); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"cloudinary-upload-api"}, mapGetenv(env), os.Stdout, os.Stderr); err != nil {
		t.Fatal(err)
	}
}

func startServerProcess(t *testing.T, env map[string]string) *serverProcess {
	t.Helper()
	raw, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestServerProcess$")
	cmd.Env = append(os.Environ(), helperEnvVar+"="+string(raw))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serverProcess{cmd: cmd, out: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		defer close(p.out)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &e) == nil && e.Msg == "listening" {
				addr <- e.Addr
			}
		}
		close(addr)
	}()
	t.Cleanup(func() { p.kill(t) })
	a := within(t, addr, "the server process's listening line") // "" when it ended without one
	if a == "" {
		p.kill(t)
		t.Fatalf("the server process did not start:\n%s", stderr.String())
	}
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		t.Fatal(err)
	}
	p.url = "http://127.0.0.1:" + port
	return p
}

// kill ends the process with SIGKILL and waits for it; harmless twice.
func (p *serverProcess) kill(t *testing.T) {
	if p.cmd.ProcessState != nil {
		return
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Errorf("kill: %v", err)
	}
	<-p.out
	_ = p.cmd.Wait() // "signal: killed"
}
