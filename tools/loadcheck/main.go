// Command loadcheck drives concurrent uploads through a real cloudinary-upload-api process and a
// lightweight fake Cloudinary on loopback, and reports the server's peak RSS, its CPU seconds per
// GB uploaded and its throughput beside sending the same bytes straight to the fake.
//
//	go run ./tools/loadcheck -size 50000000 -c 4 -n 16
//	go run ./tools/loadcheck -fair -size 1000000 -c 200
//	go run ./tools/loadcheck -budget -size 1000000 -attack 60s
//	go run ./tools/loadcheck -flood 20000 -size 1000000 -attack 30s
//
// It builds the server from the repository root (the working directory) unless -server is given.
// With -floor it also sends the uploads through a bare forwarder (this binary re-executed with
// LOADCHECK_FORWARDER set to the upstream's URL): the least work any proxy must do per byte.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/png"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// forwarderEnv, set to an upstream URL, makes this binary a bare forwarder to it.
const forwarderEnv = "LOADCHECK_FORWARDER"

func main() {
	var err error
	if target := os.Getenv(forwarderEnv); target != "" {
		err = forwarder(target, os.Stdout)
	} else {
		err = run(os.Args[1:], os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadcheck:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("loadcheck", flag.ContinueOnError)
	size := fs.Int64("size", 50_000_000, "bytes per file")
	conc := fs.Int("c", 4, "uploads at a time")
	n := fs.Int("n", 16, "uploads in all")
	server := fs.String("server", "", "server binary (default: go build the working directory)")
	chunk := fs.String("chunk", "", "CHUNK_SIZE for the server (default: the server's default)")
	floor := fs.Bool("floor", false, "also measure a bare forwarder: the floor of any proxy's cost")
	fair := fs.Bool("fair", false, "instead: the server on its defaults under a crowd (-c uploads of -size at once, 8 per address), then under slow clients from one address while another uploads")
	slowHeaders := fs.Int("slow-headers", 1000, "with -fair: connections that trickle their headers")
	slowBodies := fs.Int("slow-bodies", 200, "with -fair: connections that trickle their bodies")
	attack := fs.Duration("attack", 30*time.Second, "with -fair, -budget or -flood: how long the attack lasts")
	budget := fs.Bool("budget", false, "instead: issue 18's attack on the memory budget (slow chunked uploads from two addresses) while a third address uploads -size files")
	perAddr := fs.String("per-address", "6,8", "with -budget: slow chunked uploads from each attacking address")
	rate := fs.Int("rate", 10<<10, "with -budget: bytes a second each slow upload sends")
	chunked := fs.Int64("chunked", 50_000_000, "with -budget: bytes of the third address's chunked upload")
	flood := fs.Int("flood", 0, "instead: this many slow-header connections while good clients upload -size files")
	nofile := fs.Uint64("nofile", 0, "with -flood: the server's file limit (prlimit); 0: inherited")
	if err := fs.Parse(args); err != nil {
		return err
	}

	up, err := startUpstream()
	if err != nil {
		return err
	}
	defer up.Close()

	bin := *server
	if bin == "" {
		dir, err := os.MkdirTemp("", "loadcheck")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		bin = filepath.Join(dir, "server")
		if b, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
			return fmt.Errorf("go build: %w\n%s", err, b)
		}
	}
	if *budget {
		var counts []int
		for _, f := range strings.Split(*perAddr, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				return fmt.Errorf("-per-address: %w", err)
			}
			counts = append(counts, n)
		}
		return budgetCheck(bin, up.Addr, counts, *rate, *size, *chunked, *attack, out)
	}
	if *flood > 0 {
		return floodCheck(bin, up.Addr, *flood, *nofile, *size, *attack, out)
	}
	if *fair {
		return fairCheck(bin, up.Addr, *size, *conc, *slowHeaders, *slowBodies, *attack, out)
	}
	env := append(environ(),
		"PORT=0", "ENV_FILE=/nonexistent/.env", "LOG_LEVEL=info",
		"RATE_LIMIT=off", "MAX_UPLOADS_PER_CLIENT=off", // one load generator is one client: the per-client limits would answer 429
		"CLOUDINARY_URL=cloudinary://123:secret@demo?upload_prefix=http://"+up.Addr,
		"MAX_UPLOAD_BYTES="+strconv.FormatInt(*size+1, 10),
		"MAX_CONCURRENT_UPLOADS="+strconv.Itoa(*conc))
	if *chunk != "" {
		env = append(env, "CHUNK_SIZE="+*chunk)
	}
	cmd, addr, err := start(bin, env)
	if err != nil {
		return err
	}
	defer stop(cmd)
	_, port, _ := net.SplitHostPort(addr)
	serverURL := "http://127.0.0.1:" + port + "/upload"
	directURL := "http://" + up.Addr + "/v1_1/demo/image/upload"

	var fwd *exec.Cmd
	var floorURL string
	if *floor {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		fwd, addr, err = start(self, append(os.Environ(), forwarderEnv+"="+directURL))
		if err != nil {
			return fmt.Errorf("forwarder: %w", err)
		}
		defer stop(fwd)
		floorURL = "http://" + addr + "/"
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conc, WriteBufferSize: 256 << 10}}
	head, err := pngHead()
	if err != nil {
		return err
	}

	// Direct first, then through the forwarder, then through the server; each alone on the machine.
	directDur, err := drive(client, directURL, head, *size, *conc, *n)
	if err != nil {
		return fmt.Errorf("direct: %w", err)
	}
	var floorDur time.Duration
	var floorCPU float64
	if fwd != nil {
		if floorDur, floorCPU, err = measure(client, floorURL, head, *size, *conc, *n, fwd.Process.Pid); err != nil {
			return fmt.Errorf("through the forwarder: %w", err)
		}
	}
	serverDur, serverCPU, err := measure(client, serverURL, head, *size, *conc, *n, cmd.Process.Pid)
	if err != nil {
		return fmt.Errorf("through the server: %w", err)
	}
	hwm, err := peakRSS(cmd.Process.Pid)
	if err != nil {
		return err
	}
	gb := float64(*size) * float64(*n) / 1e9
	fmt.Fprintf(out, "%d uploads of %d bytes, %d at a time (%.2f GB)\n", *n, *size, *conc, gb)
	fmt.Fprintf(out, "direct:  %7.1f MB/s  %7.1f uploads/s\n", gb*1e3/directDur.Seconds(), float64(*n)/directDur.Seconds())
	if fwd != nil {
		fmt.Fprintf(out, "floor:   %7.1f MB/s  %7.1f uploads/s  (%.0f%% of direct)  CPU %.2f s/GB\n", gb*1e3/floorDur.Seconds(), float64(*n)/floorDur.Seconds(), 100*directDur.Seconds()/floorDur.Seconds(), floorCPU/gb)
	}
	fmt.Fprintf(out, "server:  %7.1f MB/s  %7.1f uploads/s  (%.0f%% of direct)\n", gb*1e3/serverDur.Seconds(), float64(*n)/serverDur.Seconds(), 100*directDur.Seconds()/serverDur.Seconds())
	fmt.Fprintf(out, "server CPU: %.2f s in all, %.2f s/GB;  peak RSS: %.1f MiB\n", serverCPU, serverCPU/gb, float64(hwm)/(1<<20))
	return nil
}

