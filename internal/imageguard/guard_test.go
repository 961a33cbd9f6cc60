package imageguard

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

const sniffLen = 3072 // what the server reads before it calls Guard

// guard runs Guard as the server does: the first sniffLen bytes as head, the rest as a reader,
// and returns everything that comes out. Rest is read in odd small pieces, so that no
// boundary of a read lines up with a chunk's.
func guard(t testing.TB, b []byte, opts Options) (Result, []byte, error) {
	t.Helper()
	head := b[:min(sniffLen, len(b))]
	rest := iotest.HalfReader(bytes.NewReader(b[len(head):]))
	res, err := Guard(slices.Clone(head), rest, opts)
	if err != nil {
		return res, nil, err
	}
	tail, err := io.ReadAll(res.Rest)
	if err != nil {
		return res, nil, err
	}
	return res, append(slices.Clone(res.Prefix), tail...), nil
}

func mustGuard(t testing.TB, b []byte, opts Options) (Result, []byte) {
	t.Helper()
	res, out, err := guard(t, b, opts)
	if err != nil {
		t.Fatalf("Guard: %v", err)
	}
	return res, out
}

func decodeSame(t *testing.T, a, b []byte, decode func(io.Reader) (image.Image, error)) {
	t.Helper()
	ia, err := decode(bytes.NewReader(a))
	if err != nil {
		t.Fatalf("decode original: %v", err)
	}
	ib, err := decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("decode guarded: %v", err)
	}
	if ia.Bounds() != ib.Bounds() {
		t.Fatalf("bounds %v, want %v", ib.Bounds(), ia.Bounds())
	}
	r := ia.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if ia.At(x, y) != ib.At(x, y) {
				t.Fatalf("pixel (%d,%d) is %v, want %v", x, y, ib.At(x, y), ia.At(x, y))
			}
		}
	}
}

// wantOnly checks that exiftool finds, besides the file's description, exactly the tags named
// (by name, in any group) and no other.
func wantOnly(t *testing.T, tags map[string]any, allowed ...string) {
	t.Helper()
	if tags["ICC-header:ProfileClass"] != "mntr" {
		t.Errorf("the ICC profile is gone")
	}
	for k, v := range metadataTags(tags) {
		_, name, _ := strings.Cut(k, ":")
		if !slices.Contains(allowed, name) && !strings.HasPrefix(k, "ICC") {
			t.Errorf("exiftool still finds %s = %v", k, v)
		}
	}
}

func TestJPEG(t *testing.T) {
	orig := photoJPEG(t, 64, 48)
	before := exiftool(t, orig)
	for _, k := range []string{"GPS:GPSLatitude", "ExifIFD:SerialNumber", "IFD0:Orientation", "XMP-dc:Creator", "File:Comment", "IPTC:By-line"} {
		if _, ok := before[k]; !ok {
			t.Fatalf("the test photo lacks %s: exiftool finds %v", k, before)
		}
	}
	t.Run("gps", func(t *testing.T) {
		res, out := mustGuard(t, orig, Options{Strip: StripGPS})
		if res.Removed != "gps" || res.Format != "jpeg" || res.Width != 64 || res.Height != 48 {
			t.Errorf("result %+v", res)
		}
		if len(out) != len(orig) {
			t.Errorf("%d bytes out of %d: gps must change nothing's size", len(out), len(orig))
		}
		after := exiftool(t, out)
		if g := gpsTags(after); len(g) > 0 {
			t.Errorf("exiftool still finds %v", g)
		}
		for k, v := range before {
			if strings.HasPrefix(k, "GPS:") || strings.HasPrefix(k, "Composite:GPS") || k == "SourceFile" || strings.HasPrefix(k, "ExifTool:") || strings.HasPrefix(k, "System:") {
				continue
			}
			if got := after[k]; fmt.Sprint(got) != fmt.Sprint(v) {
				t.Errorf("%s is %v, want %v as before", k, got, v)
			}
		}
		decodeSame(t, orig, out, jpeg.Decode)
	})
	t.Run("all", func(t *testing.T) {
		res, out := mustGuard(t, orig, Options{Strip: StripAll})
		if res.Removed != "all" {
			t.Errorf("Removed %q", res.Removed)
		}
		after := exiftool(t, out)
		if got := after["IFD0:Orientation"]; fmt.Sprint(got) != "6" {
			t.Errorf("Orientation %v, want 6", got)
		}
		wantOnly(t, after, "Orientation", "ExifByteOrder")
		decodeSame(t, orig, out, jpeg.Decode)
	})
	t.Run("off", func(t *testing.T) {
		res, out := mustGuard(t, orig, Options{Strip: StripOff})
		if res.Removed != "none" || !bytes.Equal(out, orig) {
			t.Errorf("off changed the file (Removed %q)", res.Removed)
		}
	})
}

