package imageguard

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
)

// PNG (W3C PNG 3rd edition §5): the 8-byte signature, then chunks of a 4-byte big-endian
// length, a 4-letter type, the data and a CRC-32 of type and data. IHDR comes first and holds
// the size; IEND comes last. Text (tEXt, zTXt, iTXt), eXIf and tIME may come before or after
// the image data (IDAT).

const pngSignature = "\x89PNG\r\n\x1a\n"

func guardPNG(s *source, opts Options) (Result, error) {
	const f = "PNG"
	b, err := s.take(8 + 8 + 13 + 4)
	if err != nil {
		return Result{}, truncation(f, err, "the header")
	}
	if binary.BigEndian.Uint32(b[8:]) != 13 || string(b[12:16]) != "IHDR" {
		return Result{}, malformed(f, "the first chunk is not a 13-byte IHDR")
	}
	w, h := int64(binary.BigEndian.Uint32(b[16:])), int64(binary.BigEndian.Uint32(b[20:]))
	if w > 1<<31-1 || h > 1<<31-1 {
		return Result{}, malformed(f, "IHDR gives a size of %d × %d", w, h)
	}
	if err := opts.checkSize(f, w, h); err != nil {
		return Result{}, err
	}
	res := Result{Removed: removed(opts), Format: "png", Width: w, Height: h}
	st := &pngState{opts: opts}
	cw := &chunkWalker{src: s, format: f, next: st.next, state: st}
	prefix, err := cw.eager(s)
	if err != nil {
		return Result{}, err
	}
	if opts.Strip == StripOff && !st.animated {
		// Nothing to remove, no frames to count: the rest goes on through rest itself.
		res.Prefix = slices.Concat(b, prefix, s.unread())
		res.Rest = s.r
		return res, nil
	}
	res.Prefix = append(b[:len(b):len(b)], prefix...)
	res.Rest, res.Wrapped = cw, true
	return res, nil
}

// pngState is what the walk of one PNG has seen.
type pngState struct {
	opts     Options
	meta     int64 // bytes of the metadata chunks held so far
	animated bool  // an acTL came before the image data: an APNG
	image    bool  // past the first IDAT
	frames   frameCount
}

// next reads the next chunk's header and decides what becomes of it.
func (st *pngState) next(w *chunkWalker) error {
	const f = "PNG"
	opts := st.opts
	hdr := w.hdr[:]
	if err := w.readFull(hdr, "the chunk list (no IEND)"); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr)
	typ := string(hdr[4:])
	if n > 1<<31-1 {
		return malformed(f, "chunk %q with length %d", printable(typ), n)
	}
	for _, c := range []byte(typ) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return malformed(f, "chunk type %q is not four letters", printable(typ))
		}
	}
	switch typ {
	case "IHDR":
		return malformed(f, "a second IHDR chunk")
	case "IDAT":
		w.image, st.image = true, true
	case "IEND":
		w.tail = true
	case "acTL", "fcTL":
		return st.animation(w, typ == "fcTL", n)
	case "eXIf", "tEXt", "zTXt", "iTXt", "tIME":
		if opts.Strip == StripOff || typ == "tIME" && opts.Strip != StripAll {
			break
		}
		if int64(n) > int64(opts.MaxMetadataBytes) {
			return fmtTooLarge(f, typ, int64(n), opts.MaxMetadataBytes)
		}
		if st.meta += int64(n); st.meta > int64(opts.MaxMetadataBytes) {
			return fmt.Errorf("%w: PNG metadata chunks of more than %d bytes in all", ErrMetadataTooLarge, opts.MaxMetadataBytes)
		}
		chunk := make([]byte, 8+int(n)+4)
		copy(chunk, hdr)
		if err := w.readFull(chunk[8:], "chunk "+typ); err != nil {
			return err
		}
		out, err := pngRewrite(typ, chunk, opts.Strip)
		if err != nil {
			return err
		}
		w.out = out
		return nil
	}
	w.out = hdr
	w.pass = int64(n) + 4
	return nil
}

