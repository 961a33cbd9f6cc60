package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(checkSpecAfter{m}) // openapi_test.go: every answer the tests saw is in openapi.yaml
}

// testServer is a real server started by run, as main starts it.
type testServer struct {
	url    string
	logs   *logBuffer
	cancel context.CancelFunc
	done   chan error
}

// logBuffer collects the server's log lines for assertions.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
	wake  chan struct{} // closed on the next line, for waitFor
}

func (b *logBuffer) add(line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, line)
	if b.wake != nil {
		close(b.wake)
		b.wake = nil
	}
}

// count is the number of lines that contain s.
func (b *logBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, l := range b.lines {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

// waitFor returns once a line containing s has been logged. The 30 s bound only keeps a broken
// test from hanging until go test's own timeout; nothing is asserted about how long it took.
func (b *logBuffer) waitFor(t *testing.T, s string) {
	t.Helper()
	giveUp := time.After(30 * time.Second)
	for b.count(s) == 0 {
		b.mu.Lock()
		if b.wake == nil {
			b.wake = make(chan struct{})
		}
		wake := b.wake
		b.mu.Unlock()
		if b.count(s) > 0 {
			return
		}
		select {
		case <-wake:
		case <-giveUp:
			t.Fatalf("no log line with %q:\n%s", s, b)
		}
	}
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

// entries decodes every JSON log line.
func (b *logBuffer) entries(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range b.lines {
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		out = append(out, e)
	}
	return out
}

// baseEnv is the environment every test server starts from: no .env, a real fake upstream.
func baseEnv(t *testing.T, fake *fakeCloudinary) map[string]string {
	return map[string]string{
		"PORT":           "0",
		"ENV_FILE":       filepath.Join(t.TempDir(), "absent.env"),
		"CLOUDINARY_URL": fake.CloudinaryURL(),
		"LOG_LEVEL":      "debug",
	}
}

func mapGetenv(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

// startServer runs the server in-process and waits for its "listening" line.
// Tests that call it do not run in parallel: the SDK's config parser has package-level state.
// The server sees no container memory limit (an empty cgroup root), whatever machine the tests
// run on, unless opts give it one.
func startServer(t *testing.T, env map[string]string, opts ...runOption) *testServer {
	t.Helper()
	opts = append([]runOption{withCgroupRoot(t.TempDir())}, opts...)
	ctx, cancel := context.WithCancel(context.Background())
	logR, logW := io.Pipe()
	s := &testServer{logs: &logBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() {
		err := run(ctx, []string{"cloudinary-upload-api"}, mapGetenv(env), logW, io.Discard, opts...)
		logW.Close() // an early failure gives the reader EOF instead of a hang
		s.done <- err
	}()
	addr := make(chan string, 1)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		sc := bufio.NewScanner(logR)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.logs.add(line)
			observed.addLogLine(line)
			var e struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &e) == nil && e.Msg == "listening" {
				addr <- e.Addr
			}
		}
		close(addr)
	}()
	t.Cleanup(func() {
		s.stop(t)
		<-readerDone
	})
	a := within(t, addr, "the server's listening line") // "" when run ended without one
	if a == "" {
		t.Fatalf("server did not start: %v\nlogs:\n%s", within(t, s.done, "run to return"), s.logs)
	}
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		t.Fatalf("listening addr %q: %v", a, err)
	}
	s.url = "http://127.0.0.1:" + port
	return s
}

// stop cancels run and checks it returned cleanly; safe to call twice.
func (s *testServer) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	timer := time.NewTimer(testWait)
	defer timer.Stop()
	select {
	case err, ok := <-s.done:
		if ok {
			close(s.done)
			if err != nil {
				t.Errorf("run: %v", err)
			}
		}
	case <-timer.C:
		t.Fatalf("run did not return within %v of its context's end", testWait)
	}
}

// newClient is an HTTP client whose idle connections are closed at cleanup, for goleak.
func newClient(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// apiErrorBody is Cloudinary's error shape, which we answer in too.
type apiErrorBody struct {
	Error struct {
		Message string `json:"message"`
	} `json:"error"`
}

// decodeBody reads a JSON answer into v, failing the test on anything else.
func decodeBody(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type = %q, want JSON; body %q", ct, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("body is not JSON: %v: %q", err, b)
	}
}

// discardLogger drops every line, but notes each request line's answer for the spec check (openapi_test.go).
func discardLogger() *slog.Logger { return slog.New(observingHandler{}) }

// testConfig is the default configuration, as loadConfig gives it with credentials set,
// except for the rate limit: fuzzing and table tests send many requests from one address.
func testConfig() config {
	cfg, err := loadConfig(mapGetenv(map[string]string{"CLOUD_NAME": "c", "API_KEY": "k", "API_SECRET": "s", "RATE_LIMIT": "off"}))
	if err != nil {
		panic(err)
	}
	return cfg
}

// doJSON sends a body-less request and decodes the JSON answer into v.
func doJSON(t *testing.T, c *http.Client, method, url string, v any) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	decodeBody(t, resp, v)
	return resp
}

// decodeOK decodes a JSON answer that must be a 200; what names the request in the failure.
func decodeOK(t *testing.T, resp *http.Response, what string) map[string]any {
	t.Helper()
	var got map[string]any
	decodeBody(t, resp, &got)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: status %d: %v", what, resp.StatusCode, got)
	}
	return got
}

// testWait bounds every wait of a test on something the server or a client goroutine does: past
// it the test fails with what it was waiting for, instead of hanging until go test's own timeout.
const testWait = 60 * time.Second

// within returns the next value from ch, or fails the test if none comes within testWait.
func within[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	timer := time.NewTimer(testWait)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("waited %v for %s", testWait, what)
		panic("unreachable")
	}
}

// writeWithin writes b into a request body's pipe. Nobody may read it (the server answered and
// the client stopped sending): then, after testWait, the pipe is closed so that the write returns,
// and the test fails. It returns the write's error.
func writeWithin(t testing.TB, w *io.PipeWriter, b []byte) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := w.Write(b)
		done <- err
	}()
	timer := time.NewTimer(testWait)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		w.CloseWithError(errors.New("test: nobody read the request body"))
		<-done // returns at once now that the pipe is closed
		t.Fatalf("waited %v for the request body to be read", testWait)
		panic("unreachable")
	}
}