func TestNothingToStripIsByteForByte(t *testing.T) {
	plainJPEG := insertAfterSOI(encodeJPEG(t, 16, 16), segment(mAPP1, []byte("Exif\x00\x00"), photoExif(binary.LittleEndian, false)))
	cases := map[string][]byte{
		"jpeg without GPS": plainJPEG,
		"bare jpeg":        encodeJPEG(t, 16, 16),
		"png":              encodePNG(t, 16, 16),
		"webp":             riff(riffChunk("VP8L", vp8l(3, 2, colorOf(1, 2, 3)))),
		"gif":              encodeGIF(t, 3, 16, 16, 0, 0),
		"tiff":             tiffFile(binary.LittleEndian, 10, [2]uint32{8, 8}),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			_, out := mustGuard(t, b, Options{Strip: StripGPS})
			if !bytes.Equal(out, b) {
				t.Errorf("the file changed")
			}
		})
	}
}

// The JPEG fast path: the guard reads only the segments before SOS and hands back the reader
// it was given, so the server's type assertion on it still holds.
func TestJPEGKeepsTheReader(t *testing.T) {
	orig := photoJPEG(t, 600, 400)
	if len(orig) < 2*sniffLen {
		t.Fatalf("test JPEG of %d bytes is too small", len(orig))
	}
	rest := bytes.NewReader(orig[sniffLen:])
	for _, mode := range []Mode{StripGPS, StripAll, StripOff} {
		rest.Reset(orig[sniffLen:])
		res, err := Guard(slices.Clone(orig[:sniffLen]), rest, Options{Strip: mode})
		if err != nil {
			t.Fatal(err)
		}
		if res.Rest != io.Reader(rest) {
			t.Errorf("%s: Rest is %T, not the reader given", mode, res.Rest)
		}
	}
}

func colorOf(r, g, b uint8) color.RGBA { return color.RGBA{r, g, b, 255} }

func TestPNG(t *testing.T) {
	for _, after := range []bool{false, true} {
		orig := photoPNG(t, 40, 30, after)
		name := map[bool]string{false: "exif before IDAT", true: "exif after IDAT"}[after]
		t.Run(name, func(t *testing.T) {
			before := exiftool(t, orig)
			for _, k := range []string{"GPS:GPSLatitude", "PNG:Author", "XMP-dc:Creator", "PNG:Comment"} {
				if _, ok := before[k]; !ok {
					t.Fatalf("the test PNG lacks %s: %v", k, before)
				}
			}
			res, out := mustGuard(t, orig, Options{Strip: StripGPS})
			if res.Removed != "gps" || res.Width != 40 || res.Height != 30 {
				t.Errorf("result %+v", res)
			}
			got := exiftool(t, out)
			if g := gpsTags(got); len(g) > 0 {
				t.Errorf("gps: exiftool still finds %v", g)
			}
			for _, k := range []string{"PNG:Author", "PNG:Comment", "ExifIFD:SerialNumber", "IFD0:Orientation", "XMP-dc:Creator"} {
				if fmt.Sprint(got[k]) != fmt.Sprint(before[k]) {
					t.Errorf("gps: %s is %v, want %v", k, got[k], before[k])
				}
			}
			if !crcOK(out) {
				t.Errorf("gps: a chunk's CRC is wrong")
			}
			decodeSame(t, orig, out, png.Decode)

			_, out = mustGuard(t, orig, Options{Strip: StripAll})
			got = exiftool(t, out)
			if fmt.Sprint(got["IFD0:Orientation"]) != "6" {
				t.Errorf("all: Orientation %v, want 6", got["IFD0:Orientation"])
			}
			wantOnly(t, got, "Orientation", "ExifByteOrder", "ImageWidth", "ImageHeight", "BitDepth", "ColorType", "Compression", "Filter", "Interlace", "ProfileName")
			if !crcOK(out) {
				t.Errorf("all: a chunk's CRC is wrong")
			}
			decodeSame(t, orig, out, png.Decode)
		})
	}
}

