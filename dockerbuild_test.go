package main

import (
	"bufio"
	"context"
	"debug/elf"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dockerBuild is the build stage of the Dockerfile: the Go image's version and the go build
// line's environment and arguments, as the file says them (the one place they are written).
type dockerBuild struct {
	goVersion string   // golang:<this>
	env       []string // KEY=value before go
	args      []string // after go, -o's value included
}

// readDockerBuild parses the Dockerfile's build stage. Its go build line is kept to plain
// words (no quotes, no line continuations), so that this reads it exactly.
func readDockerBuild(t *testing.T) dockerBuild {
	t.Helper()
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var d dockerBuild
	from := regexp.MustCompile(`(?m)^FROM golang:(\S+) AS build$`).FindSubmatch(b)
	if from == nil {
		t.Fatal("Dockerfile: no build stage FROM golang:<version> AS build")
	}
	d.goVersion = string(from[1])
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "RUN ") && strings.Contains(l, " go build ") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || strings.ContainsAny(lines[0], `"'\$`) {
		t.Fatalf("Dockerfile: want one RUN … go build … line of plain words, got %q", lines)
	}
	words := strings.Fields(strings.TrimPrefix(lines[0], "RUN "))
	for len(words) > 0 && strings.Contains(words[0], "=") {
		d.env, words = append(d.env, words[0]), words[1:]
	}
	if len(words) < 2 || words[0] != "go" || words[1] != "build" {
		t.Fatalf("Dockerfile: the RUN line does not run go build: %q", lines[0])
	}
	d.args = words[1:]
	return d
}

// TestDockerfileBuildStage: the build stage is the one this test builds with: a static binary
// (CGO_ENABLED=0) without local paths (-trimpath), from the Go release go.mod names.
func TestDockerfileBuildStage(t *testing.T) {
	t.Parallel()
	d := readDockerBuild(t)
	mod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod)
	if goLine == nil || d.goVersion != string(goLine[1]) {
		t.Errorf("Dockerfile builds with golang:%s, go.mod says go %s", d.goVersion, goLine[1])
	}
	if !strings.Contains(strings.Join(d.env, " "), "CGO_ENABLED=0") || !strings.Contains(strings.Join(d.args, " "), "-trimpath") {
		t.Errorf("the build stage must build with CGO_ENABLED=0 and -trimpath: %v %v", d.env, d.args)
	}
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"FROM gcr.io/distroless/static-debian12:nonroot", "USER 65532:65532", "EXPOSE 8080"} {
		if !strings.Contains(string(dockerfile), "\n"+want+"\n") {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}

// TestBinaryInEmptyRoot builds the server as the Dockerfile's build stage does and runs it as the
// distroless image would: as uid 65532, in a root directory holding nothing but the binary, the CA
// bundle and the user's home (no libc, no /etc/passwd, no shell). It starts, answers /healthz,
// uploads to the fake Cloudinary over loopback, and lets an upload in flight finish after SIGTERM.
// chroot needs root: skipped otherwise, except under CI=true (CI runs as root).
func TestBinaryInEmptyRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root: this test must run")
		}
		t.Skip("chroot needs root")
	}
	d := readDockerBuild(t)
	root := t.TempDir()
	if err := os.Chmod(root, 0o755); err != nil { // the user must be able to walk its own /
		t.Fatal(err)
	}
	bin := filepath.Join(root, "cloudinary-upload-api")
	args := append([]string(nil), d.args...)
	for i := range args {
		if args[i] == "-o" && i+1 < len(args) {
			args[i+1] = bin
		}
	}
	build := exec.Command("go", args...)
	build.Env = append(os.Environ(), d.env...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	libs, err := f.ImportedLibraries()
	if err != nil || len(libs) != 0 || f.Section(".interp") != nil {
		t.Errorf("the binary is not static: libraries %v (%v), interpreter %v", libs, err, f.Section(".interp") != nil)
	}
	f.Close()
	// Only what the image has: the CA bundle where Go looks first, a /tmp, the user's home.
	bundle, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		t.Skipf("no CA bundle on this machine to copy in: %v", err)
	}
	for _, dir := range []string{"etc/ssl/certs", "tmp", "home/nonroot"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/ssl/certs/ca-certificates.crt"), bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(root, "home/nonroot"), 65532, 65532); err != nil {
		t.Fatal(err)
	}

	fake := newFakeCloudinary(t)
	cmd := exec.Command("/cloudinary-upload-api")
	cmd.Dir = "/home/nonroot"
	cmd.Env = []string{"PORT=0", "LOG_FORMAT=json", "STORAGE=cloudinary", "CLOUDINARY_URL=" + fake.CloudinaryURL(), "SHUTDOWN_TIMEOUT=20s"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Credential: &syscall.Credential{Uid: 65532, Gid: 65532}}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	logs := &logBuffer{}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			logs.add(sc.Text())
			var e struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &e) == nil && e.Msg == "listening" {
				addr <- e.Addr
			}
		}
		close(addr)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // a no-op once it has exited
		<-exited
	})
	a := within(t, addr, "the server's listening line in the empty root") // "" when it exited first
	if a == "" {
		t.Fatalf("the server did not start in the empty root:\n%s", logs)
	}
	url := "http://127.0.0.1:" + a[strings.LastIndexByte(a, ':')+1:]
	client := newClient(t)

	resp, err := client.Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %d", resp.StatusCode)
	}
	if status, _, msg := smallUpload(t, client, url); status != http.StatusOK {
		t.Fatalf("upload: %d %q\n%s", status, msg, logs)
	}

	// An upload in flight at SIGTERM finishes; then the process exits 0.
	img := paddedPNG(t, 1<<20)
	file, fileW := io.Pipe()
	result := goStreamForm(context.Background(), t, client, url, file, int64(len(img)))
	if _, err := fileW.Write(img[:len(img)/2]); err != nil {
		t.Fatal(err)
	}
	<-fake.FirstBytes // the first upload's signal was taken by nobody: the channel's sends do not block
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	logs.waitFor(t, `"msg":"shutting down"`)
	if _, err := fileW.Write(img[len(img)/2:]); err != nil {
		t.Fatal(err)
	}
	fileW.Close()
	if status := (<-result).status; status != http.StatusOK {
		t.Fatalf("upload in flight at SIGTERM: %d\n%s", status, logs)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("the server exited with %v:\n%s", err, logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the server did not exit after SIGTERM:\n%s", logs)
	}
	exited <- nil // for the cleanup
	if ups := fake.Uploads(); len(ups) != 2 || ups[1].SHA256 != sha256Hex(img) {
		t.Errorf("the fake did not get both uploads whole: %+v", ups)
	}
}