// environ is the environment the server is started with, without the variables loadcheck sets.
func environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); !strings.Contains(",PORT,ENV_FILE,LOG_LEVEL,RATE_LIMIT,MAX_UPLOADS_PER_CLIENT,CLOUDINARY_URL,MAX_UPLOAD_BYTES,MAX_CONCURRENT_UPLOADS,CHUNK_SIZE,", ","+name+",") {
			env = append(env, kv)
		}
	}
	return env
}

// measure drives the uploads at url and returns how long they took and the CPU seconds that
// process pid spent meanwhile.
func measure(c *http.Client, url string, head []byte, size int64, conc, n, pid int) (time.Duration, float64, error) {
	cpu0, err := cpuSeconds(pid)
	if err != nil {
		return 0, 0, err
	}
	d, err := drive(c, url, head, size, conc, n)
	if err != nil {
		return 0, 0, err
	}
	cpu1, err := cpuSeconds(pid)
	return d, cpu1 - cpu0, err
}

// start runs bin with env and waits for its JSON "listening" line.
func start(bin string, env []string) (*exec.Cmd, string, error) {
	cmd := exec.Command(bin)
	cmd.Env = env
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	addr, err := listeningAddr(stdout)
	if err != nil {
		stop(cmd)
		return nil, "", err
	}
	return cmd, addr, nil
}

// stop interrupts a process from start and waits for it to exit.
func stop(cmd *exec.Cmd) { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }

