package main

// The README's first commands, run as written on a fresh clone: TestREADMECommandsOnAFreshClone.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	envconfig "cloudinary-upload-api/internal/config"
)

// readmeStartDeadline bounds a `go run` start on a fresh clone: a build, on a busy machine.
const readmeStartDeadline = 5 * time.Minute

// shellCommands are the commands of the ```sh blocks of a README section: comments dropped,
// lines ending in \ joined to the next.
func shellCommands(text string) []string {
	var cmds []string
	in := false
	var cont string
	for line := range strings.SplitSeq(text, "\n") {
		switch {
		case strings.HasPrefix(line, "```sh"):
			in = true
			continue
		case strings.HasPrefix(line, "```"):
			in = false
			continue
		case !in:
			continue
		}
		if i := strings.Index(line, "  #"); i >= 0 { // a comment after the command
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if l, ok := strings.CutSuffix(line, `\`); ok {
			cont += strings.TrimSpace(l) + " "
			continue
		}
		cmds = append(cmds, cont+line)
		cont = ""
	}
	return cmds
}

// inlineCommand finds the code span `command` in a README section's prose, and returns it.
func inlineCommand(t *testing.T, text, command string) string {
	t.Helper()
	if !strings.Contains(text, "`"+command+"`") {
		t.Fatalf("the README no longer says `%s`", command)
	}
	return command
}

// commandStarting is the one command of cmds that starts with prefix.
func commandStarting(t *testing.T, cmds []string, prefix, where string) string {
	t.Helper()
	var found []string
	for _, c := range cmds {
		if strings.HasPrefix(c, prefix) {
			found = append(found, c)
		}
	}
	if len(found) != 1 {
		t.Fatalf("README's %s: %d commands starting with %q (%q), want one", where, len(found), prefix, found)
	}
	return found[0]
}

func TestShellCommands(t *testing.T) {
	t.Parallel()
	got := shellCommands("text\n```sh\ngo run .   # the server\n# a comment\ncurl -H x \\\n     -F a=b http://h\n```\n```js\nnot(this)\n```\n")
	want := []string{"go run .", "curl -H x -F a=b http://h"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("shellCommands = %q, want %q", got, want)
	}
}

// readmeProcess is a command of the README running in the clone, in a process group of its own
// (go run and the program it builds), with its output read line by line.
type readmeProcess struct {
	cmd   *exec.Cmd
	lines chan string // closed at the end of the output
	all   *syncBuffer // everything it printed, for failures
	done  chan struct{}
}

// startREADMECommand runs command with bash in dir, as a reader would type it.
func startREADMECommand(t *testing.T, dir string, env []string, command string) *readmeProcess {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", command)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = w.Close() // the processes hold it; the reader ends when they all have exited
	p := &readmeProcess{cmd: cmd, lines: make(chan string, 1024), all: &syncBuffer{}, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		defer close(p.lines)
		defer r.Close()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			_, _ = p.all.Write([]byte(sc.Text() + "\n"))
			select {
			case p.lines <- sc.Text():
			default: // nobody waits for more: keep it in all only
			}
		}
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// waitFor reads lines until one contains s, and returns it; it fails at the deadline, or if the
// command ends first.
func (p *readmeProcess) waitFor(t *testing.T, s string, deadline time.Duration) string {
	t.Helper()
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("%q ended before printing %q:\n%s", p.cmd.Args[2], s, p.all.String())
			}
			if strings.Contains(line, s) {
				return line
			}
		case <-timer.C:
			t.Fatalf("%q printed no %q within %s:\n%s", p.cmd.Args[2], s, deadline, p.all.String())
		}
	}
}

// stop sends SIGTERM to the process group, as Ctrl-C's neighbour would, and waits for it all.
func (p *readmeProcess) stop(t *testing.T) {
	t.Helper()
	if p.cmd.ProcessState != nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- p.cmd.Wait() }()
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Errorf("%q did not stop within 30 s of SIGTERM:\n%s", p.cmd.Args[2], p.all.String())
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) // whatever of the group is left
	within(t, p.done, "every process of "+p.cmd.Args[2]+" to close its output")
}

// runREADMECurl runs the README's curl against the server at port and decodes its answer.
func runREADMECurl(t *testing.T, dir string, env []string, curl, port string) map[string]any {
	t.Helper()
	cmd, out := readmeCurl(t, dir, env, curl, port)
	var answer map[string]any
	if err := json.Unmarshal(out, &answer); err != nil {
		t.Fatalf("%s: the answer is not JSON: %s", cmd, out)
	}
	if _, failed := answer["error"]; failed {
		t.Fatalf("%s: %s", cmd, out)
	}
	return answer
}

