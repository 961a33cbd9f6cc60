package main

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"testing"
	"testing/iotest"
)

// writerToReader is a reader with its own WriteTo, like uploadBody.
type writerToReader struct {
	io.Reader
	used bool
}

func (r *writerToReader) WriteTo(w io.Writer) (int64, error) {
	r.used = true
	return io.Copy(w, r.Reader)
}

func TestCountingReaderWriteTo(t *testing.T) {
	t.Parallel()
	src := &writerToReader{Reader: bytes.NewReader(make([]byte, 1000))}
	c := &countingReader{r: src}
	var dst bytes.Buffer
	if n, err := io.Copy(&dst, c); err != nil || n != 1000 {
		t.Fatalf("copy: %d, %v", n, err)
	}
	if !src.used || c.n.Load() != 1000 || c.failed.Load() {
		t.Fatalf("WriteTo used %v, counted %d, failed %v; want true, 1000, false", src.used, c.n.Load(), c.failed.Load())
	}

	readErr := errors.New("client went away")
	c = &countingReader{r: &writerToReader{Reader: iotest.ErrReader(readErr)}}
	if _, err := io.Copy(io.Discard, c); !errors.Is(err, readErr) || !c.failed.Load() {
		t.Fatalf("read failure: err %v, failed %v; want the read error and failed", err, c.failed.Load())
	}

	c = &countingReader{r: &writerToReader{Reader: bytes.NewReader(make([]byte, 10))}}
	_, pw := io.Pipe()
	_ = pw.CloseWithError(errors.New("store gone"))
	if _, err := io.Copy(pw, c); err == nil || c.failed.Load() {
		t.Fatalf("write failure: err %v, failed %v; want an error that is not the file's", err, c.failed.Load())
	}
}

func TestUploadBodyFillsFromBufferedBytes(t *testing.T) {
	t.Parallel()
	data := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB
	for _, tc := range []struct {
		name string
		more bool
		want int
	}{
		{"bytes at hand: one large read", true, len(data)},
		{"nothing at hand: what the first read gave", false, 4096},
	} {
		b := &uploadBody{
			file:   &smallReads{r: bytes.NewReader(data), max: 4096},
			limit:  1 << 20,
			copies: &sync.Pool{},
			more:   func() bool { return tc.more },
		}
		p := make([]byte, 64<<10)
		n, err := b.Read(p)
		if err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if n != tc.want || !bytes.Equal(p[:n], data[:n]) {
			t.Fatalf("%s: read %d bytes, want %d of the file", tc.name, n, tc.want)
		}
	}
}

func TestUploadBodyFillKeepsTheLimit(t *testing.T) {
	t.Parallel()
	b := &uploadBody{
		file:  &smallReads{r: bytes.NewReader(make([]byte, 20000)), max: 4096},
		limit: 10000,
		more:  func() bool { return true },
	}
	n, err := b.Read(make([]byte, 64<<10))
	var api apiError
	if n != 10000 || !errors.As(err, &api) || api.status != 413 {
		t.Fatalf("read %d, %v; want 10000 bytes and the 413", n, err)
	}
}

// smallReads returns at most max bytes per Read, as multipart's part reader does.
type smallReads struct {
	r   io.Reader
	max int
}

func (s *smallReads) Read(p []byte) (int, error) {
	if len(p) > s.max {
		p = p[:s.max]
	}
	return s.r.Read(p)
}
