package upload

import "testing"

func TestBuffersBySize(t *testing.T) {
	t.Parallel()
	b := NewBuffers(100<<10, 1<<20) // classes 128 KiB, 256 KiB, 512 KiB, 1 MiB
	for _, tc := range []struct {
		n    int64
		want int
	}{
		{-1, 1 << 20}, {0, 128 << 10}, {100_000, 128 << 10}, {128 << 10, 128 << 10}, {128<<10 + 1, 256 << 10},
		{600 << 10, 1 << 20}, {5 << 20, 1 << 20},
	} {
		if got := b.Size(tc.n); got != tc.want {
			t.Errorf("Size(%d) = %d, want %d", tc.n, got, tc.want)
		}
		p := b.Get(tc.n)
		if len(*p) != tc.want {
			t.Errorf("Get(%d): %d bytes, want %d", tc.n, len(*p), tc.want)
		}
		b.Put(p)
	}
	odd := make([]byte, 1000)
	b.Put(&odd) // not a class: dropped
	if p := b.Get(10); len(*p) != 128<<10 {
		t.Errorf("after an odd Put, Get gave %d bytes", len(*p))
	}
}
