package main

import (
	"bytes"
	"errors"
	"io"
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
