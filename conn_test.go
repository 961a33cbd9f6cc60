package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"
)

// Past MAX_CONNECTIONS a connection waits, unanswered, and is served once another closes.
func TestConnectionsPastTheLimitWait(t *testing.T) {
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	env["MAX_CONNECTIONS"] = "2"
	srv := startServer(t, env)
	ask := func(ip string) (net.Conn, *bufio.Reader) {
		conn := dialFrom(t, srv.url, ip)
		if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		return conn, bufio.NewReader(conn)
	}
	// Two connections, each answered and kept open.
	var open []net.Conn
	for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		conn, br := ask(ip)
		if resp, body := readAnswer(t, conn, br); resp.StatusCode != http.StatusOK {
			t.Fatalf("healthz: %d %s", resp.StatusCode, body)
		}
		open = append(open, conn)
	}
	// The third is queued, not refused: its request waits. (The short deadline can only make
	// this check pass wrongly on a very slow machine, never fail a correct server.)
	third, br := ask("127.0.0.4")
	if err := third.SetReadDeadline(time.Now().Add(300 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if b, err := br.Peek(1); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("third connection past MAX_CONNECTIONS=2: %q, %v; want it to wait", b, err)
	}
	open[0].Close()
	if resp, body := readAnswer(t, third, br); resp.StatusCode != http.StatusOK {
		t.Fatalf("third connection once one closed: %d %s", resp.StatusCode, body)
	}
}

func TestConnectionLimitFromTheFileLimit(t *testing.T) {
	if n := connectionLimit(7); n != 7 {
		t.Errorf("MAX_CONNECTIONS=7: %d", n)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	// Go's runtime raised the soft limit to the hard one at start-up.
	if lim.Cur != lim.Max && lim.Max != ^uint64(0) {
		t.Errorf("soft file limit %d, hard %d: not raised", lim.Cur, lim.Max)
	}
	n := connectionLimit(0)
	if n <= 0 || uint64(n) > lim.Cur-min(max(lim.Cur/4, 256), lim.Cur/2) {
		t.Errorf("auto: %d connections for a file limit of %d, want a quarter (at least 256) left", n, lim.Cur)
	}
}
