package imageguard

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	_ "image/gif"
	_ "image/jpeg"
	_ "image/png"
	"io"
	"slices"
	"testing"

	_ "golang.org/x/image/bmp"
	_ "golang.org/x/image/tiff"
	_ "golang.org/x/image/webp"
)

// seeds are the fuzz target's starting points: the test photos, cut and bent.
func seeds(t testing.TB) [][]byte {
	jpg := photoJPEG(t, 24, 16)
	pngs := photoPNG(t, 12, 9, true)
	webp := photoWebP(3, 2)
	var s [][]byte
	for _, b := range [][]byte{jpg, photoPNG(t, 12, 9, false), pngs, webp} {
		s = append(s, b, b[:len(b)/2], b[:len(b)-3])
	}
	gpsInIFD1 := exifWithGPSInIFD1()
	heif := synthHEIF{w: 8, h: 8, extra: []synthItem{{typ: "Exif", data: exifItem(photoExif(binary.BigEndian, true)), split: 2, gapAfter: 3},
		{typ: "mime", contentType: "application/rdf+xml", data: []byte(testXMP)}}}.build()
	s = append(s, heif, heif[:len(heif)-7],
		synthHEIF{brand: "avif", w: 3, h: 2, mdatHeader: "large", extra: []synthItem{{typ: "Exif", data: exifItem(photoExif(binary.LittleEndian, true))}}}.build())
	return append(s,
		insertAfterSOI(encodeJPEG(t, 8, 8), segment(mAPP1, []byte("Exif\x00\x00"), gpsInIFD1)),
		riff(riffChunk("VP8L", vp8l(2, 2, colorOf(1, 2, 3))), riffChunk("EXIF", photoExif(binary.BigEndian, true))),
		[]byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"),
		encodeGIF(t, 2, 4, 3, 1, 1),
		gifFrames(3, 5, 4),
		bmpHeader(3, -2),
		tiffFile(binary.BigEndian, 16, [2]uint32{3, 2}, [2]uint32{2, 2}),
		tiffFile(binary.LittleEndian, 4000, [2]uint32{3, 2}),
		tiffFile(binary.LittleEndian, 80<<10, [2]uint32{3, 2}), // its IFD past the window
		psdHeader(1, 3, 2),
		tiffSubIFDs(4, [2]uint32{2, 2}, [2]uint32{3, 1}),
		psdLayers(3, 2, 8, [4]int32{0, 0, 2, 3}, [4]int32{-1, -1, 1, 1}),
		icoFile(0, encodePNG(t, 3, 2), bmpHeader(2, 4)[14:]),
		icoFile(4000, encodePNG(t, 3, 2)),
		apng(t, 3, 3, 2, [4]uint32{2, 1, 1, 1}),
		animWebP(4, 3, [4]int{2, 2, 2, 2}, [4]int{4, 3, 4, 3}),
		riff(vp8x(0, 3, 2), riffChunk("ALPH", []byte{0, 1, 2}), riffChunk("VP8L", vp8l(3, 2, colorOf(1, 2, 3)))),
	)
}

// FuzzGuard feeds arbitrary bytes to Guard in each mode. It checks that Guard never panics,
// that it reads no more than its window before it returns, and that whatever it lets through
// holds no GPS IFD: gpsReachable is a second, independent and lenient walker of the output
// (JPEG APP1 Exif before SOS, every PNG eXIf, every WebP EXIF chunk) that follows every pointer
// tag of IFD0, IFD1..., the Exif, Interoperability and Sub IFDs. exiftool is too slow to run on
// every input: TestSeedsThroughExiftool runs it on the seeds only.
func FuzzGuard(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s, byte(0), uint16(sniffLen))
	}
	f.Fuzz(func(t *testing.T, b []byte, mode byte, split uint16) {
		m := []Mode{StripGPS, StripAll, StripOff}[mode%3]
		headLen := min(int(split), len(b))
		const window = 64 << 10
		// Over a source of pieces, NextPiece gives what Read gives (pieces_test.go).
		opts := Options{Strip: m, MaxMetadataBytes: window, MaxFrames: 16}
		want, wantErr := throughRead(b, headLen, opts)
		if wantErr == nil || len(want) > 0 {
			got, _, err := throughPieces(t, b, headLen, opts, 1+int(split)%5000, mode&4 != 0)
			if fmt.Sprint(err) != fmt.Sprint(wantErr) || !bytes.Equal(got, want) {
				t.Fatalf("over pieces: %d bytes, error %v; over Read: %d bytes, error %v", len(got), err, len(want), wantErr)
			}
		}
		src := bytes.NewReader(b[headLen:])
		res, err := Guard(slices.Clone(b[:headLen]), src, Options{Strip: m, MaxMetadataBytes: window, MaxFrames: 16})
		// Guard holds a bounded window: before it returns, it reads at most that much of rest.
		if read := int64(len(b)-headLen) - int64(src.Len()); read > window {
			t.Fatalf("Guard read %d bytes of rest before returning, more than its window of %d", read, window)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooManyPixels) && !errors.Is(err, ErrMetadataTooLarge) && !errors.Is(err, ErrTooManyFrames) {
				t.Fatalf("error of no known kind: %v", err)
			}
			return
		}
		rest, err := io.ReadAll(res.Rest)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrMetadataTooLarge) && !errors.Is(err, ErrTooManyPixels) && !errors.Is(err, ErrTooManyFrames) {
				t.Fatalf("Rest: error of no known kind: %v", err)
			}
			return
		}
		out := append(slices.Clone(res.Prefix), rest...)
		// Differential: where the standard library's decoders (and golang.org/x/image's) read a
		// size, it is the guard's (a TIFF's first page is read before Guard returns only when
		// the head holds it: Width 0 otherwise).
		if cfg, format, err := image.DecodeConfig(bytes.NewReader(out)); err == nil && format == res.Format && res.Width != 0 &&
			(int64(cfg.Width) != res.Width || int64(cfg.Height) != res.Height) {
			t.Fatalf("%s: the guard read %d × %d, image.DecodeConfig %d × %d", format, res.Width, res.Height, cfg.Width, cfg.Height)
		}
		if (res.Format == "heif" || res.Format == "avif") && len(out) != len(b) {
			t.Fatalf("%s: %d bytes out of %d: HEIF is rewritten in place", res.Format, len(out), len(b))
		}
		if m == StripOff || res.Removed == "none" {
			if !bytes.Equal(out, b) {
				t.Fatalf("mode %s, Removed %q: the file changed", m, res.Removed)
			}
			return
		}
		if gpsReachable(out) {
			t.Fatalf("mode %s: a GPS IFD is still reachable in the output", m)
		}
	})
}

