package imageguard

import (
	"encoding/binary"
	"math"
)

// ISO base media file format (ISO/IEC 14496-12 §4.2): a file is a sequence of boxes, each a
// 4-byte big-endian size that counts the whole box, a 4-letter type, then (size 1) a 64-bit
// size, or (size 0) "to the end of the file or of the enclosing box". A full box starts its
// payload with a version byte and 24 bits of flags.

// isoBox is one box found inside a payload held in memory.
type isoBox struct {
	typ     string
	payload []byte // without the header
	at      int    // offset of the payload in the bytes walked
	hdr     int    // the header's length: the type is at at-hdr+4
}

// isoChildren walks the boxes that fill b exactly.
func isoChildren(f string, b []byte, base int) ([]isoBox, error) {
	var boxes []isoBox
	for p := 0; p < len(b); {
		if len(b)-p < 8 {
			return nil, malformed(f, "%d stray bytes after the last box", len(b)-p)
		}
		size := uint64(binary.BigEndian.Uint32(b[p:]))
		typ := string(b[p+4 : p+8])
		hdr := 8
		switch size {
		case 0:
			size = uint64(len(b) - p)
		case 1:
			if len(b)-p < 16 {
				return nil, malformed(f, "box %q cut short", printable(typ))
			}
			size, hdr = binary.BigEndian.Uint64(b[p+8:]), 16
		}
		if size < uint64(hdr) || size > uint64(len(b)-p) {
			return nil, malformed(f, "box %q of %d bytes in %d", printable(typ), size, len(b)-p)
		}
		boxes = append(boxes, isoBox{typ: typ, payload: b[p+hdr : p+int(size)], at: base + p + hdr, hdr: hdr})
		p += int(size)
	}
	return boxes, nil
}

// isoReader reads the fields of one box's payload; the first read past the end sets short,
// and every later read gives zeros.
type isoReader struct {
	b     []byte
	p     int
	short bool
}

func (r *isoReader) bytes(n int) []byte {
	if r.short || n < 0 || len(r.b)-r.p < n {
		r.short = true
		return make([]byte, max(n, 0))
	}
	b := r.b[r.p : r.p+n]
	r.p += n
	return b
}

func (r *isoReader) u8() uint8   { return r.bytes(1)[0] }
func (r *isoReader) u16() uint16 { return binary.BigEndian.Uint16(r.bytes(2)) }
func (r *isoReader) u32() uint32 { return binary.BigEndian.Uint32(r.bytes(4)) }

// uint reads an n-byte unsigned field, n being 0, 4 or 8 (ISO 14496-12's iloc sizes; 2 too).
func (r *isoReader) uint(n int) uint64 {
	switch n {
	case 0:
		return 0
	case 2:
		return uint64(r.u16())
	case 4:
		return uint64(r.u32())
	case 8:
		return binary.BigEndian.Uint64(r.bytes(8))
	}
	r.short = true
	return 0
}

// str reads a null-terminated UTF-8 string.
func (r *isoReader) str() string {
	if r.short {
		return ""
	}
	for i := r.p; i < len(r.b); i++ {
		if r.b[i] == 0 {
			s := string(r.b[r.p:i])
			r.p = i + 1
			return s
		}
	}
	r.short = true
	return ""
}

// addOffset adds two file offsets, or reports that they overflow what a file can hold.
func addOffset(a, b uint64) (uint64, bool) {
	if a > math.MaxInt64/2 || b > math.MaxInt64/2 {
		return 0, false
	}
	return a + b, true
}
