package imageguard

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
)

// WebP (RFC 9649): "RIFF", a little-endian size of what follows, "WEBP", then chunks of a
// FourCC, a little-endian size and the payload, padded to an even length. A simple file is
// one VP8 or VP8L chunk; an extended one starts with VP8X (flags, canvas size) and may carry
// ICCP, ANIM/ANMF, ALPH, the image, then EXIF and XMP.

const (
	vp8xFlagXMP       = 0x04
	vp8xFlagAnimation = 0x02
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
	st := &webpState{opts: opts, left: riffLeft - (8 + padded)}
	cw := &chunkWalker{src: s, format: f, next: st.next, state: st}
	extended := fourcc == "VP8X"
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
		st.animated = p[0]&vp8xFlagAnimation != 0
		prefix = s.win[:s.pos:s.pos]
		if opts.Strip == StripAll && p[0]&vp8xFlagXMP != 0 {
			prefix = bytes.Clone(prefix)
			prefix[20] &^= vp8xFlagXMP
		}
	case "VP8 ", "VP8L":
		if err := s.fill(10); err != nil {
			return Result{}, truncation(f, err, "the image header")
		}
		if w, h, err = bitstreamSize(fourcc == "VP8L", size, s.unread()); err != nil {
			return Result{}, err
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
	if opts.Strip == StripOff && !extended {
		res.Prefix, res.Rest = s.win, s.r
		return res, nil
	}
	// An extended file is walked to its image (or first frame) in every mode: the size of
	// what a decoder draws is in there, not in the canvas.
	more, err := cw.eager(s)
	if err != nil {
		return Result{}, err
	}
	if opts.Strip == StripOff && !st.animated && !st.anmf && st.frames.n == 1 {
		// Nothing to remove, no frames to count, the image's size read (not an ALPH chunk
		// first): the rest goes on through rest itself.
		res.Prefix = slices.Concat(prefix, more, s.unread())
		res.Rest = s.r
		return res, nil
	}
	res.Prefix = append(prefix, more...)
	res.Rest, res.Wrapped = cw, true
	return res, nil
}

// bitstreamSize reads the size of a VP8 key frame (RFC 6386 §9.1: three bytes of frame tag,
// the start code 9D 01 2A, then width and height in 14 bits each) or of a VP8L image (the
// signature 0x2F, then width-1 and height-1 in 14 bits each), from the first bytes of its
// chunk's payload (size long in all; p holds at least 10 bytes, or the whole payload). The
// chunk's type goes in as a bool: as a string taken from the header, it would escape.
func bitstreamSize(lossless bool, size int64, p []byte) (w, h int64, err error) {
	const f = "WebP"
	if lossless {
		if size < 5 || len(p) < 5 || p[0] != 0x2f {
			return 0, 0, malformed(f, "VP8L chunk without its signature")
		}
		bits := binary.LittleEndian.Uint32(p[1:])
		return int64(bits&0x3fff) + 1, int64(bits>>14&0x3fff) + 1, nil
	}
	if size < 10 || len(p) < 10 || p[0]&1 != 0 || string(p[3:6]) != "\x9d\x01\x2a" {
		return 0, 0, malformed(f, "VP8 chunk without a key frame header")
	}
	return int64(binary.LittleEndian.Uint16(p[6:]) & 0x3fff), int64(binary.LittleEndian.Uint16(p[8:]) & 0x3fff), nil
}

// webpState is what the walk of one WebP has seen.
type webpState struct {
	opts     Options
	left     int64 // what the RIFF size leaves after the chunks walked so far
	inFrame  int64 // bytes of the current ANMF frame's payload not yet walked
	meta     int64 // bytes of the metadata chunks held so far
	animated bool  // the VP8X animation flag
	anmf     bool  // an ANMF frame was met
	frames   frameCount
}

// next reads the next chunk's header and decides what becomes of it. Past the RIFF size, the
// file's trailing bytes pass on. An ANMF frame (RFC 9649 §2.7.1.1: x/2, y/2, width-1,
// height-1 in 24 bits each, a duration and flags, then its own chunks) is checked and counted,
// and its chunks are walked in turn: the size of its VP8 or VP8L bitstream is checked too, as
// is a still image's.
func (st *webpState) next(w *chunkWalker) error {
	const f = "WebP"
	opts := st.opts
	if st.inFrame > 0 {
		return st.frameChunk(w)
	}
	if st.left == 0 {
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
	if 8+padded > st.left {
		return malformed(f, "chunk %q runs past the RIFF size", printable(fourcc))
	}
	st.left -= 8 + padded
	switch fourcc {
	case "VP8X":
		return malformed(f, "a second VP8X chunk")
	case "VP8 ", "VP8L":
		w.image = true
		return st.bitstream(w, fourcc == "VP8L", size, padded, true)
	case "ANMF":
		w.image = true
		if padded < 16 {
			return malformed(f, "ANMF chunk of %d bytes", size)
		}
		d := make([]byte, 8+16)
		copy(d, hdr)
		if err := w.readFull(d[8:], "an ANMF frame header"); err != nil {
			return err
		}
		w.out = d
		u24 := func(b []byte) int64 { return int64(b[0]) | int64(b[1])<<8 | int64(b[2])<<16 }
		x, y, fw, fh := 2*u24(d[8:]), 2*u24(d[11:]), u24(d[14:])+1, u24(d[17:])+1
		st.inFrame, st.anmf = padded-16, true
		return st.frames.frame(opts, f, x, y, fw, fh)
	case "ALPH", "ANIM":
		w.image = true
	case "EXIF", "XMP ":
		if opts.Strip == StripOff {
			break
		}
		if padded > int64(opts.MaxMetadataBytes) {
			return fmtTooLarge(f, fourcc, size, opts.MaxMetadataBytes)
		}
		if st.meta += padded; st.meta > int64(opts.MaxMetadataBytes) {
			return fmt.Errorf("%w: WebP metadata chunks of more than %d bytes in all", ErrMetadataTooLarge, opts.MaxMetadataBytes)
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

// frameChunk walks the next chunk inside an ANMF frame.
func (st *webpState) frameChunk(w *chunkWalker) error {
	const f = "WebP"
	if st.inFrame < 8 {
		return malformed(f, "an ANMF frame ends inside a chunk header")
	}
	hdr := w.hdr[:]
	if err := w.readFull(hdr, "an ANMF frame"); err != nil {
		return err
	}
	fourcc := string(hdr[:4])
	size := int64(binary.LittleEndian.Uint32(hdr[4:]))
	padded := size + size&1
	if 8+padded > st.inFrame {
		return malformed(f, "chunk %q runs past its ANMF frame", printable(fourcc))
	}
	st.inFrame -= 8 + padded
	if fourcc == "VP8 " || fourcc == "VP8L" {
		return st.bitstream(w, fourcc == "VP8L", size, padded, false)
	}
	w.out = hdr
	w.pass = padded
	return nil
}

// bitstream reads the start of a VP8 or VP8L chunk whose header is in w.hdr, checks the size
// it gives (and counts it as a frame when it stands alone, not in an ANMF), and passes the
// rest of the chunk.
func (st *webpState) bitstream(w *chunkWalker, lossless bool, size, padded int64, alone bool) error {
	const f = "WebP"
	n := min(padded, 10)
	d := make([]byte, 8+n)
	copy(d, w.hdr[:])
	if err := w.readFull(d[8:], "an image chunk"); err != nil {
		return err
	}
	w.out = d
	w.pass = padded - n
	bw, bh, err := bitstreamSize(lossless, size, d[8:])
	if err != nil {
		return err
	}
	if alone {
		return st.frames.frame(st.opts, f, 0, 0, bw, bh)
	}
	return st.opts.checkSize(f, bw, bh)
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
