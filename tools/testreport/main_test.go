package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// goTestJSON runs `go test -json` on a package of its own made of the test file src, and
// returns its output (go test's exit status is not the point: testreport's is).
func goTestJSON(t *testing.T, src string, args ...string) []byte {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{"go.mod": "module fixture\n\ngo 1.26\n", "x_test.go": src} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append([]string{"test", "-count=1", "-json"}, append(args, ".")...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	out, _ := cmd.Output() // a failing test exits 1: its JSON is what is wanted
	if len(out) == 0 {
		t.Fatal("go test -json printed nothing")
	}
	return out
}

func TestReportNamesSkipsAndShowsFailures(t *testing.T) {
	t.Parallel()
	out := goTestJSON(t, `package fixture

import "testing"

func TestPasses(t *testing.T) { t.Log("quiet when it passes") }

func TestNeedsATool(t *testing.T) { t.Skip("no chromium found (install Debian's chromium)") }

func TestBreaks(t *testing.T) {
	t.Run("sub", func(t *testing.T) { t.Error("boom: want 1, got 2") })
}
`)
	var got bytes.Buffer
	failed, err := report(bytes.NewReader(out), &got)
	if err != nil {
		t.Fatal(err)
	}
	if !failed {
		t.Error("a failing test: report says nothing failed")
	}
	text := got.String()
	for _, want := range []string{
		"SKIP fixture TestNeedsATool: x_test.go:7: no chromium found (install Debian's chromium)\n",
		"boom: want 1, got 2",
		"FAIL fixture ",
		"1 test skipped",
		"\ntests: 1 passed, 2 failed, 1 skipped\n", // TestBreaks and its subtest; the plain closing line CI reads
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the report lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "quiet when it passes") {
		t.Errorf("the report shows a passing test's log:\n%s", text)
	}
}

func TestReportPassesWithSkips(t *testing.T) {
	t.Parallel()
	out := goTestJSON(t, `package fixture

import "testing"

func TestPasses(t *testing.T) {}

func TestNeedsATool(t *testing.T) { t.Skip("exiftool not installed") }
`)
	var got bytes.Buffer
	failed, err := report(bytes.NewReader(out), &got)
	if err != nil || failed {
		t.Fatalf("failed %v, err %v:\n%s", failed, err, got.String())
	}
	if want := "SKIP fixture TestNeedsATool: x_test.go:7: exiftool not installed\nok   fixture "; !strings.Contains(got.String(), want) {
		t.Errorf("report:\n%s\nwant it to contain %q", got.String(), want)
	}
}

func TestReportWithoutEventsFails(t *testing.T) {
	t.Parallel()
	failed, err := report(strings.NewReader(""), &bytes.Buffer{})
	if err == nil || !failed {
		t.Errorf("empty input: failed %v, err %v; want a failure", failed, err)
	}
}

// A test that hangs until go test's -timeout gets no event of its own: its goroutine dump must
// still be shown, or a hang in CI is a bare FAIL.
func TestReportShowsATimedOutTest(t *testing.T) {
	t.Parallel()
	out := goTestJSON(t, `package fixture

import "testing"

func TestHangs(t *testing.T) { select {} }
`, "-timeout", "2s")
	var got bytes.Buffer
	failed, err := report(bytes.NewReader(out), &got)
	if err != nil || !failed {
		t.Fatalf("failed %v, err %v", failed, err)
	}
	for _, want := range []string{"panic: test timed out", "TestHangs", "FAIL fixture "} {
		if !strings.Contains(got.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, got.String())
		}
	}
}