// animation reads APNG's chunks (APNG 1.0, now in PNG 3rd edition §11.3.6): acTL, before the
// first IDAT, makes the file animated and says how many frames it has; each fcTL gives a
// frame's size and position (width, height, x and y offsets as 32-bit values after a sequence
// number), checked and counted. An fcTL is checked even without an acTL.
func (st *pngState) animation(w *chunkWalker, fctl bool, n uint32) error {
	const f = "PNG"
	typ, want := "acTL", uint32(8) // (not the chunk's own type string: it would escape, for every chunk)
	if fctl {
		typ, want = "fcTL", 26
	}
	if n != want {
		return malformed(f, "%s chunk of %d bytes (want %d)", typ, n, want)
	}
	chunk := make([]byte, 8+n+4)
	copy(chunk, w.hdr[:])
	if err := w.readFull(chunk[8:], "chunk "+typ); err != nil {
		return err
	}
	w.out = chunk
	d := chunk[8 : 8+n]
	be := binary.BigEndian
	if !fctl {
		st.animated = st.animated || !st.image // after the image data it is ignored, as decoders do
		return st.opts.declared(int64(be.Uint32(d)))
	}
	fw, fh := int64(be.Uint32(d[4:])), int64(be.Uint32(d[8:]))
	x, y := int64(be.Uint32(d[12:])), int64(be.Uint32(d[16:]))
	return st.frames.frame(st.opts, f, x, y, fw, fh)
}

// pngRewrite gives what replaces a whole metadata chunk: itself, nothing, or a new chunk.
func pngRewrite(typ string, chunk []byte, mode Mode) ([]byte, error) {
	data := chunk[8 : len(chunk)-4]
	switch typ {
	case "eXIf":
		tiff, changed, err := rewriteExif(data, mode, "PNG")
		switch {
		case err != nil:
			return nil, err
		case !changed:
			return chunk, nil
		case tiff == nil:
			return nil, nil
		}
		return pngChunk("eXIf", tiff), nil
	case "tEXt", "zTXt", "iTXt":
		if mode == StripAll || pngTextHasGPS(typ, data) {
			return nil, nil
		}
	case "tIME":
		if mode == StripAll {
			return nil, nil
		}
	}
	return chunk, nil
}

// pngTextHasGPS says whether a text chunk may carry a location: its keyword mentions GPS, it is
// one of ImageMagick's raw profiles of EXIF or XMP (hex-encoded blocks), or it is XMP that
// mentions GPS or is compressed (so cannot be read without inflating it).
func pngTextHasGPS(typ string, data []byte) bool {
	key, text, _ := bytes.Cut(data, []byte{0})
	lower := bytes.ToLower(key)
	switch {
	case bytes.Contains(lower, []byte("gps")),
		bytes.HasPrefix(lower, []byte("raw profile type exif")),
		bytes.HasPrefix(lower, []byte("raw profile type app1")),
		bytes.HasPrefix(lower, []byte("raw profile type xmp")):
		return true
	case typ == "zTXt":
		return bytes.Equal(key, []byte("XML:com.adobe.xmp"))
	case typ == "iTXt":
		compressed := len(text) > 0 && text[0] != 0
		return compressed || bytes.Contains(text, []byte("GPS"))
	}
	return bytes.Contains(text, []byte("GPS")) && bytes.Equal(key, []byte("XML:com.adobe.xmp"))
}

// pngChunk builds a chunk with its CRC.
func pngChunk(typ string, data []byte) []byte {
	c := make([]byte, 8, 8+len(data)+4)
	binary.BigEndian.PutUint32(c, uint32(len(data)))
	copy(c[4:], typ)
	c = append(c, data...)
	return binary.BigEndian.AppendUint32(c, crc32.ChecksumIEEE(c[4:]))
}

func printable(s string) string {
	return string(bytes.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, []byte(s)))
}
