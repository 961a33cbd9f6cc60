package imageguard

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// WebP (RFC 9649): "RIFF", a little-endian size of what follows, "WEBP", then chunks of a
// FourCC, a little-endian size and the payload, padded to an even length. A simple file is
// one VP8 or VP8L chunk; an extended one starts with VP8X (flags, canvas size) and may carry
// ICCP, ANIM/ANMF, ALPH, the image, then EXIF and XMP.

const (
	vp8xFlagXMP = 0x04
)

func guardWebP(s *source, opts Options) (Result, error) {
	const f = "WebP"
	b, err := s.take(12 + 8)
	if err != nil {
		return Result{}, truncation(f, err, "the header")
	}
	riffLeft := int64(binary.LittleEndian.Uint32(b[4:])) - 4 // after "WEBP"
	if riffLeft < 8 {
		return Result{}, malformed(f, "RIFF size %d", riffLeft+4)
	}
	fourcc := string(b[12:16])
	size := int64(binary.LittleEndian.Uint32(b[16:]))
	padded := size + size&1
	if 8+padded > riffLeft {
		return Result{}, malformed(f, "chunk %q runs past the RIFF size", printable(fourcc))
	}
	var w, h int64
	var prefix []byte
	cw := &chunkWalker{src: s, format: f, next: func(cw *chunkWalker) error { return webpNext(cw, &riffLeft, opts) }}
	riffLeft -= 8 + padded
	switch fourcc {
	case "VP8X":
		if size < 10 {
			return Result{}, malformed(f, "VP8X chunk of %d bytes", size)
		}
		p, err := s.take(int(padded))
		if err != nil {
			return Result{}, truncation(f, err, "the VP8X chunk")
		}
		w = int64(uint32(p[4])|uint32(p[5])<<8|uint32(p[6])<<16) + 1
		h = int64(uint32(p[7])|uint32(p[8])<<8|uint32(p[9])<<16) + 1
		prefix = s.win[:s.pos:s.pos]
		if opts.Strip == StripAll && p[0]&vp8xFlagXMP != 0 {
			prefix = bytes.Clone(prefix)
			prefix[20] &^= vp8xFlagXMP
		}
	case "VP8 ", "VP8L":
		if err := s.fill(10); err != nil {
			return Result{}, truncation(f, err, "the image header")
		}
		p := s.unread()
		if fourcc == "VP8L" {
			if size < 5 || p[0] != 0x2f {
				return Result{}, malformed(f, "VP8L chunk without its signature")
			}
			bits := binary.LittleEndian.Uint32(p[1:])
			w, h = int64(bits&0x3fff)+1, int64(bits>>14&0x3fff)+1
		} else {
			if size < 10 || p[0]&1 != 0 || string(p[3:6]) != "\x9d\x01\x2a" {
				return Result{}, malformed(f, "VP8 chunk without a key frame header")
			}
			w, h = int64(binary.LittleEndian.Uint16(p[6:])&0x3fff), int64(binary.LittleEndian.Uint16(p[8:])&0x3fff)
		}
		prefix = s.win[:s.pos:s.pos]
		cw.pass = padded
		cw.image = true
	default:
		return Result{}, malformed(f, "first chunk %q is not VP8, VP8L or VP8X", printable(fourcc))
	}
	if err := opts.checkSize(f, w, h); err != nil {
		return Result{}, err
	}
	res := Result{Removed: removed(opts), Format: "webp", Width: w, Height: h}
	if opts.Strip == StripOff {
		res.Prefix, res.Rest = s.win, s.r
		return res, nil
	}
	more, err := cw.eager(s)
	if err != nil {
		return Result{}, err
	}
	res.Prefix = append(prefix, more...)
	res.Rest, res.Wrapped = cw, true
	return res, nil
}

// webpNext reads the next chunk's header and decides what becomes of it. left is what the
// RIFF size leaves after the chunks walked so far; past it, the file's trailing bytes pass on.
func webpNext(w *chunkWalker, left *int64, opts Options) error {
	const f = "WebP"
	if *left == 0 {
		w.tail = true
		return nil
	}
	hdr := w.hdr[:]
	if err := w.readFull(hdr, "the RIFF chunks"); err != nil {
		return err
	}
	fourcc := string(hdr[:4])
	size := int64(binary.LittleEndian.Uint32(hdr[4:]))
	padded := size + size&1
	if 8+padded > *left {
		return malformed(f, "chunk %q runs past the RIFF size", printable(fourcc))
	}
	*left -= 8 + padded
	switch fourcc {
	case "VP8X":
		return malformed(f, "a second VP8X chunk")
	case "VP8 ", "VP8L", "ALPH", "ANIM", "ANMF":
		w.image = true
	case "EXIF", "XMP ":
		if padded > int64(opts.MaxMetadataBytes) {
			return fmtTooLarge(f, fourcc, size, opts.MaxMetadataBytes)
		}
		chunk := make([]byte, 8+padded)
		copy(chunk, hdr)
		if err := w.readFull(chunk[8:], "chunk "+fourcc); err != nil {
			return err
		}
		if err := webpRewrite(chunk, size, opts.Strip); err != nil {
			return err
		}
		w.out = chunk
		return nil
	}
	w.out = hdr
	w.pass = padded
	return nil
}

// webpRewrite overwrites an EXIF or XMP chunk in place: the RIFF size already went out.
func webpRewrite(chunk []byte, size int64, mode Mode) error {
	data := chunk[8 : 8+size]
	junk := func() {
		copy(chunk, "JUNK")
		clear(data)
	}
	if string(chunk[:4]) == "XMP " {
		if mode == StripAll || bytes.Contains(data, []byte("GPS")) {
			junk()
		}
		return nil
	}
	tiff := data
	if bytes.HasPrefix(tiff, []byte("Exif\x00\x00")) { // some writers keep JPEG's APP1 header
		tiff = tiff[6:]
	}
	out, changed, err := rewriteExif(tiff, mode, "WebP")
	switch {
	case err != nil:
		return err
	case !changed:
	case out == nil || len(out) > len(tiff):
		junk()
	default:
		clear(tiff)
		copy(tiff, out)
	}
	return nil
}

func fmtTooLarge(format, chunk string, n int64, limit int) error {
	return fmt.Errorf("%w: %s chunk %q of %d bytes (at most %d)", ErrMetadataTooLarge, format, printable(chunk), n, limit)
}
