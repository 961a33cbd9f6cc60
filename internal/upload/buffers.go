package upload

import "sync"

// Buffers hands out byte buffers by size class, powers of two from a least to a largest size,
// and takes them back for reuse: an upload of 100 KB gets a buffer of 128 KiB, not the 1 MiB
// a large one reads through. Size says which class a length gets, so that what an upload
// reserves of the memory budget is what it will hold.
type Buffers struct {
	least, largest int
	pools          []sync.Pool // one per class, smallest first
}

// NewBuffers hands out buffers of least to largest bytes (least is rounded up to a power of two).
func NewBuffers(least, largest int) *Buffers {
	b := &Buffers{least: 1, largest: largest}
	for b.least < least {
		b.least *= 2
	}
	classes := 1
	for s := b.least; s < largest; s *= 2 {
		classes++
	}
	b.pools = make([]sync.Pool, classes)
	return b
}

// Size is the size of the buffer Get gives for n bytes: the least class that holds n, at most
// the largest; for n < 0 (unknown) the largest.
func (b *Buffers) Size(n int64) int {
	_, size := b.class(n)
	return size
}

func (b *Buffers) class(n int64) (int, int) {
	size := SizeClass(n, b.least, b.largest)
	i := 0
	for s := b.least; s < size; s *= 2 {
		i++
	}
	return i, size
}

// SizeClass is the size of the buffer Buffers of least to largest bytes give for n bytes: the
// least power of two from least on that holds n, at most largest; for n < 0 (unknown) largest.
func SizeClass(n int64, least, largest int) int {
	if n < 0 || n >= int64(largest) {
		return largest
	}
	s := 1
	for s < least {
		s *= 2
	}
	for int64(s) < n {
		s *= 2
	}
	return min(s, largest)
}

// Get is a buffer of Size(n) bytes.
func (b *Buffers) Get(n int64) *[]byte {
	i, size := b.class(n)
	if p, ok := b.pools[i].Get().(*[]byte); ok {
		return p
	}
	buf := make([]byte, size)
	return &buf
}

// Put takes back a buffer Get gave.
func (b *Buffers) Put(p *[]byte) {
	i, size := b.class(int64(len(*p)))
	if size == len(*p) {
		b.pools[i].Put(p)
	}
}
