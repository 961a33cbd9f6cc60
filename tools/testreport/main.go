// Command testreport reads `go test -json` and prints what a person needs from it: one line per
// package, the whole output of every failing test, and one line per skipped test with its reason,
// so that a test skipped for want of a tool (Chromium, redis-server, exiftool) is seen without -v.
// `go test ./...` alone prints only "ok" for a package whose tests passed or skipped.
//
//	go test -race -count=1 -json ./... | go run ./tools/testreport
//
// It exits 1 when a test or a package failed, a package did not build, or the input has no
// test events at all (go test could not start), so the pipe's status is the tests'.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	failed, err := report(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(1)
	}
	if failed {
		os.Exit(1)
	}
}

// event is one line of `go test -json` (cmd/test2json's TestEvent), the fields used here.
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output and build-fail
	Test       string
	Elapsed    float64
	Output     string
}

// report copies the summary of the events on in to out; failed says whether anything failed.
func report(in io.Reader, out io.Writer) (failed bool, err error) {
	outputs := map[string][]string{} // by package and test: the lines of a test still running
	skips, passes, fails := 0, 0, 0  // tests and subtests
	events := 0
	var werr error
	printf := func(format string, a ...any) {
		if _, err := fmt.Fprintf(out, format, a...); err != nil && werr == nil {
			werr = err
		}
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			printf("%s\n", line) // not an event: go test's own words (a build error before -json takes over)
			continue
		}
		events++
		key := e.Package + " " + e.Test
		switch e.Action {
		case "output":
			if e.Test != "" {
				outputs[key] = append(outputs[key], e.Output)
			} else if !strings.HasPrefix(e.Output, "ok  ") && !strings.HasPrefix(e.Output, "PASS") &&
				!strings.HasPrefix(e.Output, "FAIL") && !strings.HasPrefix(e.Output, "?   ") {
				outputs[key] = append(outputs[key], e.Output) // the package's own (TestMain, a panic)
			}
		case "build-output":
			printf("%s", e.Output)
		case "build-fail":
			failed = true
		case "skip":
			if e.Test == "" {
				break // a package without tests
			}
			skips++
			printf("SKIP %s %s: %s\n", e.Package, e.Test, skipReason(outputs[key]))
			delete(outputs, key)
		case "fail":
			failed = true
			if e.Test != "" {
				fails++
			}
			for _, l := range outputs[key] {
				printf("%s", l)
			}
			delete(outputs, key)
			if e.Test == "" {
				// Tests still running when their package failed (a timeout's panic, a crash) never
				// get an event of their own: their output, the goroutine dump included, goes here.
				for k, lines := range outputs {
					if strings.HasPrefix(k, e.Package+" ") {
						for _, l := range lines {
							printf("%s", l)
						}
						delete(outputs, k)
					}
				}
				printf("FAIL %s %.1fs\n", e.Package, e.Elapsed)
			}
		case "pass":
			if e.Test != "" {
				passes++
			}
			delete(outputs, key)
			if e.Test == "" {
				printf("ok   %s %.1fs\n", e.Package, e.Elapsed)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return true, err
	}
	if events == 0 {
		return true, errors.New("no test events on the input: run go test -json ./... | go run ./tools/testreport")
	}
	switch {
	case skips == 1:
		printf("1 test skipped (see above); under CI=true a missing tool fails it instead\n")
	case skips > 1:
		printf("%d tests skipped (see above); under CI=true a missing tool fails them instead\n", skips)
	}
	printf("tests: %d passed, %d failed, %d skipped\n", passes, fails, skips)
	return failed, werr
}

// skipReason is what t.Skip said: the test's own lines ("    file_test.go:37: why"), on one line.
func skipReason(lines []string) string {
	var why []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- ") {
			continue
		}
		why = append(why, t)
	}
	if len(why) == 0 {
		return "(no reason given)"
	}
	return strings.Join(why, " ")
}