// drive sends n uploads of size bytes, conc at a time, and returns how long they took.
func drive(c *http.Client, url string, head []byte, size int64, conc, n int) (time.Duration, error) {
	jobs := make(chan struct{})
	errs := make(chan error, conc)
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				if err := upload(c, url, head, size); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var err error
feed:
	for range n {
		select {
		case jobs <- struct{}{}:
		case err = <-errs:
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return time.Since(start), err
}

// upload posts one multipart form of known length: a PNG header then zeros, size bytes in all.
func upload(c *http.Client, url string, head []byte, size int64) error {
	var pre bytes.Buffer
	mw := multipart.NewWriter(&pre)
	if _, err := mw.CreateFormFile("file", "load.png"); err != nil {
		return err
	}
	prefix := append([]byte(nil), pre.Bytes()...)
	pre.Reset()
	if err := mw.Close(); err != nil {
		return err
	}
	suffix := pre.Bytes()
	body := io.MultiReader(bytes.NewReader(prefix), bytes.NewReader(head), io.LimitReader(&noise{}, size-int64(len(head))), bytes.NewReader(suffix))
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		return err
	}
	req.ContentLength = int64(len(prefix)+len(suffix)) + size
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return nil
}

// noiseBlock is incompressible-looking filler, like the compressed images people upload. (Zeros
// would make mime/multipart's boundary scan walk each buffer back to its start for a '\r'.)
var noiseBlock = func() []byte {
	b := make([]byte, 64<<10)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}()

// noise repeats noiseBlock.
type noise struct{ off int }

func (r *noise) Read(p []byte) (int, error) {
	n := copy(p, noiseBlock[r.off:])
	r.off = (r.off + n) % len(noiseBlock)
	return n, nil
}

func pngHead() ([]byte, error) {
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, 2, 2))); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// upstream is a lightweight stand-in for Cloudinary: it reads each body to its end and answers
// with a small JSON result. The protocol-faithful fake (which hashes every byte) lives in the tests.
type upstream struct {
	Addr string
	srv  *http.Server
}

func startUpstream() (*upstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	pool := sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bp := pool.Get().(*[]byte)
		defer pool.Put(bp)
		n, err := io.CopyBuffer(io.Discard, r.Body, *bp)
		if err != nil {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"public_id": "load", "bytes": n, "done": r.Header.Get("Content-Range") != "" && strings.HasSuffix(r.Header.Get("Content-Range"), "/-1")})
	})}
	go func() { _ = srv.Serve(ln) }()
	return &upstream{Addr: ln.Addr().String(), srv: srv}, nil
}

func (u *upstream) Close() { _ = u.srv.Close() }

// forwarder is the bare forwarder: it streams each request body, unparsed, to target and copies
// the answer back. One server exchange and one client exchange, every byte read from one socket
// and written to another with no copy in user space: the least any proxy can do.
func forwarder(target string, out io.Writer) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	// The request's headers fit in 512 bytes; the body's chunks go to the socket from the read buffer.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32, WriteBufferSize: 512}}
	readers := sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 1<<20) }}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		br := readers.Get().(*bufio.Reader)
		br.Reset(r.Body)
		defer func() { br.Reset(nil); readers.Put(br) }()
		req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, target, bufferedBody{br})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		req.ContentLength = -1 // chunked, as a proxy that does not trust the client's length would
		req.Header.Set("Content-Type", r.Header.Get("Content-Type"))
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	})}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if _, err := fmt.Fprintf(out, "{\"msg\":\"listening\",\"addr\":%q}\n", ln.Addr().String()); err != nil {
		return err
	}
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	client.CloseIdleConnections()
	return nil
}

// bufferedBody is a request body whose WriteTo hands the writer slices of the bufio.Reader's own
// buffer, a full buffer at a time when the body is that long.
type bufferedBody struct{ r *bufio.Reader }

func (b bufferedBody) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b bufferedBody) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for {
		p, err := b.r.Peek(b.r.Size())
		if len(p) > 0 {
			m, werr := w.Write(p)
			n += int64(m)
			_, _ = b.r.Discard(m) // m ≤ len(p), all buffered: cannot fail
			if werr != nil {
				return n, werr
			}
		}
		switch {
		case err == io.EOF:
			return n, nil
		case err != nil && err != bufio.ErrBufferFull:
			return n, err
		}
	}
}

// listeningAddr reads the server's JSON log until its "listening" line, then keeps draining it.
func listeningAddr(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var e struct{ Msg, Addr string }
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Msg == "listening" {
			go func() { _, _ = io.Copy(io.Discard, r) }()
			return e.Addr, nil
		}
	}
	return "", errors.New("the server exited before listening")
}

// cpuSeconds is the process's user + system CPU time, from /proc/PID/stat.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may contain spaces.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return (utime + stime) / 100, nil // USER_HZ is 100 on Linux
}

// peakRSS is VmHWM from /proc/PID/status, in bytes.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
}
