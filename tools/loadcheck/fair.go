package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// goodClients upload among the slow ones, each from its own address.
const goodClients = 10

// fairCheck runs the server on its defaults (only the upstream and the port set) and reports:
// crowd concurrent uploads of size bytes from many addresses (8 per address, the default
// MAX_UPLOADS_PER_CLIENT) and the peak RSS; then slowHeaders connections that trickle their
// headers and slowBodies that trickle their bodies, all from 127.0.2.1, while goodClients others
// upload once a second each for attack long, and their p50 and p99.
func fairCheck(bin, upAddr string, size int64, crowd, slowHeaders, slowBodies int, attack time.Duration, out io.Writer) error {
	cmd, addr, err := start(bin, append(environ(),
		"PORT=0", "ENV_FILE=/nonexistent/.env", "LOG_LEVEL=info", // the "listening" line is at info
		"CLOUDINARY_URL=cloudinary://123:secret@demo?upload_prefix=http://"+upAddr))
	if err != nil {
		return err
	}
	defer stop(cmd)
	_, port, _ := net.SplitHostPort(addr)
	target := "127.0.0.1:" + port
	url := "http://" + target + "/upload"
	head, err := pngHead()
	if err != nil {
		return err
	}

	// The crowd: every upload at once, 8 per address.
	statuses := map[int]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for i := range crowd {
		c := clientFrom(fmt.Sprintf("127.0.1.%d", 1+i/8))
		wg.Go(func() {
			status, err := uploadStatus(c, url, head, size)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				status = -1
			}
			statuses[status]++
		})
	}
	wg.Wait()
	crowdDur := time.Since(start)
	hwm, err := peakRSS(cmd.Process.Pid)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%d concurrent uploads of %d bytes from %d addresses: %s in %.1f s; peak RSS %.1f MiB\n",
		crowd, size, (crowd+7)/8, statusText(statuses), crowdDur.Seconds(), float64(hwm)/(1<<20))

	// The attack: slow headers and slow bodies from one address.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bad := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.2.1")}}
	var attackers sync.WaitGroup
	var opened, failed int
	var outcomeMu sync.Mutex
	bodyAnswers := map[string]int{}
	for i := range slowHeaders + slowBodies {
		conn, err := bad.DialContext(ctx, "tcp", target)
		if err != nil {
			failed++
			continue
		}
		opened++
		slowBody := i >= slowHeaders
		attackers.Go(func() {
			defer conn.Close()
			answer := trickle(ctx, conn, slowBody)
			if slowBody {
				outcomeMu.Lock()
				bodyAnswers[answer]++
				outcomeMu.Unlock()
			}
		})
	}
	// The good clients: one upload a second each (RATE_LIMIT's sustained rate), from their own addresses.
	var lat []time.Duration
	goodStatuses := map[int]int{}
	var goodWG sync.WaitGroup
	for g := range goodClients {
		c := clientFrom(fmt.Sprintf("127.0.3.%d", 1+g))
		goodWG.Go(func() {
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for end := time.Now().Add(attack); time.Now().Before(end); <-tick.C {
				t0 := time.Now()
				status, err := uploadStatus(c, url, head, size)
				if err != nil {
					status = -1
				}
				mu.Lock()
				goodStatuses[status]++
				lat = append(lat, time.Since(t0))
				mu.Unlock()
			}
		})
	}
	goodWG.Wait()
	cancel()
	attackers.Wait()
	hwm, err = peakRSS(cmd.Process.Pid)
	if err != nil {
		return err
	}
	slices.Sort(lat)
	fmt.Fprintf(out, "attack from 127.0.2.1: %d slow-header and %d slow-body connections (%d opened, %d failed to open)\n",
		slowHeaders, slowBodies, opened, failed)
	fmt.Fprintf(out, "  slow bodies' answers: %s\n", mapText(bodyAnswers))
	fmt.Fprintf(out, "%d good clients (127.0.3.x, one upload a second each) meanwhile: %d uploads of %d bytes: %s; p50 %s, p99 %s; peak RSS %.1f MiB\n",
		goodClients, len(lat), size, statusText(goodStatuses), percentile(lat, 50), percentile(lat, 99), float64(hwm)/(1<<20))
	return nil
}

// trickle sends a request slowly, a byte a second: its headers (slowBody false) or, after whole
// headers and the start of a multipart body, its body. It returns what the server answered
// (a status line), or why there was none.
func trickle(ctx context.Context, conn net.Conn, slowBody bool) string {
	var pre bytes.Buffer
	mw := multipart.NewWriter(&pre)
	if _, err := mw.CreateFormFile("file", "slow.png"); err != nil {
		return err.Error()
	}
	head := "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: " + mw.FormDataContentType() + "\r\nContent-Length: 1000000\r\n"
	rest := []byte(head)
	if slowBody {
		if _, err := io.WriteString(conn, head+"\r\n"+pre.String()); err != nil {
			return "write: " + err.Error()
		}
		rest = noiseBlock
	}
	answer := make(chan string, 1)
	go func() {
		b := make([]byte, 128)
		n, err := conn.Read(b)
		if n > 0 {
			line, _, _ := strings.Cut(string(b[:n]), "\r\n")
			answer <- line
			return
		}
		answer <- "closed: " + errText(err)
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for i := 0; ; i = (i + 1) % len(rest) {
		select {
		case a := <-answer:
			return a
		case <-ctx.Done():
			conn.Close()
			return "still open at the end"
		case <-tick.C:
		}
		if _, err := conn.Write(rest[i : i+1]); err != nil {
			return <-answer
		}
	}
}

func errText(err error) string {
	switch {
	case err == io.EOF:
		return "EOF"
	case err != nil && strings.Contains(err.Error(), "reset"):
		return "reset"
	}
	return fmt.Sprint(err)
}

// clientFrom is a client whose connections come from ip.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 8}}
}

// uploadStatus is upload, returning the status instead of failing on any but 200.
func uploadStatus(c *http.Client, url string, head []byte, size int64) (int, error) {
	err := upload(c, url, head, size)
	if err == nil {
		return http.StatusOK, nil
	}
	if s, ok := strings.CutPrefix(err.Error(), "status "); ok {
		if n, err := strconv.Atoi(s[:3]); err == nil {
			return n, nil
		}
	}
	return 0, err
}

func statusText(m map[int]int) string {
	var keys []int
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		name := strconv.Itoa(k)
		if k < 0 {
			name = "failed"
		}
		parts = append(parts, fmt.Sprintf("%d × %s", m[k], name))
	}
	return strings.Join(parts, ", ")
}

func mapText(m map[string]int) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d × %q", m[k], k))
	}
	return strings.Join(parts, ", ")
}

func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[min(max(i-1, 0), len(sorted)-1)].Round(time.Millisecond)
}
