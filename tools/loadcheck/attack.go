package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// budgetCheck is issue 18's attack on the memory budget, on the server's defaults: perAddr[i]
// chunked uploads (no Content-Length) from address 127.0.4.(i+1), each sending its first bytes
// and then rate bytes a second, held for attack long; meanwhile a third address makes one
// upload of size bytes a second (streamed) and one chunked upload of chunked bytes. It reports
// what each side got and the peak RSS.
func budgetCheck(bin, upAddr string, perAddr []int, rate int, size, chunked int64, attack time.Duration, out io.Writer) error {
	cmd, addr, err := start(bin, append(environ(),
		"PORT=0", "ENV_FILE=/nonexistent/.env", "LOG_LEVEL=info",
		"CLOUDINARY_URL=cloudinary://123:secret@demo?upload_prefix=http://"+upAddr))
	if err != nil {
		return err
	}
	defer stop(cmd)
	_, port, _ := net.SplitHostPort(addr)
	url := "http://127.0.0.1:" + port + "/upload"
	head, err := pngHead()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), attack)
	defer cancel()
	var mu sync.Mutex
	attackers := map[string]int{}
	var wg sync.WaitGroup
	for i, n := range perAddr {
		c := clientFrom(fmt.Sprintf("127.0.4.%d", i+1))
		for range n {
			wg.Go(func() {
				status := slowUpload(ctx, c, url, head, rate)
				mu.Lock()
				attackers[status]++
				mu.Unlock()
			})
		}
	}
	// The third address, once the attackers are in.
	time.Sleep(2 * time.Second)
	good := clientFrom("127.0.5.1")
	goodStatuses := map[int]int{}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	chunkedStatus := "not tried"
	for first := true; ctx.Err() == nil; first = false {
		if first {
			err := uploadUnsized(good, url, head, chunked)
			chunkedStatus = "200"
			if err != nil {
				chunkedStatus = err.Error()
			}
		}
		status, err := uploadStatus(good, url, head, size)
		if err != nil {
			status = -1
		}
		goodStatuses[status]++
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	cancel()
	wg.Wait()
	hwm, err := peakRSS(cmd.Process.Pid)
	if err != nil {
		return err
	}
	total := 0
	for _, n := range perAddr {
		total += n
	}
	fmt.Fprintf(out, "attack: %d chunked uploads from %d addresses (%v), each sending %d B/s, for %s; peak RSS %.1f MiB\n",
		total, len(perAddr), perAddr, rate, attack, float64(hwm)/(1<<20))
	fmt.Fprintf(out, "  attackers' answers: %s\n", mapText(attackers))
	fmt.Fprintf(out, "third address meanwhile: a chunked upload of %d bytes: %s; uploads of %d bytes, one a second: %s\n",
		chunked, chunkedStatus, size, statusText(goodStatuses))
	return nil
}

// slowUpload sends a chunked upload's first bytes, then rate bytes a second until ctx ends; it
// returns the answer's status, or what happened instead.
func slowUpload(ctx context.Context, c *http.Client, url string, head []byte, rate int) string {
	pr, pw := io.Pipe()
	go func() {
		_, err := pw.Write(append(formPrefix(), head...))
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for err == nil {
			select {
			case <-ctx.Done():
				err = errors.New("the attack is over")
			case <-tick.C:
				_, err = pw.Write(noiseBlock[:rate])
			}
		}
		pw.CloseWithError(err)
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, pr)
	if err != nil {
		return err.Error()
	}
	req.Header.Set("Content-Type", formContentType)
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "held until the attack ended"
		}
		return "failed: " + errText(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return strconv.Itoa(resp.StatusCode)
}

// formContentType and formPrefix are a multipart form's type and its start, up to the file's bytes.
const formContentType = "multipart/form-data; boundary=loadcheck"

func formPrefix() []byte {
	return []byte("--loadcheck\r\nContent-Disposition: form-data; name=\"file\"; filename=\"load.png\"\r\nContent-Type: image/png\r\n\r\n")
}

