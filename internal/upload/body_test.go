package upload

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestBodyFillsFromBufferedBytes(t *testing.T) {
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
		b := &body{
			file:   &smallReads{r: bytes.NewReader(data), max: 4096},
			limit:  1 << 20,
			copies: NewBuffers(1<<10, 1<<20),
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

func TestBodyFillKeepsTheLimit(t *testing.T) {
	t.Parallel()
	b := &body{
		file:  &smallReads{r: bytes.NewReader(make([]byte, 20000)), max: 4096},
		limit: 10000,
		more:  func() bool { return true },
	}
	n, err := b.Read(make([]byte, 64<<10))
	var tooLarge *TooLargeError
	if n != 10000 || !errors.As(err, &tooLarge) || tooLarge.Limit != 10000 {
		t.Fatalf("read %d, %v; want 10000 bytes and TooLargeError", n, err)
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
