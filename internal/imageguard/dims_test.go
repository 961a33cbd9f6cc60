package imageguard

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image/png"
	"io"
	"slices"
	"strings"
	"testing"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
)

// The formats measured besides JPEG, PNG, GIF and WebP, and the frames of animations: each
// hostile file is a few bytes of header claiming a size, built here.

// bmpHeader is a BMP file header and a BITMAPINFOHEADER claiming w × h, with no pixels.
func bmpHeader(w, h int32) []byte {
	b := make([]byte, 14+40)
	copy(b, "BM")
	le := binary.LittleEndian
	le.PutUint32(b[2:], uint32(len(b)))
	le.PutUint32(b[10:], uint32(len(b)))
	le.PutUint32(b[14:], 40)
	le.PutUint32(b[18:], uint32(w))
	le.PutUint32(b[22:], uint32(h))
	le.PutUint16(b[26:], 1)  // planes
	le.PutUint16(b[28:], 24) // bits per pixel
	return b
}

// tiffPage is an IFD of one page of w × h (and a strip of one byte at off 8, for form), whose
// next IFD is at next.
func tiffPage(bo binary.AppendByteOrder, w, h uint32, next uint32) []byte {
	entries := []struct {
		tag, typ uint16
		v        uint32
	}{{256, 4, w}, {257, 4, h}, {258, 3, 8}, {259, 3, 1}, {262, 3, 1}, {273, 4, 8}, {278, 4, h}, {279, 4, 1}}
	b := bo.AppendUint16(nil, uint16(len(entries)))
	for _, e := range entries {
		b = bo.AppendUint16(b, e.tag)
		b = bo.AppendUint16(b, e.typ)
		b = bo.AppendUint32(b, 1)
		if e.typ == 3 {
			b = bo.AppendUint16(b, uint16(e.v))
			b = append(b, 0, 0)
		} else {
			b = bo.AppendUint32(b, e.v)
		}
	}
	return bo.AppendUint32(b, next)
}

// tiffFile is a TIFF of pages of the sizes given, each IFD after gap bytes of data.
func tiffFile(bo binary.AppendByteOrder, gap int, sizes ...[2]uint32) []byte {
	b := []byte("II*\x00")
	if bo == binary.BigEndian {
		b = []byte("MM\x00*")
	}
	b = bo.AppendUint32(b, uint32(8+gap))
	for i, s := range sizes {
		b = append(b, make([]byte, gap)...)
		next := uint32(0)
		if i < len(sizes)-1 {
			next = uint32(len(b) + len(tiffPage(bo, 1, 1, 0)) + gap)
		}
		b = append(b, tiffPage(bo, s[0], s[1], next)...)
	}
	return b
}

// tiffSubIFDs is a little-endian TIFF whose IFD0 (8 × 8) has SubIFDs of the sizes given, after
// gap bytes: one offset in the entry itself, or an array of them.
func tiffSubIFDs(gap int, sizes ...[2]uint32) []byte {
	le := binary.LittleEndian
	ifd0 := func(count, value uint32) []byte {
		b := le.AppendUint16(nil, 3)
		for _, e := range [][4]uint32{{256, 4, 1, 8}, {257, 4, 1, 8}, {330, 4, count, value}} {
			b = le.AppendUint16(b, uint16(e[0]))
			b = le.AppendUint16(b, uint16(e[1]))
			b = le.AppendUint32(b, e[2])
			b = le.AppendUint32(b, e[3])
		}
		return le.AppendUint32(b, 0)
	}
	n := uint32(len(sizes))
	at := uint32(8 + len(ifd0(0, 0)) + gap) // the array, or the one SubIFD
	first := at
	if n > 1 {
		first += 4 * n
	}
	pageLen := uint32(len(tiffPage(le, 1, 1, 0)))
	value := first
	if n > 1 {
		value = at
	}
	b := append(le.AppendUint32([]byte("II*\x00"), 8), ifd0(n, value)...)
	b = append(b, make([]byte, gap)...)
	if n > 1 {
		for i := range n {
			b = le.AppendUint32(b, first+i*pageLen)
		}
	}
	for _, sz := range sizes {
		b = append(b, tiffPage(le, sz[0], sz[1], 0)...)
	}
	return b
}

func psdHeader(version uint16, w, h uint32) []byte {
	b := append([]byte("8BPS"), 0, byte(version), 0, 0, 0, 0, 0, 0, 0, 3)
	b = binary.BigEndian.AppendUint32(b, h)
	b = binary.BigEndian.AppendUint32(b, w)
	b = append(b, 0, 8, 0, 3)             // depth, colour mode RGB
	return append(b, make([]byte, 12)...) // empty colour mode data, resources, layers
}

