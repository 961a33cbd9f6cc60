package imageguard

import "encoding/binary"

// GIF (GIF89a §18): the 6-byte signature, then the logical screen descriptor, whose first
// four bytes are the canvas width and height. GIF carries no EXIF: it passes on unchanged.
// Only the logical screen is checked; frames are drawn inside it.
func guardGIF(s *source, opts Options) (Result, error) {
	const f = "GIF"
	b, err := s.take(10)
	if err != nil {
		return Result{}, truncation(f, err, "the logical screen descriptor")
	}
	w, h := int64(binary.LittleEndian.Uint16(b[6:])), int64(binary.LittleEndian.Uint16(b[8:]))
	if err := opts.checkSize(f, w, h); err != nil {
		return Result{}, err
	}
	return Result{Prefix: s.win, Rest: s.r, Removed: "none", Format: "gif", Width: w, Height: h}, nil
}