// uploadUnsized posts a form of size bytes without a Content-Length, so it goes up in chunks.
func uploadUnsized(c *http.Client, url string, head []byte, size int64) error {
	body := io.MultiReader(strings.NewReader(string(formPrefix())), strings.NewReader(string(head)),
		io.LimitReader(&noise{}, size-int64(len(head))), strings.NewReader("\r\n--loadcheck--\r\n"))
	req, err := http.NewRequest(http.MethodPost, url, io.NopCloser(body))
	if err != nil {
		return err
	}
	req.ContentLength = -1
	req.Header.Set("Content-Type", formContentType)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return nil
}

// floodCheck opens conns connections that send a request line and then nothing (slow headers),
// spread over source addresses 127.0.6.x, against the server on its defaults (with a file
// limit of nofile when it is not 0, set with prlimit); meanwhile goodClients others upload once
// a second each. It reports how many opened, the server's peak RSS, how often it logged
// "too many open files", and what the good clients got.
func floodCheck(bin, upAddr string, conns int, nofile uint64, size int64, attack time.Duration, out io.Writer) error {
	env := append(environ(),
		"PORT=0", "ENV_FILE=/nonexistent/.env", "LOG_LEVEL=info",
		"CLOUDINARY_URL=cloudinary://123:secret@demo?upload_prefix=http://"+upAddr)
	cmd := exec.Command(bin)
	if nofile > 0 {
		cmd = exec.Command("prlimit", fmt.Sprintf("--nofile=%d:%d", nofile, nofile), "--", bin)
	}
	cmd.Env = env
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer stop(cmd)
	sc := bufio.NewScanner(stdout)
	var addr string
	for addr == "" && sc.Scan() {
		var e struct{ Msg, Addr string }
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Msg == "listening" {
			addr = e.Addr
			fmt.Fprintf(out, "server: %s\n", sc.Text())
		}
	}
	if addr == "" {
		return errors.New("the server exited before listening")
	}
	var fileErrors atomic.Int64
	go func() {
		for sc.Scan() {
			if strings.Contains(sc.Text(), "too many open files") {
				fileErrors.Add(1)
			}
		}
	}()
	_, port, _ := net.SplitHostPort(addr)
	target := "127.0.0.1:" + port
	url := "http://" + target + "/upload"
	head, err := pngHead()
	if err != nil {
		return err
	}
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	failed := 0
	start := time.Now()
	for i := range conns {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 6, byte(1+i/10000))}, Timeout: time.Second}
		c, err := d.Dial("tcp", target)
		if err != nil {
			failed++
			continue
		}
		_, _ = io.WriteString(c, "POST /upload HTTP/1.1\r\n") // and no more: slow headers
		open = append(open, c)
	}
	fmt.Fprintf(out, "flood: %d slow-header connections (%d opened, %d failed to open) in %.1f s\n", conns, len(open), failed, time.Since(start).Seconds())
	statuses := map[int]int{}
	var lat []time.Duration
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range goodClients {
		c := clientFrom(fmt.Sprintf("127.0.7.%d", 1+g))
		c.Timeout = 2 * attack
		wg.Go(func() {
			for end := time.Now().Add(attack); time.Now().Before(end); {
				t0 := time.Now()
				status, err := uploadStatus(c, url, head, size)
				if err != nil {
					status = -1
				}
				mu.Lock()
				statuses[status]++
				lat = append(lat, time.Since(t0))
				mu.Unlock()
				time.Sleep(time.Second - min(time.Since(t0), time.Second))
			}
		})
	}
	wg.Wait()
	hwm, err := peakRSS(cmd.Process.Pid)
	if err != nil {
		return err
	}
	slices.Sort(lat)
	fmt.Fprintf(out, "peak RSS %.1f MiB; \"too many open files\" logged %d times\n", float64(hwm)/(1<<20), fileErrors.Load())
	fmt.Fprintf(out, "%d good clients meanwhile, for %s: %d uploads of %d bytes: %s; p50 %s, p99 %s\n",
		goodClients, attack, len(lat), size, statusText(statuses), percentile(lat, 50), percentile(lat, 99))
	return nil
}