// psdLayers is a PSD of w × h with resources of gap bytes and one layer per rectangle (top,
// left, bottom, right), each of 3 channels with 2 bytes of data each and a name.
func psdLayers(w, h uint32, gap int, rects ...[4]int32) []byte {
	be := binary.BigEndian
	var recs, data []byte
	for _, r := range rects {
		for _, v := range r {
			recs = be.AppendUint32(recs, uint32(v))
		}
		recs = be.AppendUint16(recs, 3)
		for id := range 3 {
			recs = be.AppendUint16(recs, uint16(id))
			recs = be.AppendUint32(recs, 2)
			data = append(data, 0, 0) // raw, no rows
		}
		recs = append(recs, "8BIMnorm\xff\x00\x00\x00"...)
		extra := []byte{0, 0, 0, 0, 0, 0, 0, 0, 3, 'a', 'b', 'c'} // no mask, no blending ranges, a name
		recs = be.AppendUint32(recs, uint32(len(extra)))
		recs = append(recs, extra...)
	}
	info := be.AppendUint16(nil, uint16(len(rects)))
	info = append(append(info, recs...), data...)
	lm := be.AppendUint32(nil, uint32(len(info)))
	lm = append(append(lm, info...), 0, 0, 0, 0) // no global mask
	b := psdHeader(1, w, h)[:26]
	b = be.AppendUint32(b, 0)           // colour mode data
	b = be.AppendUint32(b, uint32(gap)) // image resources
	b = append(b, make([]byte, gap)...)
	b = be.AppendUint32(b, uint32(len(lm)))
	b = append(b, lm...)
	return append(b, 0, 0) // image data: raw
}

// icoFile is an ICO of the images given (PNG files or DIBs), each after gap bytes.
func icoFile(gap int, images ...[]byte) []byte {
	le := binary.LittleEndian
	b := le.AppendUint16([]byte{0, 0, 1, 0}, uint16(len(images)))
	off := 6 + 16*len(images)
	var data []byte
	for _, img := range images {
		off += gap
		b = append(b, 16, 16, 0, 0, 1, 0, 32, 0)
		b = le.AppendUint32(b, uint32(len(img)))
		b = le.AppendUint32(b, uint32(off))
		data = append(data, make([]byte, gap)...)
		data = append(data, img...)
		off += len(img)
	}
	return append(b, data...)
}

// apng is an animated PNG of n frames of w × h (the first is the default image), its fcTL
// chunks claiming fw × fh at (x, y) for the last frame.
func apng(t testing.TB, n int, w, h int, last [4]uint32) []byte {
	cs := pngChunks(t, encodePNG(t, w, h))
	be := binary.BigEndian
	fctl := func(seq uint32, fw, fh, x, y uint32) []byte {
		d := be.AppendUint32(nil, seq)
		d = be.AppendUint32(d, fw)
		d = be.AppendUint32(d, fh)
		d = be.AppendUint32(d, x)
		d = be.AppendUint32(d, y)
		d = append(d, 0, 1, 0, 10, 0, 0)
		return chunk("fcTL", d)
	}
	actl := be.AppendUint32(nil, uint32(n))
	actl = be.AppendUint32(actl, 0)
	out := slices.Concat([]byte(pngSignature), cs[0], chunk("acTL", actl))
	seq := uint32(0)
	frame := func(i int) [4]uint32 {
		if i == n-1 {
			return last
		}
		return [4]uint32{uint32(w), uint32(h), 0, 0}
	}
	for i := range n {
		f := frame(i)
		out = append(out, fctl(seq, f[0], f[1], f[2], f[3])...)
		seq++
		for _, c := range cs[1 : len(cs)-1] { // IDAT chunks
			if i == 0 {
				out = append(out, c...)
				continue
			}
			data := be.AppendUint32(nil, seq)
			seq++
			out = append(out, chunk("fdAT", append(data, c[8:len(c)-4]...))...)
		}
	}
	return append(out, cs[len(cs)-1]...)
}

