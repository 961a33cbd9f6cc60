package cloudinary_test

import (
	"bytes"
	"testing"
	"time"

	"cloudinary-upload-api/internal/cloudinary"
	"cloudinary-upload-api/internal/cloudinary/cloudinarytest"
	"cloudinary-upload-api/internal/store"
)

// pacedReader yields its bytes at rate bytes per second, as a client on a slower link does.
type pacedReader struct {
	r     *bytes.Reader
	rate  float64
	start time.Time
	sent  int
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if p.start.IsZero() {
		p.start = time.Now()
	}
	time.Sleep(time.Until(p.start.Add(time.Duration(float64(p.sent) / p.rate * float64(time.Second)))))
	n, err := p.r.Read(b[:min(len(b), 256<<10)])
	p.sent += n
	return n, err
}

// BenchmarkChunkedClientPaced sends a 110 MB file that arrives at 100 MB/s in 20 MB chunks to the
// fake: "whole" reads each chunk whole before sending it (the size unknown), "streamed" sends
// each as it arrives (the size bounded, as a form's Content-Length bounds it). Streamed takes
// about the file's arrival plus the last chunk's sending; whole adds every chunk's sending.
func BenchmarkChunkedClientPaced(b *testing.B) {
	fake := cloudinarytest.New(b)
	creds, err := cloudinary.ParseURL(fake.CloudinaryURL())
	if err != nil {
		b.Fatal(err)
	}
	c, err := cloudinary.New(creds, cloudinary.Options{ChunkSize: 20_000_000, StallTimeout: time.Minute, Backoff: func(int) time.Duration { return 0 }})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.CloseIdleConnections)
	file := patterned(110_000_000)
	for _, tc := range []struct {
		name string
		size int64
	}{{"whole", -1}, {"streamed", int64(len(file)) + 300}} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(file)))
			for b.Loop() {
				if _, err := c.Upload(b.Context(), &pacedReader{r: bytes.NewReader(file), rate: 100e6}, store.Params{Size: tc.size}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