func TestWebP(t *testing.T) {
	orig := photoWebP(5, 3)
	before := exiftool(t, orig)
	for _, k := range []string{"GPS:GPSLatitude", "ExifIFD:SerialNumber", "XMP-dc:Creator"} {
		if _, ok := before[k]; !ok {
			t.Fatalf("the test WebP lacks %s: %v", k, before)
		}
	}
	image := func(b []byte) []byte { // the VP8L chunk, which must pass unchanged
		i := bytes.Index(b, []byte("VP8L"))
		return b[i : i+8+int(binary.LittleEndian.Uint32(b[i+4:]))]
	}
	for _, mode := range []Mode{StripGPS, StripAll} {
		t.Run(string(mode), func(t *testing.T) {
			res, out := mustGuard(t, orig, Options{Strip: mode})
			if res.Width != 5 || res.Height != 3 || res.Format != "webp" {
				t.Errorf("result %+v", res)
			}
			if len(out) != len(orig) || !bytes.Equal(out[4:8], orig[4:8]) {
				t.Errorf("the RIFF size changed")
			}
			if !bytes.Equal(image(out), image(orig)) {
				t.Errorf("the image data changed")
			}
			got := exiftool(t, out)
			if g := gpsTags(got); len(g) > 0 {
				t.Errorf("exiftool still finds %v", g)
			}
			if fmt.Sprint(got["IFD0:Orientation"]) != "6" {
				t.Errorf("Orientation %v, want 6", got["IFD0:Orientation"])
			}
			if mode == StripGPS && fmt.Sprint(got["ExifIFD:SerialNumber"]) != fmt.Sprint(before["ExifIFD:SerialNumber"]) {
				t.Errorf("gps removed the serial number too")
			}
			if mode == StripAll {
				wantOnly(t, got, "Orientation", "ExifByteOrder", "ImageWidth", "ImageHeight", "VP8Version", "HorizontalScale", "VerticalScale", "AlphaIsUsed", "VP8XVersion", "WebP_Flags")
			}
		})
	}
}

func TestPixelLimits(t *testing.T) {
	bomb := pngBomb(t, 100_000, 100_000)
	if len(bomb) > 64<<10 {
		t.Fatalf("bomb of %d bytes", len(bomb))
	}
	bigSOF := insertAfterSOI(jpegWithSize(t, 30_000, 30_000), segment(mAPP1, []byte("Exif\x00\x00"), padExif(60<<10)))
	cases := []struct {
		name string
		b    []byte
		opts Options
		w, h int64
	}{
		{"png bomb", bomb, Options{}, 100_000, 100_000},
		{"png bomb with strip off", bomb, Options{Strip: StripOff}, 100_000, 100_000},
		{"jpeg SOF after 60 KB of EXIF", bigSOF, Options{}, 30_000, 30_000},
		{"jpeg SOF after 60 KB of EXIF, strip off", bigSOF, Options{Strip: StripOff}, 30_000, 30_000},
		{"one side too long", pngBomb(t, 20_001, 10), Options{}, 20_001, 10},
		{"over MAX_PIXELS", pngBomb(t, 1000, 1000), Options{MaxPixels: 999_999}, 1000, 1000},
		{"gif", []byte("GIF89a\xff\xff\xff\xff\x00\x00\x00;"), Options{}, 65535, 65535},
		{"gif frame past the canvas", gifFrameAt(t, 20_000, 50), Options{}, 20_016, 66},
		{"webp vp8x", riff(vp8x(0, 1<<24, 1<<24)), Options{}, 1 << 24, 1 << 24},
		{"webp vp8l", riff(riffChunk("VP8L", vp8l(16384, 16384, colorOf(0, 0, 0)))), Options{MaxDimension: 16383}, 16384, 16384},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := guard(t, c.b, c.opts)
			var se *SizeError
			if !errors.As(err, &se) || !errors.Is(err, ErrTooManyPixels) {
				t.Fatalf("err %v, want a SizeError", err)
			}
			if se.Width != c.w || se.Height != c.h {
				t.Errorf("size %d × %d, want %d × %d", se.Width, se.Height, c.w, c.h)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("%d × %d", c.w, c.h)) {
				t.Errorf("message %q lacks the size", err)
			}
		})
	}
	t.Run("at the limits", func(t *testing.T) {
		res, _ := mustGuard(t, pngBomb(t, 20_000, 2500), Options{})
		if res.Width != 20_000 || res.Height != 2500 {
			t.Errorf("size %d × %d", res.Width, res.Height)
		}
	})
}