// animWebP is an animated WebP on a canvas of cw × ch whose frames are VP8L images; frame gives
// each one's ANMF size and its bitstream's size.
func animWebP(cw, ch int, frames ...[4]int) []byte {
	chunks := [][]byte{vp8x(0x02, cw, ch), riffChunk("ANIM", make([]byte, 6))}
	for _, f := range frames {
		d := make([]byte, 16)
		put24 := func(b []byte, v int) { b[0], b[1], b[2] = byte(v), byte(v>>8), byte(v>>16) }
		put24(d[6:], f[0]-1)
		put24(d[9:], f[1]-1)
		put24(d[12:], 100)
		d = append(d, riffChunk("VP8L", vp8l(f[2], f[3], colorOf(9, 8, 7)))...)
		chunks = append(chunks, riffChunk("ANMF", d))
	}
	return riff(chunks...)
}

// gifFrames is a GIF of n frames of w × h with one byte of image data each (the guard does not
// decode LZW): the 5,000 frames of 7,000 × 7,000 of the attack are 90 KB.
func gifFrames(n int, w, h uint16) []byte {
	le := binary.LittleEndian
	b := le.AppendUint16([]byte("GIF89a"), w)
	b = le.AppendUint16(b, h)
	b = append(b, 0, 0, 0)
	for range n {
		b = append(b, 0x2C, 0, 0, 0, 0)
		b = le.AppendUint16(b, w)
		b = le.AppendUint16(b, h)
		b = append(b, 0, 2, 1, 0x44, 0)
	}
	return append(b, 0x3B)
}

func TestFormatsMeasured(t *testing.T) {
	pngIn := func(w, h uint32) []byte { // a PNG's signature and IHDR claiming w × h
		return pngBomb(t, w, h)[:33]
	}
	le := binary.LittleEndian
	dib := bmpHeader(0, 0)[14:]
	le.PutUint32(dib[4:], 60000)
	le.PutUint32(dib[8:], 120000) // twice the height: colour rows and mask
	cases := []struct {
		name string
		b    []byte
		w, h int64
	}{
		{"bmp of 58 bytes", append(bmpHeader(60000, 60000), 0, 0, 0, 0), 60000, 60000},
		{"bmp top-down", bmpHeader(30000, -30000), 30000, 30000},
		{"bmp core header", slices.Concat([]byte("BM"), make([]byte, 12), []byte{12, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 0, 24, 0}), 65535, 65535},
		{"tiff", tiffFile(binary.LittleEndian, 0, [2]uint32{1_000_000, 1_000_000}), 1_000_000, 1_000_000},
		{"tiff big-endian", tiffFile(binary.BigEndian, 0, [2]uint32{1_000_000, 1_000_000}), 1_000_000, 1_000_000},
		{"tiff page 3 of 3, after the head", tiffFile(binary.LittleEndian, 4000, [2]uint32{8, 8}, [2]uint32{8, 8}, [2]uint32{1_000_000, 8}), 1_000_000, 8},
		{"tiff ifd at the end", tiffFile(binary.LittleEndian, 64<<10, [2]uint32{50_000, 50_000}), 50_000, 50_000},
		{"tiff: a SubIFD", tiffSubIFDs(100, [2]uint32{1_000_000, 1_000_000}), 1_000_000, 1_000_000},
		{"tiff: the second of two SubIFDs, after the head", tiffSubIFDs(5000, [2]uint32{8, 8}, [2]uint32{1_000_000, 2}), 1_000_000, 2},
		{"psd", psdHeader(1, 1_000_000, 1_000_000), 1_000_000, 1_000_000},
		{"psb", psdHeader(2, 300_000, 300_000), 300_000, 300_000},
		{"psd: a 10 × 10 canvas, a layer of a million pixels a side", psdLayers(10, 10, 0, [4]int32{0, 0, 10, 10}, [4]int32{-500_000, -500_000, 500_000, 500_000}), 1_000_000, 1_000_000},
		{"psd: the layer after 100 KB of resources", psdLayers(10, 10, 100<<10, [4]int32{0, 0, 1, 60000}), 60000, 1},
		{"ico with a png", icoFile(0, pngIn(60000, 60000)), 60000, 60000},
		{"ico with a dib", icoFile(0, dib), 60000, 60000},
		{"ico's second image, after the head", icoFile(4000, pngIn(16, 16), pngIn(60000, 16)), 60000, 16},
		{"webp: 1 × 1 canvas around a 16383² bitstream", riff(vp8x(0, 1, 1), riffChunk("VP8L", vp8l(16383, 16383, colorOf(0, 0, 0)))), 16383, 16383},
		{"webp: ALPH, then a 16383² bitstream", riff(vp8x(0x10, 1, 1), riffChunk("ALPH", make([]byte, 5000)), riffChunk("VP8L", vp8l(16383, 16383, colorOf(0, 0, 0)))), 16383, 16383},
		{"webp: an ANMF frame of 16383²", animWebP(1, 1, [4]int{1, 1, 1, 1}, [4]int{16383, 16383, 1, 1}), 16383, 16383},
		{"webp: an ANMF frame of 1 × 1 around a 16383² bitstream", animWebP(1, 1, [4]int{1, 1, 16383, 16383}), 16383, 16383},
		{"apng: an fcTL of 60000²", apng(t, 3, 4, 4, [4]uint32{60000, 60000, 0, 0}), 60000, 60000},
		{"apng: an fcTL far off the canvas", apng(t, 2, 4, 4, [4]uint32{4, 4, 30000, 0}), 30004, 4},
	}
	for _, c := range cases {
		for _, mode := range []Mode{StripGPS, StripAll, StripOff} {
			t.Run(c.name+"/"+string(mode), func(t *testing.T) {
				_, _, err := guard(t, c.b, Options{Strip: mode})
				var se *SizeError
				if !errors.As(err, &se) {
					t.Fatalf("err %v, want a SizeError", err)
				}
				if se.Width != c.w || se.Height != c.h {
					t.Errorf("size %d × %d, want %d × %d", se.Width, se.Height, c.w, c.h)
				}
			})
		}
	}
}

