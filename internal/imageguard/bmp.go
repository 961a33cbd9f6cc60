package imageguard

import "encoding/binary"

// BMP (Microsoft's DIB formats, as libmagic and mimetype know them): a 14-byte file header
// ("BM", the file size, two reserved words, the pixels' offset), then the DIB header, whose
// first four bytes are its own size. The 12-byte BITMAPCOREHEADER holds the width and height as
// 16-bit words; every larger one (OS/2 2.x's 16 to 64 bytes, BITMAPINFOHEADER's 40,
// Photoshop's 52 and 56, V4's 108, V5's 124) as signed 32-bit values, a negative height meaning
// rows stored top-down. One image, no metadata that carries a location: nothing is removed.

// bmpHeaderSizes are the DIB header sizes a BMP may have.
var bmpHeaderSizes = map[uint32]bool{12: true, 16: true, 24: true, 40: true, 48: true, 52: true, 56: true, 64: true, 108: true, 124: true}

// isBMP says whether head starts a BMP: "BM" and a DIB header of a known size.
func isBMP(head []byte) bool {
	return len(head) >= 18 && hasPrefix(head, "BM") && bmpHeaderSizes[binary.LittleEndian.Uint32(head[14:])]
}

func guardBMP(s *source, opts Options) (Result, error) {
	const f = "BMP"
	b, err := s.take(14 + 12)
	if err != nil {
		return Result{}, truncation(f, err, "the header")
	}
	w, h := dibSize(b[14:])
	if err := opts.checkSize(f, w, h); err != nil {
		return Result{}, err
	}
	return Result{Prefix: s.win, Rest: s.r, Removed: "none", Format: "bmp", Width: w, Height: h}, nil
}

// dibSize reads the width and height of a DIB header (at least 12 bytes): a negative height
// is a top-down image of that many rows; a negative width is returned as it is, for the
// caller's check to refuse.
func dibSize(d []byte) (w, h int64) {
	le := binary.LittleEndian
	if le.Uint32(d) == 12 {
		return int64(le.Uint16(d[4:])), int64(le.Uint16(d[6:]))
	}
	w, h = int64(int32(le.Uint32(d[4:]))), int64(int32(le.Uint32(d[8:])))
	return w, max(h, -h)
}