// gpsReachable says whether any EXIF block of b has a GPS pointer (tag 0x8825) in an IFD a
// reader reaches. It is written apart from the guard's walker, and lenient where that one is
// strict: it skips what it cannot read rather than failing.
func gpsReachable(b []byte) bool {
	for _, tiff := range exifBlocks(b) {
		if tiffHasGPS(tiff) {
			return true
		}
	}
	return false
}

func exifBlocks(b []byte) [][]byte {
	var blocks [][]byte
	switch {
	case len(b) > 3 && b[0] == 0xFF && b[1] == 0xD8:
		for p := 2; p+4 <= len(b); {
			if b[p] != 0xFF {
				break
			}
			m := b[p+1]
			if m == 0xFF {
				p++
				continue
			}
			if m == 0xDA || m == 0xD9 {
				break
			}
			n := int(b[p+2])<<8 | int(b[p+3])
			end := min(p+2+n, len(b))
			if seg := b[p+4 : max(end, p+4)]; m == 0xE1 && bytes.HasPrefix(seg, []byte("Exif\x00")) && len(seg) > 6 {
				blocks = append(blocks, seg[6:])
			}
			if n < 2 {
				break
			}
			p = end
		}
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		for p := 8; p+8 <= len(b); {
			n := int(binary.BigEndian.Uint32(b[p:]))
			if n < 0 || p+8+n > len(b) {
				break
			}
			if string(b[p+4:p+8]) == "eXIf" {
				blocks = append(blocks, b[p+8:p+8+n])
			}
			p += 12 + n
		}
	case len(b) >= 12 && string(b[4:8]) == "ftyp":
		blocks = heifExifBlocks(b) // heif_test.go
	case len(b) >= 12 && string(b[:4]) == "RIFF":
		for p := 12; p+8 <= len(b); {
			n := int(binary.LittleEndian.Uint32(b[p+4:]))
			if n < 0 || p+8+n > len(b) {
				break
			}
			if string(b[p:p+4]) == "EXIF" {
				blk := b[p+8 : p+8+n]
				blocks = append(blocks, blk, bytes.TrimPrefix(blk, []byte("Exif\x00\x00")))
			}
			p += 8 + n + n&1
		}
	}
	return blocks
}

func tiffHasGPS(t []byte) bool {
	if len(t) < 8 {
		return false
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if t[0] == 'M' {
		bo = binary.BigEndian
	}
	seen := map[uint32]bool{}
	var walk func(off uint32, chain bool) bool
	walk = func(off uint32, chain bool) bool {
		for off != 0 && !seen[off] && uint64(off)+2 <= uint64(len(t)) {
			seen[off] = true
			n := int(bo.Uint16(t[off:]))
			for i := 0; i < n && int(off)+2+12*i+12 <= len(t); i++ {
				e := t[int(off)+2+12*i:]
				switch bo.Uint16(e) {
				case 0x8825:
					return true
				case 0x8769, 0xA005, 0x014A:
					if walk(bo.Uint32(e[8:]), false) {
						return true
					}
				}
			}
			if !chain || int(off)+2+12*n+4 > len(t) {
				return false
			}
			off = bo.Uint32(t[int(off)+2+12*n:])
		}
		return false
	}
	return walk(bo.Uint32(t[4:]), true)
}

// TestSeedsThroughExiftool runs exiftool, the independent oracle, on what the guard makes of
// each seed: no GPS tag is left.
func TestSeedsThroughExiftool(t *testing.T) {
	for i, s := range seeds(t) {
		for _, m := range []Mode{StripGPS, StripAll} {
			_, out, err := guard(t, s, Options{Strip: m})
			if err != nil {
				continue
			}
			if g := gpsTags(exiftool(t, out)); len(g) > 0 {
				t.Errorf("seed %d, mode %s: exiftool finds %v", i, m, g)
			}
			if gpsReachable(out) {
				t.Errorf("seed %d, mode %s: the test's walker finds a GPS pointer", i, m)
			}
		}
		if gpsReachable(s) != (len(gpsTags(exiftool(t, s))) > 0) {
			t.Errorf("seed %d: the test's walker and exiftool disagree on the original", i)
		}
	}
}
