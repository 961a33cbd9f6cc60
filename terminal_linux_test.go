package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// On a terminal, the logs are text and the first line says where to open the page. The server's
// stdout is a real pseudo-terminal here, so term.IsTerminal is asked what a developer's shell gives.
func TestTerminalLogsSayWhereToOpenThePage(t *testing.T) {
	master, slave := openPTY(t)
	env := localEnv(t)
	env["PORT"] = "0"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"cloudinary-upload-api"}, mapGetenv(env), slave, io.Discard)
	}()
	sc := bufio.NewScanner(master)
	var lines []string
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		lines = append(lines, line)
		if strings.Contains(line, "msg=listening") || strings.HasPrefix(line, "{") || len(lines) > 20 {
			break
		}
	}
	cancel()
	if err := within(t, done, "run to return"); err != nil {
		t.Errorf("run: %v", err)
	}
	if len(lines) == 0 {
		t.Fatalf("nothing logged: %v", sc.Err())
	}
	first := lines[0]
	if strings.HasPrefix(first, "{") || !strings.Contains(first, "level=INFO") {
		t.Errorf("first line %q is not slog's text format", first)
	}
	if !strings.Contains(first, `"open http://localhost:`) || !strings.Contains(first, `/ in a browser"`) {
		t.Errorf("first line %q does not say where to open the page", first)
	}
	if last := lines[len(lines)-1]; !strings.Contains(last, "msg=listening") {
		t.Errorf("lines %q: want text lines up to listening", lines)
	}
}

// openPTY opens a pseudo-terminal pair, both closed when the test ends.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { _ = master.Close() })
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil { // unlockpt
		t.Fatal(err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN) // ptsname
	if err != nil {
		t.Fatal(err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = slave.Close() })
	return master, slave
}
