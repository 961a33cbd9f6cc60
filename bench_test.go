package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"cloudinary-upload-api/internal/cloudinary"
	"cloudinary-upload-api/internal/ratelimit"
	"cloudinary-upload-api/internal/ratelimit/redistest"
)

// lightUpstream reads each upload body to its end and answers with a small result: unlike the
// protocol-faithful fake it hashes nothing, so the benchmarks measure our server, not the fake.
func lightUpstream(b *testing.B) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 256<<10)
		if _, err := io.CopyBuffer(io.Discard, r.Body, buf); err != nil {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"public_id": "bench", "done": false})
	}))
	b.Cleanup(srv.Close)
	return srv
}

// benchForm is a multipart upload of size bytes (a PNG header, then zeros) of known length.
type benchForm struct {
	prefix, suffix []byte // prefix ends with the file's first bytes, a PNG header
	headLen        int64
	contentType    string
	size           int64
	unknownLength  bool // sent without a Content-Length (chunked transfer)
}

func newBenchForm(b *testing.B, size int64) benchForm {
	ct, formHead, suffix := formAround(b, filePartOf("file", "bench.png", nil))
	head := testPNG(b, 2, 2)
	return benchForm{prefix: append(formHead, head...), suffix: suffix, headLen: int64(len(head)), contentType: ct, size: size}
}

func (f benchForm) post(b *testing.B, c *http.Client, url string) {
	fileRest := f.size - f.headLen
	body := io.MultiReader(bytes.NewReader(f.prefix), io.LimitReader(&noiseReader{}, fileRest), bytes.NewReader(f.suffix))
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		b.Fatal(err)
	}
	if !f.unknownLength {
		req.ContentLength = int64(len(f.prefix)) + fileRest + int64(len(f.suffix))
	}
	req.Header.Set("Content-Type", f.contentType)
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		b.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

// BenchmarkUpload sends files through the real handler and SDK adapter to a light upstream on
// loopback ("server"), and the same forms straight to that upstream ("direct"). 1 MB and 50 MB
// files stream in one request; 250 MB goes in chunks of CHUNK_SIZE (20 MB).
func BenchmarkUpload(b *testing.B) {
	for _, tc := range []struct {
		name string
		size int64
	}{{"100KB", 100_000}, {"1MB", 1_000_000}, {"50MB", 50_000_000}, {"250MB", 250_000_000}} {
		up := lightUpstream(b)
		cfg := testConfig()
		cfg.MaxUploadBytes = 1 << 30
		sdkUp, err := cloudinary.New(&cloudinary.Credentials{CloudName: "demo", APIKey: "k", APISecret: "s",
			Params: url.Values{"upload_prefix": {up.URL}}}, cfg.cloudinaryOptions())
		if err != nil {
			b.Fatal(err)
		}
		srv := httptest.NewServer(newServer(discardLogger(), cfg, cloudinaryStorage(sdkUp), newHealthState()))
		b.Cleanup(srv.Close)
		tr := &http.Transport{WriteBufferSize: 256 << 10}
		b.Cleanup(tr.CloseIdleConnections)
		b.Cleanup(sdkUp.CloseIdleConnections)
		client := &http.Client{Transport: tr}
		form := newBenchForm(b, tc.size)
		for _, target := range []struct{ name, url string }{
			{"direct", up.URL + "/v1_1/demo/image/upload"},
			{"server", srv.URL + "/upload"},
		} {
			b.Run(tc.name+"/"+target.name, func(b *testing.B) {
				b.SetBytes(tc.size)
				b.ReportAllocs()
				for b.Loop() {
					form.post(b, client, target.url)
				}
			})
		}
	}
}

// noiseBlock is incompressible-looking filler. Real uploads are compressed images: zeros would
// make mime/multipart's boundary scan (bytes.LastIndexByte for '\r') walk every buffer to its start.
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

// noiseReader repeats noiseBlock.
type noiseReader struct{ off int }