// pngBomb is a PNG whose IHDR claims w × h and whose IDAT holds a little of it.
func pngBomb(t testing.TB, w, h uint32) []byte {
	small := pngChunks(t, encodePNG(t, 4, 4))
	ihdr := slices.Clone(small[0][8:21])
	binary.BigEndian.PutUint32(ihdr, w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	out := append([]byte(pngSignature), chunk("IHDR", ihdr)...)
	out = append(out, chunk("IDAT", make([]byte, 40<<10))...)
	return append(out, chunk("IEND", nil)...)
}

// jpegWithSize changes the SOF0 of a small JPEG to claim w × h.
func jpegWithSize(t testing.TB, w, h uint16) []byte {
	b := encodeJPEG(t, 8, 8)
	i := bytes.Index(b, []byte{0xFF, 0xC0})
	binary.BigEndian.PutUint16(b[i+5:], h)
	binary.BigEndian.PutUint16(b[i+7:], w)
	return b
}

// padExif is an EXIF block of about n bytes: IFD0 with one long comment.
func padExif(n int) []byte {
	e := withTag(0x010E, ascii(strings.Repeat("x", n))) // ImageDescription
	return buildTIFF(binary.BigEndian, &tiffIFD{entries: []tiffEntry{e}})
}

func TestMalformed(t *testing.T) {
	jpg := encodeJPEG(t, 16, 16)
	exifSeg := func(tiff []byte) []byte {
		return insertAfterSOI(jpg, segment(mAPP1, []byte("Exif\x00\x00"), tiff))
	}
	loop := photoExif(binary.BigEndian, true)
	binary.BigEndian.PutUint32(loop[8+2+12*5:], 8) // IFD0's next IFD is IFD0
	many := photoExif(binary.BigEndian, true)
	binary.BigEndian.PutUint16(many[8:], 65535)
	gpsOut := photoExif(binary.BigEndian, true)
	binary.BigEndian.PutUint32(gpsOut[8+2+12*4+8:], 1<<30) // GPS pointer past the end
	sof := bytes.Index(jpg, []byte{0xFF, 0xC0})
	sofSeg := jpg[sof : sof+2+int(binary.BigEndian.Uint16(jpg[sof+2:]))]
	twoSOF := slices.Concat(jpg[:sof], sofSeg, jpg[sof:])
	pngOK := encodePNG(t, 8, 8)
	pngLong := slices.Clone(pngOK)
	binary.BigEndian.PutUint32(pngLong[33:], 1<<30) // the chunk after IHDR claims a gigabyte
	cases := []struct {
		name, want string
		b          []byte
		is         error
	}{
		{"jpeg truncated segment", "ends inside", jpg[:sof+6], ErrMalformed},
		{"jpeg segment length past the end", "ends inside", slices.Concat(jpg[:2], []byte{0xFF, 0xE1, 0xFF, 0xF0, 'E', 'x'}), ErrMalformed},
		{"jpeg segment length 1", "length 1", slices.Concat(jpg[:2], []byte{0xFF, 0xE1, 0x00, 0x01}, jpg[2:]), ErrMalformed},
		{"jpeg garbage between segments", "where a marker should start", slices.Concat(jpg[:sof], []byte{0x00}, jpg[sof:]), ErrMalformed},
		{"jpeg two SOF markers", "two frame headers", twoSOF, ErrMalformed},
		{"jpeg no SOF", "no frame header", slices.Concat(jpg[:2], jpg[bytes.Index(jpg, []byte{0xFF, 0xDA}):]), ErrMalformed},
		{"jpeg EOI before image", "before the image data", []byte{0xFF, 0xD8, 0xFF, 0xD9}, ErrMalformed},
		{"exif IFD offset loop", "loop", exifSeg(loop), ErrMalformed},
		{"exif 65535 IFD entries", "65535 entries", exifSeg(many), ErrMalformed},
		{"exif GPS IFD past the end", "past the end", exifSeg(gpsOut), ErrMalformed},
		{"exif without TIFF header", "TIFF header", exifSeg([]byte("XX\x00*\x00\x00\x00\x08")), ErrMalformed},
		{"png truncated", "ends inside", pngOK[:40], ErrMalformed},
		{"png chunk length past the end", "ends inside", pngLong, ErrMalformed},
		{"png without IHDR", "not a 13-byte IHDR", slices.Concat([]byte(pngSignature), chunk("IDAT", nil), chunk("IEND", nil), make([]byte, 16)), ErrMalformed},
		{"png no IEND", "ends inside", pngOK[:len(pngOK)-12], ErrMalformed},
		{"png bad chunk type", "four letters", slices.Concat(pngOK[:33], chunk("t\x00Xt", nil), pngOK[33:]), ErrMalformed},
		{"png size 0", "0 × 8", pngWithIHDR(t, 0, 8), ErrMalformed},
		{"webp chunk past the RIFF size", "past the RIFF size", riffLie(riff(vp8x(0, 2, 2), riffChunk("VP8L", vp8l(2, 2, colorOf(1, 1, 1))))), ErrMalformed},
		{"webp bad first chunk", "is not VP8", riff(riffChunk("JUNK", make([]byte, 16))), ErrMalformed},
		{"webp no image", "no image data", riff(vp8x(0, 2, 2)), ErrMalformed},
		{"webp vp8 without key frame", "key frame", riff(riffChunk("VP8 ", make([]byte, 12))), ErrMalformed},
		{"gif truncated", "ends inside", []byte("GIF89a\x01"), ErrMalformed},
		{"gif size 0", "0 × 1", []byte("GIF89a\x00\x00\x01\x00\x00\x00\x00;"), ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := guard(t, c.b, Options{})
			if !errors.Is(err, c.is) {
				t.Fatalf("err %v, want %v", err, c.is)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("message %q does not name the problem (%q)", err, c.want)
			}
		})
	}
}

