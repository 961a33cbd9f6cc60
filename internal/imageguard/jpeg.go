package imageguard

import (
	"bytes"
	"encoding/binary"
)

// JPEG (ITU T.81 Annex B): SOI, then marker segments (0xFF, a marker byte, a 2-byte length
// that counts itself, the payload) up to SOS, whose header is followed by entropy-coded data.
// Between segments, any number of 0xFF fill bytes may come before a marker.

const (
	mSOI  = 0xD8
	mEOI  = 0xD9
	mSOS  = 0xDA
	mAPP0 = 0xE0
	mAPP1 = 0xE1
	mAPP2 = 0xE2
	mAPP3 = 0xE3
	mAP13 = 0xED
	mAP14 = 0xEE
	mAP15 = 0xEF
	mCOM  = 0xFE
)

// isSOF says whether m starts a frame: SOF0-SOF15 except DHT (C4), JPG (C8) and DAC (CC).
func isSOF(m byte) bool { return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC }

func guardJPEG(s *source, opts Options) (Result, error) {
	const f = "JPEG"
	if _, err := s.take(2); err != nil { // SOI, checked by Guard
		return Result{}, truncation(f, err, "the SOI marker")
	}
	out := []byte{0xFF, mSOI}
	changed, haveSOF := false, false
	wroteExif := false
	var ext []extSegment // ExtendedXMP kept so far (StripGPS): xmpext.go
	var w, h int64
	for {
		start := s.pos
		b, err := s.take(2)
		if err != nil {
			return Result{}, truncation(f, err, "a marker")
		}
		if b[0] != 0xFF {
			return Result{}, malformed(f, "byte 0x%02X where a marker should start, at offset %d", b[0], start)
		}
		m := b[1]
		for m == 0xFF { // fill bytes
			c, err := s.take(1)
			if err != nil {
				return Result{}, truncation(f, err, "fill bytes")
			}
			m = c[0]
		}
		switch {
		case m == 0x00 || m == 0x01 || m >= 0xD0 && m <= mEOI:
			return Result{}, malformed(f, "marker 0xFF%02X before the image data", m)
		}
		lb, err := s.take(2)
		if err != nil {
			return Result{}, truncation(f, err, "a segment length")
		}
		n := int(binary.BigEndian.Uint16(lb))
		if n < 2 {
			return Result{}, malformed(f, "segment 0xFF%02X with length %d", m, n)
		}
		payload, err := s.take(n - 2)
		if err != nil {
			return Result{}, truncation(f, err, "segment 0xFF"+hex2(m))
		}
		seg := s.win[start:s.pos]
		keep := true
		switch {
		case m == mSOS:
			if !haveSOF {
				return Result{}, malformed(f, "no frame header (SOF) before the image data")
			}
			if len(ext) > 0 {
				var dropped bool
				out, dropped = dropExtendedXMP(out, ext)
				changed = changed || dropped
			}
			if opts.Strip == StripOff || !changed {
				return Result{Prefix: s.win, Rest: s.r, Removed: removed(opts), Format: "jpeg", Width: w, Height: h}, nil
			}
			out = append(out, seg...)
			out = append(out, s.unread()...)
			return Result{Prefix: out, Rest: s.r, Removed: removed(opts), Format: "jpeg", Width: w, Height: h}, nil
		case isSOF(m):
			if haveSOF {
				return Result{}, malformed(f, "two frame headers (SOF markers) before the image data")
			}
			if len(payload) < 6 {
				return Result{}, malformed(f, "frame header of %d bytes", len(payload))
			}
			haveSOF = true
			h = int64(binary.BigEndian.Uint16(payload[1:]))
			w = int64(binary.BigEndian.Uint16(payload[3:]))
			if err := opts.checkSize(f, w, h); err != nil {
				return Result{}, err
			}
			if opts.Strip == StripOff { // the size is all that is needed
				return Result{Prefix: s.win, Rest: s.r, Removed: "none", Format: "jpeg", Width: w, Height: h}, nil
			}
		case opts.Strip == StripOff:
		case m == mAPP1 && len(payload) >= 6 && string(payload[:5]) == "Exif\x00":
			tiff, ch, err := rewriteExif(payload[6:], opts.Strip, f)
			if err != nil {
				return Result{}, err
			}
			if ch {
				keep = false
				changed = true
				if tiff != nil && !wroteExif {
					wroteExif = true
					out = appendSegment(out, mAPP1, payload[:6], tiff)
				}
			}
		case opts.Strip == StripGPS:
			if m == mAPP1 && bytes.HasPrefix(payload, []byte(xmpExtension)) { // decided at SOS
				ext = append(ext, extSegment{at: len(out), n: len(seg), payload: payload[len(xmpExtension):]})
			} else if m == mAPP1 && bytes.Contains(payload, []byte("GPS")) { // XMP with GPS in it
				keep = false
				changed = true
			}
		case m == mAPP0, m == mAP14,
			m == mAPP2 && bytes.HasPrefix(payload, []byte("ICC_PROFILE\x00")):
		case m >= mAPP1 && m <= mAP15, m == mCOM:
			keep = false
			changed = true
		}
		if keep {
			out = append(out, seg...)
		}
	}
}

func appendSegment(out []byte, marker byte, parts ...[]byte) []byte {
	n := 2
	for _, p := range parts {
		n += len(p)
	}
	out = append(out, 0xFF, marker, byte(n>>8), byte(n))
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func hex2(b byte) string {
	const digits = "0123456789ABCDEF"
	return string([]byte{digits[b>>4], digits[b&15]})
}

func removed(opts Options) string {
	if opts.Strip == StripOff {
		return "none"
	}
	return string(opts.Strip)
}