// runREADMECurlFails runs a README curl whose answer is an error, and returns the answer.
func runREADMECurlFails(t *testing.T, dir string, env []string, curl, port string) string {
	t.Helper()
	cmd, out := readmeCurl(t, dir, env, curl, port)
	if !strings.Contains(string(out), `"error"`) {
		t.Errorf("%s: %s, want an error", cmd, out)
	}
	return string(out)
}

// readmeCurl runs a README curl against the server at port, within a minute, and returns the
// command it ran and what it printed.
func readmeCurl(t *testing.T, dir string, env []string, curl, port string) (string, []byte) {
	t.Helper()
	cmd := strings.ReplaceAll(curl, "http://localhost:8080", "http://localhost:"+port)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, "bash", "-c", cmd)
	c.Dir, c.Env = dir, env
	out, err := c.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	return cmd, out
}

// fetch is the body at u, which must answer 200.
func fetch(t *testing.T, u string) []byte {
	t.Helper()
	client := &http.Client{Timeout: time.Minute, Transport: http.DefaultTransport.(*http.Transport).Clone()}
	defer client.CloseIdleConnections()
	resp, err := client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d, %v", u, resp.StatusCode, err)
	}
	return b
}

// copyUncommitted puts the working tree's uncommitted changes to tracked files into the clone,
// so that the test checks the README being edited, not only the last commit (in CI there are none).
func copyUncommitted(t *testing.T, top, clone string) {
	t.Helper()
	cmd := exec.Command("git", "diff", "--name-only", "-z", "HEAD")
	cmd.Dir = top
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git diff: %v", err)
	}
	for name := range strings.SplitSeq(strings.TrimSuffix(string(out), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(top, name))
		switch {
		case os.IsNotExist(err):
			err = os.Remove(filepath.Join(clone, name))
		case err == nil:
			if err = os.MkdirAll(filepath.Dir(filepath.Join(clone, name)), 0o755); err == nil {
				err = os.WriteFile(filepath.Join(clone, name), data, 0o644)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// listeningPort is the port of the server's "listening" log line.
func listeningPort(t *testing.T, line string) string {
	t.Helper()
	var entry struct{ Addr string }
	if err := json.Unmarshal([]byte(line), &entry); err != nil || entry.Addr == "" {
		t.Fatalf("listening line %q: %v", line, err)
	}
	return entry.Addr[strings.LastIndex(entry.Addr, ":")+1:]
}

// TestREADMECommandsOnAFreshClone runs the README's first commands as written, found in its
// code blocks, on a fresh clone of this repository: `go run .` (on a free port: PORT=0 is the
// one thing the environment adds), its curl of testdata/beach.jpg (200 with a secure_url that
// serves the file back, its GPS removed); Using it's server with a token and its curl, twice
// (the second answer 409, the name taken), and the first curl without the token (401); then the fake Cloudinary's command, the server again on the
// .env line it wrote, and the same curl through the Cloudinary client.
func TestREADMECommandsOnAFreshClone(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the server and the fake in a fresh clone")
	}
	for _, tool := range [][2]string{{"git", "git"}, {"bash", "bash"}, {"curl", "curl"}, {"go", "golang"}} {
		needTool(t, tool[0], tool[1])
	}
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("not a git checkout: %v", err)
		}
		t.Skipf("not a git checkout, nothing to clone: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "clone")
	if out, err := exec.Command("git", "clone", "--quiet", strings.TrimSpace(string(top)), dir).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	copyUncommitted(t, strings.TrimSpace(string(top)), dir)
	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	first := section(t, string(readme), "Two commands")
	firstCmds := shellCommands(first)
	serverCmd := commandStarting(t, firstCmds, "go run .", "Two commands")
	curlCmd := commandStarting(t, firstCmds, "curl ", "Two commands")
	fakeCmd := commandStarting(t, shellCommands(section(t, string(readme), "Try the Cloudinary path without an account")),
		"go run ./tools/fakecloudinary", "Try the Cloudinary path without an account")
	if !strings.Contains(curlCmd, "testdata/") || strings.Contains(curlCmd, "public_id") {
		t.Errorf("the README's first curl %q: want a file of the repository and no public_id", curlCmd)
	}
	if !strings.Contains(first, "GPS") || !strings.Contains(first, "a minute") {
		t.Error("the README's Two commands does not say that the first run builds for about a minute, or that the stored file loses its GPS bytes")
	}

	// The environment of a shell, without any of the server's variables a developer may have set.
	var env []string
	names := map[string]bool{}
	for _, v := range envconfig.Vars() {
		names[v.Name] = true
	}
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); !names[name] && name != "CI" {
			env = append(env, kv)
		}
	}
	env = append(env, "PORT=0")

	// The first run: the local store.
	server := startREADMECommand(t, dir, env, serverCmd)
	server.waitFor(t, "storing uploads on local disk", readmeStartDeadline)
	port := listeningPort(t, server.waitFor(t, `"msg":"listening"`, readmeStartDeadline))
	answer := runREADMECurl(t, dir, env, curlCmd, port)
	secureURL, _ := answer["secure_url"].(string)
	if !strings.HasPrefix(secureURL, "http://localhost:"+port+"/files/") {
		t.Fatalf("secure_url %q, want the local store's", secureURL)
	}
	sent, err := os.ReadFile(filepath.Join(dir, "testdata", "beach.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	stored := fetch(t, secureURL)
	if len(stored) != len(sent) || bytes.Equal(stored, sent) {
		t.Errorf("stored %d bytes, sent %d: want the same length with the GPS bytes changed", len(stored), len(sent))
	}
	if _, err := exec.LookPath("exiftool"); err == nil {
		for _, f := range []struct {
			data    []byte
			wantGPS bool
		}{{sent, true}, {stored, false}} {
			var gps []string
			for k, v := range exiftoolTags(t, f.data) {
				if strings.HasSuffix(k, ":GPSLatitude") {
					gps = append(gps, fmt.Sprintf("%s=%v", k, v))
				}
			}
			if hasGPS := len(gps) > 0; hasGPS != f.wantGPS {
				t.Errorf("exiftool: GPS %q, want GPS %v (the sent file has it, the stored one not)", gps, f.wantGPS)
			}
		}
	}
	server.stop(t)

	// Using it: the server started as the README says, with a token; its curl sends it, and
	// sent twice with its public_id, the second answer is the first file, "existing".
	using := section(t, string(readme), "Using it")
	tokenServer := inlineCommand(t, using, "UPLOAD_TOKENS=$TOKEN go run .")
	inlineCommand(t, using, "TOKEN=$(openssl rand -hex 32)")
	tokenCurl := commandStarting(t, shellCommands(using), "curl ", "Using it")
	tokenEnv := append(slices.Clone(env), "TOKEN="+strings.Repeat("5eed", 16)) // what openssl rand -hex 32 prints
	server = startREADMECommand(t, dir, tokenEnv, tokenServer)
	port = listeningPort(t, server.waitFor(t, `"msg":"listening"`, readmeStartDeadline))
	answer = runREADMECurl(t, dir, tokenEnv, tokenCurl, port)
	if answer["public_id"] != "holiday/beach" {
		t.Errorf("the README's curl with public_id=holiday/beach: %v", answer)
	}
	if out := runREADMECurlFails(t, dir, tokenEnv, tokenCurl, port); !strings.Contains(out, "public_id is already taken") {
		t.Errorf("the README's curl again: %s, want the 409 the README promises", out)
	}
	if out := runREADMECurlFails(t, dir, env, curlCmd, port); !strings.Contains(out, "missing or wrong upload token") {
		t.Errorf("the first curl, without the token, to a server with UPLOAD_TOKENS: %s, want the 401's message", out)
	}
	server.stop(t)

	// The Cloudinary path, without an account.
	fake := startREADMECommand(t, dir, env, fakeCmd)
	envLine := fake.waitFor(t, "CLOUDINARY_URL=", readmeStartDeadline)
	dotEnv, err := os.ReadFile(filepath.Join(dir, ".env"))
	if err != nil || !strings.Contains(string(dotEnv), envLine+"\n") {
		t.Fatalf(".env is %q (%v), want the fake's line %q", dotEnv, err, envLine)
	}
	server = startREADMECommand(t, dir, env, serverCmd)
	server.waitFor(t, "storing uploads in Cloudinary", readmeStartDeadline)
	port = listeningPort(t, server.waitFor(t, `"msg":"listening"`, readmeStartDeadline))
	answer = runREADMECurl(t, dir, env, curlCmd, port)
	sum := sha256.Sum256(stored)
	fake.waitFor(t, "fake-upload sha256="+hex.EncodeToString(sum[:]), time.Minute) // listed as it happens
	secureURL, _ = answer["secure_url"].(string)
	if got := fetch(t, secureURL); !bytes.Equal(got, stored) {
		t.Errorf("the fake serves %d bytes at %s, want the %d the server stored", len(got), secureURL, len(stored))
	}
}