func pngWithIHDR(t testing.TB, w, h uint32) []byte { return pngBomb(t, w, h) }

// riffLie makes a WebP's last chunk claim 100 bytes more than the RIFF holds.
func riffLie(b []byte) []byte {
	b = slices.Clone(b)
	i := bytes.LastIndex(b, []byte("VP8L"))
	binary.LittleEndian.PutUint32(b[i+4:], binary.LittleEndian.Uint32(b[i+4:])+100)
	return b
}

// A structure problem after the image data surfaces from Rest.Read, as an ErrMalformed.
func TestMalformedAfterImageData(t *testing.T) {
	p := encodePNG(t, 8, 8)
	p = slices.Concat(p[:len(p)-12], []byte{0, 0, 0, 9, 't', 'E', 'X', 't', 'a'}) // a tEXt cut short, no IEND
	_, _, err := guard(t, p, Options{})
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("err %v, want ErrMalformed", err)
	}
}

func TestReadErrorsPassThrough(t *testing.T) {
	orig := insertAfterSOI(encodeJPEG(t, 8, 8), segment(mAPP1, []byte("Exif\x00\x00"), padExif(8<<10)))
	boom := errors.New("client went away")
	rest := io.MultiReader(bytes.NewReader(orig[100:200]), iotest.ErrReader(boom))
	_, err := Guard(orig[:100], rest, Options{})
	if !errors.Is(err, boom) {
		t.Fatalf("err %v, want the reader's error", err)
	}
	// A request body that ends before its part does says io.ErrUnexpectedEOF: that is the
	// body's problem, not a malformed image.
	for _, b := range [][]byte{orig, photoPNG(t, 8, 8, false)} {
		rest = io.MultiReader(bytes.NewReader(b[100:200]), iotest.ErrReader(io.ErrUnexpectedEOF))
		_, err = Guard(b[:100], rest, Options{})
		if !errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, ErrMalformed) {
			t.Errorf("err %v, want the reader's io.ErrUnexpectedEOF", err)
		}
	}
}