func (r *noiseReader) Read(p []byte) (int, error) {
	n := copy(p, noiseBlock[r.off:])
	r.off = (r.off + n) % len(noiseBlock)
	return n, nil
}

// BenchmarkUploadRedis is the cost per upload of keeping RATE_LIMIT in Redis: one 100 KB upload
// through the real handler with the buckets in memory ("memory") and in a real redis-server on
// loopback ("redis", one GCRA script per upload).
func BenchmarkUploadRedis(b *testing.B) {
	redis := redistest.Start(b)
	up := lightUpstream(b)
	form := newBenchForm(b, 100_000)
	for _, shared := range []bool{false, true} {
		cfg := testConfig()
		spec, err := ratelimit.Parse("1000000/s")
		if err != nil {
			b.Fatal(err)
		}
		cfg.RateLimit = spec
		sdkUp, err := cloudinary.New(&cloudinary.Credentials{CloudName: "demo", APIKey: "k", APISecret: "s",
			Params: url.Values{"upload_prefix": {up.URL}}}, cfg.cloudinaryOptions())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(sdkUp.CloseIdleConnections)
		health, name := newHealthState(), "memory"
		if shared {
			conn, err := ratelimit.Open(ratelimit.Config{URL: redis.URL(), TLSVerify: true, Timeout: 100 * time.Millisecond})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = conn.Close() })
			health.redis, name = conn, "redis"
		}
		srv := httptest.NewServer(newServer(discardLogger(), cfg, cloudinaryStorage(sdkUp), health))
		b.Cleanup(srv.Close)
		tr := &http.Transport{}
		b.Cleanup(tr.CloseIdleConnections)
		client := &http.Client{Transport: tr}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				form.post(b, client, srv.URL+"/upload")
			}
			if shared && !health.redis.Healthy() {
				b.Fatal("Redis stopped answering during the benchmark")
			}
		})
	}
}

// BenchmarkUploadQuota is the cost of USER_QUOTA on a 20 MB upload: off, counted in memory, and
// in a real redis-server on loopback; with a Content-Length (one reservation, one release) and
// without (a reservation per MiB as the file streams).
func BenchmarkUploadQuota(b *testing.B) {
	redis := redistest.Start(b)
	up := lightUpstream(b)
	spec, err := ratelimit.ParseQuota("1TB/day")
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"off", "memory", "redis"} {
		cfg := testConfig()
		if mode != "off" {
			cfg.UserQuota = spec
		}
		sdkUp, err := cloudinary.New(&cloudinary.Credentials{CloudName: "demo", APIKey: "k", APISecret: "s",
			Params: url.Values{"upload_prefix": {up.URL}}}, cfg.cloudinaryOptions())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(sdkUp.CloseIdleConnections)
		health := newHealthState()
		if mode == "redis" {
			conn, err := ratelimit.Open(ratelimit.Config{URL: redis.URL(), TLSVerify: true, Timeout: 100 * time.Millisecond})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = conn.Close() })
			health.redis = conn
		}
		srv := httptest.NewServer(newServer(discardLogger(), cfg, cloudinaryStorage(sdkUp), health))
		b.Cleanup(srv.Close)
		tr := &http.Transport{WriteBufferSize: 256 << 10}
		b.Cleanup(tr.CloseIdleConnections)
		client := &http.Client{Transport: tr}
		for _, unknown := range []bool{false, true} {
			form := newBenchForm(b, 20_000_000)
			form.unknownLength = unknown
			name := mode + "/length"
			if unknown {
				name = mode + "/streamed"
			}
			b.Run(name, func(b *testing.B) {
				b.SetBytes(form.size)
				b.ReportAllocs()
				for b.Loop() {
					form.post(b, client, srv.URL+"/upload")
				}
				if mode == "redis" && !health.redis.Healthy() {
					b.Fatal("Redis stopped answering during the benchmark")
				}
			})
		}
	}
}
