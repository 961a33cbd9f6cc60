package imageguard

import "encoding/binary"

// PSD and PSB (Adobe's Photoshop File Formats Specification): "8BPS", a version (1 for PSD, 2
// for PSB, the large document format), six reserved bytes, the number of channels, then the
// canvas's height and width as 32-bit big-endian values (at most 30,000 a side in a PSD and
// 300,000 in a PSB). The canvas is checked; what follows passes unchanged.

func guardPSD(s *source, opts Options) (Result, error) {
	const f = "PSD"
	b, err := s.take(26)
	if err != nil {
		return Result{}, truncation(f, err, "the header")
	}
	if v := binary.BigEndian.Uint16(b[4:]); v != 1 && v != 2 {
		return Result{}, malformed(f, "version %d (want 1 or 2)", v)
	}
	h, w := int64(binary.BigEndian.Uint32(b[14:])), int64(binary.BigEndian.Uint32(b[18:]))
	if err := opts.checkSize(f, w, h); err != nil {
		return Result{}, err
	}
	return Result{Prefix: s.win, Rest: s.r, Removed: "none", Format: "psd", Width: w, Height: h}, nil
}