func TestMetadataWindow(t *testing.T) {
	big := insertAfterSOI(encodeJPEG(t, 8, 8),
		segment(mAPP1, []byte("Exif\x00\x00"), padExif(60<<10)),
		segment(mAPP2, make([]byte, 60<<10)),
		segment(mAPP2, make([]byte, 60<<10)))
	_, _, err := guard(t, big, Options{MaxMetadataBytes: 100 << 10})
	if !errors.Is(err, ErrMetadataTooLarge) {
		t.Fatalf("err %v, want ErrMetadataTooLarge", err)
	}
	if _, _, err := guard(t, big, Options{}); err != nil {
		t.Fatalf("within the default window: %v", err)
	}
}

func TestParseMode(t *testing.T) {
	for _, s := range []string{"gps", "all", "off"} {
		if m, err := ParseMode(s); err != nil || string(m) != s {
			t.Errorf("ParseMode(%q) = %q, %v", s, m, err)
		}
	}
	if _, err := ParseMode("GPS"); err == nil {
		t.Errorf("ParseMode(GPS) accepted")
	}
}

// exifWithGPSInIFD1 hangs the GPS IFD off IFD1 rather than IFD0: exiftool reads it there too.
func exifWithGPSInIFD1() []byte {
	bo := binary.BigEndian
	gps := &tiffIFD{entries: []tiffEntry{withTag(0x0001, ascii("S")), rationals(bo, 0x0002, 33, 51, 0)}}
	ifd1 := &tiffIFD{entries: []tiffEntry{short(bo, 0x0103, 6), {tag: tagGPSIFD, typ: 4, count: 1, sub: gps}}}
	return buildTIFF(bo, &tiffIFD{entries: []tiffEntry{short(bo, tagOrientation, 3)}, next: ifd1})
}

func TestGPSEverywhere(t *testing.T) {
	gpsXMP := strings.Replace(testXMP, `xmlns:dc=`, `xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="48,51.5N" xmlns:dc=`, 1)
	cases := map[string][]byte{
		"jpeg gps in IFD1": insertAfterSOI(encodeJPEG(t, 8, 8), segment(mAPP1, []byte("Exif\x00\x00"), exifWithGPSInIFD1())),
		"jpeg gps in XMP":  insertAfterSOI(encodeJPEG(t, 8, 8), segment(mAPP1, []byte("http://ns.adobe.com/xap/1.0/\x00"), []byte(gpsXMP))),
		"png gps in a text chunk": func() []byte {
			p := encodePNG(t, 8, 8)
			return slices.Concat(p[:33], chunk("tEXt", []byte("exif:GPSLatitude\x0048/1, 51/1, 29/1")), p[33:])
		}(),
		"webp gps in XMP": riff(vp8x(0x04, 2, 2), riffChunk("VP8L", vp8l(2, 2, colorOf(1, 1, 1))), riffChunk("XMP ", []byte(gpsXMP))),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if g := gpsTags(exiftool(t, b)); len(g) == 0 {
				t.Fatalf("the test file has no GPS for exiftool")
			}
			_, out := mustGuard(t, b, Options{Strip: StripGPS})
			if g := gpsTags(exiftool(t, out)); len(g) > 0 {
				t.Errorf("exiftool still finds %v", g)
			}
		})
	}
}

// WebP with StripAll and no orientation: the EXIF chunk becomes JUNK of the same size.
func TestWebPExifWithoutOrientation(t *testing.T) {
	exif := buildTIFF(binary.LittleEndian, &tiffIFD{entries: []tiffEntry{withTag(0x010F, ascii("TestCam"))}})
	orig := riff(vp8x(0x08, 2, 2), riffChunk("VP8L", vp8l(2, 2, colorOf(1, 1, 1))), riffChunk("EXIF", exif))
	_, out := mustGuard(t, orig, Options{Strip: StripAll})
	if len(out) != len(orig) || bytes.Contains(out, []byte("EXIF")) || !bytes.Contains(out, []byte("JUNK")) {
		t.Errorf("EXIF chunk not turned into JUNK of the same size")
	}
	tags := exiftool(t, out)
	if _, ok := tags["IFD0:Make"]; ok {
		t.Errorf("exiftool still finds the camera")
	}
	if w, ok := tags["ExifTool:Warning"]; ok {
		t.Errorf("exiftool warns: %v", w)
	}
}