// Frames are counted: past MaxFrames, or past MaxAnimationPixels in all, a file is refused
// even when each frame is within the limits.
func TestFrames(t *testing.T) {
	attack := gifFrames(5000, 7000, 7000)
	if len(attack) > 100<<10 {
		t.Fatalf("the attack is %d bytes", len(attack))
	}
	actl := apng(t, 2, 4, 4, [4]uint32{4, 4, 0, 0})
	binary.BigEndian.PutUint32(actl[41:], 5000) // acTL's num_frames, after IHDR (8+25) and its own length and type
	binary.BigEndian.PutUint32(actl[49:], crc32.ChecksumIEEE(actl[37:49]))
	anims := func(n int) [][4]int {
		f := make([][4]int, n)
		for i := range f {
			f[i] = [4]int{4, 4, 4, 4}
		}
		return f
	}
	cases := []struct {
		name     string
		b        []byte
		opts     Options
		tooMany  bool
		declared bool
	}{
		{"gif: 5000 frames of 7000²", attack, Options{}, false, false},
		{"gif: 5000 frames of 7000², no bound on pixels", attack, Options{MaxAnimationPixels: 1 << 62}, true, false},
		{"gif: 1001 small frames", gifFrames(1001, 10, 10), Options{}, true, false},
		{"apng: 5000 frames declared", actl, Options{}, true, true},
		{"apng: 11 frames", apng(t, 11, 4, 4, [4]uint32{4, 4, 0, 0}), Options{MaxFrames: 10, MaxAnimationPixels: 1 << 40}, true, false},
		{"apng: 160 pixels", apng(t, 11, 4, 4, [4]uint32{4, 4, 0, 0}), Options{MaxPixels: 16, MaxAnimationPixels: 160}, false, false},
		{"webp: 11 frames", animWebP(4, 4, anims(11)...), Options{MaxFrames: 10}, true, false},
		{"tiff: 11 pages", tiffFile(binary.LittleEndian, 100, slices.Repeat([][2]uint32{{8, 8}}, 11)...), Options{MaxFrames: 10}, true, false},
		{"psd: 11 layers declared", psdLayers(10, 10, 0, slices.Repeat([][4]int32{{0, 0, 2, 2}}, 11)...), Options{MaxFrames: 10}, true, true},
		{"ico: 11 images declared", icoFile(0, slices.Repeat([][]byte{pngIn16(t)}, 11)...), Options{MaxFrames: 10}, true, true},
	}
	for _, c := range cases {
		for _, mode := range []Mode{StripGPS, StripOff} {
			t.Run(c.name+"/"+string(mode), func(t *testing.T) {
				c.opts.Strip = mode
				res, _, err := guard(t, c.b, c.opts)
				var fe *FramesError
				if !errors.As(err, &fe) || !errors.Is(err, ErrTooManyFrames) {
					t.Fatalf("err %v, want a FramesError", err)
				}
				if fe.TooMany() != c.tooMany {
					t.Errorf("%v: TooMany %v, want %v", err, fe.TooMany(), c.tooMany)
				}
				if c.declared && res.Prefix != nil {
					t.Errorf("a file that declares too many frames is refused before anything is sent")
				}
			})
		}
	}
}

func pngIn16(t testing.TB) []byte { return encodePNG(t, 16, 16) }

// Real files of each format pass unchanged, their size read.
func TestMeasuredFormatsPass(t *testing.T) {
	var bmpB, tiffB bytes.Buffer
	if err := bmp.Encode(&bmpB, testImage(40, 30)); err != nil {
		t.Fatal(err)
	}
	big := testImage(300, 200) // its IFD comes after 240 KB of pixels: checked as it streams
	if err := tiff.Encode(&tiffB, big, nil); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		b      []byte
		format string
		w, h   int64
	}{
		{"bmp", bmpB.Bytes(), "bmp", 40, 30},
		{"tiff, its IFD last", tiffB.Bytes(), "tiff", 0, 0},
		{"tiff with two SubIFDs", tiffSubIFDs(5000, [2]uint32{8, 8}, [2]uint32{400, 300}), "tiff", 8, 8},
		{"tiff of 3 pages", tiffFile(binary.BigEndian, 10, [2]uint32{8, 8}, [2]uint32{20_000, 2500}, [2]uint32{3, 3}), "tiff", 8, 8},
		{"psd", psdHeader(1, 3000, 2000), "psd", 3000, 2000},
		{"psd with layers", psdLayers(300, 200, 5000, [4]int32{0, 0, 200, 300}, [4]int32{-10, -10, 0, 0}, [4]int32{50, 50, 150, 250}), "psd", 300, 200},
		{"ico", icoFile(0, pngIn16(t), encodePNG(t, 32, 32), bmpHeader(48, 96)[14:]), "ico", 16, 16},
		{"animated gif", encodeGIF(t, 20, 64, 48, 3, 2), "gif", 67, 50},
		{"apng", apng(t, 10, 64, 48, [4]uint32{32, 24, 32, 24}), "png", 64, 48},
		{"animated webp", animWebP(64, 48, [4]int{64, 48, 64, 48}, [4]int{32, 24, 32, 24}), "webp", 64, 48},
		{"webp still in vp8x", riff(vp8x(0, 30, 20), riffChunk("VP8L", vp8l(30, 20, colorOf(1, 2, 3)))), "webp", 30, 20},
	}
	for _, c := range cases {
		for _, mode := range []Mode{StripGPS, StripAll, StripOff} {
			t.Run(c.name+"/"+string(mode), func(t *testing.T) {
				res, out := mustGuard(t, c.b, Options{Strip: mode, MaxFrames: 20})
				if !bytes.Equal(out, c.b) {
					t.Errorf("the file changed")
				}
				if res.Format != c.format || res.Width != c.w || res.Height != c.h {
					t.Errorf("format %q, %d × %d; want %q, %d × %d", res.Format, res.Width, res.Height, c.format, c.w, c.h)
				}
			})
		}
	}
	// exiftool, the oracle, reads the layers where the guard did.
	if tags := exiftool(t, psdLayers(300, 200, 5000, [4]int32{0, 0, 200, 300}, [4]int32{50, 50, 150, 250})); tags["Photoshop:LayerCount"] != float64(2) ||
		fmt.Sprint(tags["Photoshop:LayerRectangles"]) != "[0 0 200 300 50 50 150 250]" {
		t.Errorf("exiftool reads the test PSD's layers as %v, %v", tags["Photoshop:LayerCount"], tags["Photoshop:LayerRectangles"])
	}
	// The standard decoders read what passed.
	if _, err := bmp.Decode(bytes.NewReader(bmpB.Bytes())); err != nil {
		t.Error(err)
	}
	if img, err := tiff.Decode(bytes.NewReader(tiffB.Bytes())); err != nil || img.Bounds() != big.Bounds() {
		t.Errorf("tiff: %v", err)
	}
	if img, err := png.Decode(bytes.NewReader(apng(t, 3, 8, 8, [4]uint32{8, 8, 0, 0}))); err != nil || img.Bounds().Dx() != 8 {
		t.Errorf("apng's default image: %v", err)
	}
}