// With StripOff a PNG, like a JPEG, goes on through the caller's own reader.
func TestOffKeepsTheReader(t *testing.T) {
	for name, b := range map[string][]byte{"png": photoPNG(t, 200, 200, true), "webp": photoWebP(300, 300)} {
		if len(b) <= sniffLen {
			b = append(b, make([]byte, sniffLen)...) // trailing bytes: the guard does not look
		}
		rest := bytes.NewReader(b[sniffLen:])
		res, err := Guard(b[:sniffLen], rest, Options{Strip: StripOff})
		if err != nil {
			t.Fatal(err)
		}
		if res.Rest != io.Reader(rest) {
			t.Errorf("%s: Rest is %T", name, res.Rest)
		}
	}
}

// encodeGIF is an animated GIF of n frames of w × h, the last one at (x, y) on a canvas that
// holds them all.
func encodeGIF(t testing.TB, n, w, h, x, y int) []byte {
	pal := color.Palette{color.Black, color.White}
	g := &gif.GIF{Config: image.Config{Width: w + x, Height: h + y, ColorModel: pal}}
	for i := range n {
		r := image.Rect(0, 0, w, h)
		if i == n-1 {
			r = r.Add(image.Pt(x, y))
		}
		img := image.NewPaletted(r, pal)
		for j := range img.Pix {
			img.Pix[j] = uint8((i + j) % 2)
		}
		g.Image = append(g.Image, img)
		g.Delay = append(g.Delay, 10)
	}
	var b bytes.Buffer
	if err := gif.EncodeAll(&b, g); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// gifFrameAt is a GIF whose canvas is small but whose second frame sits at (x, y).
func gifFrameAt(t testing.TB, x, y int) []byte {
	b := encodeGIF(t, 2, 16, 16, 0, 0)
	// Move the second image descriptor (the last 0x2C with a 16 × 16 size) to (x, y).
	i := bytes.LastIndex(b, []byte{0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x10, 0x00})
	binary.LittleEndian.PutUint16(b[i:], uint16(x))
	binary.LittleEndian.PutUint16(b[i+2:], uint16(y))
	return b
}

func TestGIFFrames(t *testing.T) {
	b := encodeGIF(t, 4, 30, 20, 5, 7)
	res, out := mustGuard(t, append(b, make([]byte, 4000)...)[:len(b)], Options{})
	if !bytes.Equal(out, b) || res.Width != 35 || res.Height != 27 || res.Removed != "none" {
		t.Errorf("result %+v, same bytes %v", res, bytes.Equal(out, b))
	}
	if _, err := gif.DecodeAll(bytes.NewReader(out)); err != nil {
		t.Errorf("decode: %v", err)
	}
	// No trailer after the last frame: passed, as decoders take it.
	if _, out := mustGuard(t, b[:len(b)-1], Options{}); !bytes.Equal(out, b[:len(b)-1]) {
		t.Errorf("a GIF without its trailer changed")
	}
	// Cut inside a frame's data: refused.
	if _, _, err := guard(t, b[:len(b)-20], Options{}); !errors.Is(err, ErrMalformed) {
		t.Errorf("a GIF cut inside its data: err %v", err)
	}
}

// A sloppy EXIF block (IFD1's offset past the end, as when a thumbnail was cut off) is read as
// far as it goes, as readers do: its GPS is still removed, and the photo is not refused.
func TestSloppyExifStillStripped(t *testing.T) {
	tiff := photoExif(binary.BigEndian, true)
	binary.BigEndian.PutUint32(tiff[8+2+12*5:], uint32(len(tiff)+1000)) // IFD0's next IFD
	orig := insertAfterSOI(encodeJPEG(t, 8, 8), segment(mAPP1, []byte("Exif\x00\x00"), tiff))
	if exiftool(t, orig)["GPS:GPSLatitude"] == nil {
		t.Fatal("exiftool finds no GPS in the sloppy original")
	}
	_, out := mustGuard(t, orig, Options{Strip: StripGPS})
	tags := exiftool(t, out)
	if g := gpsTags(tags); len(g) > 0 {
		t.Errorf("exiftool still finds %v", g)
	}
	if tags["IFD0:Make"] != "TestCam" {
		t.Errorf("Make lost: %v", tags["IFD0:Make"])
	}
}