// A file that lies about the order of its parts is refused: the guard cannot go back.
func TestOffsetsOnlyForward(t *testing.T) {
	b := tiffFile(binary.LittleEndian, 0, [2]uint32{8, 8}, [2]uint32{8, 8})
	binary.LittleEndian.PutUint32(b[8+2+8*12:], 8) // the second IFD is the first again: a loop
	if _, _, err := guard(t, b, Options{}); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "before offset") {
		t.Errorf("a loop of IFDs: %v", err)
	}
	ico := icoFile(0, pngIn16(t))
	binary.LittleEndian.PutUint32(ico[6+12:], 2) // the image inside the directory
	if _, _, err := guard(t, ico, Options{}); !errors.Is(err, ErrMalformed) {
		t.Errorf("an image inside the ICO directory: %v", err)
	}
	// Cut inside a later page: refused as the file streams.
	long := tiffFile(binary.LittleEndian, 4000, [2]uint32{8, 8}, [2]uint32{8, 8})
	if _, _, err := guard(t, long[:len(long)-20], Options{}); !errors.Is(err, ErrMalformed) {
		t.Errorf("a TIFF cut inside its second IFD: %v", err)
	}
}

// PNG metadata chunks are bounded all together, not only one by one.
func TestPNGMetadataTotal(t *testing.T) {
	cs := pngChunks(t, encodePNG(t, 8, 8))
	text := chunk("tEXt", append([]byte("Comment\x00"), bytes.Repeat([]byte("x"), 600<<10)...))
	b := slices.Concat([]byte(pngSignature), cs[0], slices.Concat(cs[1:len(cs)-1]...), text, text, text, cs[len(cs)-1])
	for _, mode := range []Mode{StripGPS, StripAll} {
		if _, _, err := guard(t, b, Options{Strip: mode}); !errors.Is(err, ErrMetadataTooLarge) {
			t.Errorf("%s: 1.8 MB of tEXt after the image data: %v", mode, err)
		}
	}
	one := slices.Concat([]byte(pngSignature), cs[0], slices.Concat(cs[1:len(cs)-1]...), text, cs[len(cs)-1])
	if _, out := mustGuard(t, one, Options{}); !bytes.Equal(out, one) {
		t.Errorf("one text chunk of 600 KB changed")
	}
	x := riffChunk("XMP ", bytes.Repeat([]byte("x"), 600<<10))
	webp := riff(vp8x(0x04, 2, 2), riffChunk("VP8L", vp8l(2, 2, colorOf(1, 2, 3))), x, x)
	if _, _, err := guard(t, webp, Options{}); !errors.Is(err, ErrMetadataTooLarge) {
		t.Errorf("webp: two XMP chunks of 600 KB: %v", err)
	}
}

// The fast path survives where nothing needs walking: a PNG or a still WebP in VP8X, with
// StripOff, goes on through the caller's reader after its first image chunk.
func TestOffKeepsTheReaderAfterTheWalk(t *testing.T) {
	pad := func(b []byte) []byte { return append(b, make([]byte, 2*sniffLen)...) }
	for name, b := range map[string][]byte{
		"png":  pad(encodePNG(t, 64, 64)),
		"webp": pad(riff(vp8x(0, 30, 20), riffChunk("VP8L", vp8l(30, 20, colorOf(1, 2, 3))))),
		"bmp":  pad(bmpHeader(10, 10)),
		"psd":  pad(psdHeader(1, 10, 10)),
	} {
		rest := bytes.NewReader(b[sniffLen:])
		res, err := Guard(slices.Clone(b[:sniffLen]), rest, Options{Strip: StripOff})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if res.Rest != io.Reader(rest) {
			t.Errorf("%s: Rest is %T", name, res.Rest)
		}
		tail, _ := io.ReadAll(res.Rest)
		if !bytes.Equal(append(slices.Clone(res.Prefix), tail...), b) {
			t.Errorf("%s: the file changed", name)
		}
	}
	// An animation is walked to its end, even with StripOff.
	a := apng(t, 3, 8, 8, [4]uint32{8, 8, 0, 0})
	if res, err := Guard(a, bytes.NewReader(nil), Options{Strip: StripOff}); err != nil || !res.Wrapped {
		t.Errorf("apng with off: wrapped %v, err %v", res.Wrapped, err)
	}
}

// Checks names the types whose files Guard measures, as mimetype names them.
func TestChecks(t *testing.T) {
	for _, typ := range []string{"image/jpeg", "image/png", "image/apng", "image/gif", "image/webp", "image/bmp", "image/tiff", "image/vnd.adobe.photoshop", "image/x-icon"} {
		if !Checks(typ) {
			t.Errorf("Checks(%q) is false", typ)
		}
	}
	for _, typ := range []string{"image/svg+xml", "image/jxl", "image/x-icns", "image/jp2", "application/pdf"} {
		if Checks(typ) {
			t.Errorf("Checks(%q) is true", typ)
		}
	}
}
