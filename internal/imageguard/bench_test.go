package imageguard

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
)

// benchFile pads a test photo to n bytes: a JPEG with bytes after its EOI (the guard reads a
// JPEG only up to SOS, so what follows stands for the entropy-coded data), a PNG with IDAT
// chunks of 64 KiB (which the guard's walker passes on by length), a TIFF whose IFD comes
// after its pixels (passed on by length up to it), a HEIC whose mdat holds its Exif item, then
// the image (which the walker passes on as it comes).
func benchFile(b *testing.B, format string, n int) []byte {
	switch format {
	case "jpeg":
		f := photoJPEG(b, 256, 256)
		return append(f, make([]byte, n-len(f))...)
	case "png":
		cs := pngChunks(b, photoPNG(b, 16, 16, false))
		out := []byte(pngSignature)
		for _, c := range cs[:len(cs)-1] {
			out = append(out, c...)
		}
		idat := chunk("IDAT", make([]byte, 64<<10))
		for len(out)+len(idat)+12 <= n {
			out = append(out, idat...)
		}
		return append(out, chunk("IEND", nil)...)
	case "png8k": // IDATs of 8 KiB, as libpng writes them
		cs := pngChunks(b, photoPNG(b, 16, 16, false))
		out := []byte(pngSignature)
		for _, c := range cs[:len(cs)-1] {
			out = append(out, c...)
		}
		idat := chunk("IDAT", make([]byte, 8<<10))
		for len(out)+len(idat)+12 <= n {
			out = append(out, idat...)
		}
		return append(out, chunk("IEND", nil)...)
	case "webp": // an extended WebP: one VP8L chunk, then EXIF
		w := photoWebP(64, 48)
		vp8l := append(vp8l(64, 48, colorOf(1, 2, 3)), make([]byte, n-len(w))...)
		return riff(vp8x(0x08, 64, 48), riffChunk("VP8L", vp8l), riffChunk("EXIF", photoExif(binary.BigEndian, true)))
	case "tiff": // its IFD last, after the pixels, as libtiff and x/image write it
		return tiffFile(binary.LittleEndian, n-200, [2]uint32{4096, 4096})
	case "heic": // the Exif item first in mdat, as exiftool writes it, then the image data
		exif := exifItem(photoExif(binary.BigEndian, true))
		image := make([]byte, n-len(exif)-1024)
		f := synthHEIF{w: 4032, h: 3024, primary: &synthItem{typ: "hvc1", data: image}, extra: []synthItem{{typ: "Exif", data: exif}}}.build()
		return f
	}
	b.Fatalf("format %s", format)
	return nil
}

// BenchmarkGuard measures the guard's cost per upload: Guard on the first 3 KiB, then Rest to
// its end, as the server's upload body takes it: with Read into a 256 KiB buffer from a
// bytes.Reader (its copy is the one the Read path costs), or with NextPiece over a source that
// hands out pieces of 256 KiB for free (slices of the file), as the multipart reader hands out
// its buffer's. For JPEG, Rest is the caller's reader: the reads are the same with and without
// the guard.
func BenchmarkGuard(b *testing.B) {
	for _, c := range []struct {
		name   string
		format string
		size   int
		mode   Mode
	}{
		{"jpeg-100KB-gps", "jpeg", 100 << 10, StripGPS},
		{"jpeg-100KB-off", "jpeg", 100 << 10, StripOff},
		{"jpeg-50MB-gps", "jpeg", 50 << 20, StripGPS},
		{"jpeg-50MB-off", "jpeg", 50 << 20, StripOff},
		{"png-100KB-gps", "png", 100 << 10, StripGPS},
		{"png-50MB-gps", "png", 50 << 20, StripGPS},
		{"png-50MB-off", "png", 50 << 20, StripOff},
		{"png8k-50MB-gps", "png8k", 50 << 20, StripGPS},
		{"webp-50MB-gps", "webp", 50 << 20, StripGPS},
		{"tiff-50MB-off", "tiff", 50 << 20, StripOff},
		{"heic-50MB-gps", "heic", 50 << 20, StripGPS},
		{"heic-50MB-off", "heic", 50 << 20, StripOff},
	} {
		b.Run(c.name, func(b *testing.B) { benchGuard(b, benchFile(b, c.format, c.size), c.mode) })
	}
}

func benchGuard(b *testing.B, file []byte, mode Mode) {
	for _, pieces := range []bool{false, true} {
		name := "read"
		if pieces {
			name = "pieces"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(file)))
			b.ReportAllocs()
			reader := bytes.NewReader(nil)
			sl := &slicer{}
			buf := make([]byte, 256<<10)
			for b.Loop() {
				var rest io.Reader = reader
				reader.Reset(file[sniffLen:])
				if pieces {
					sl.b, rest = file[sniffLen:], sl
				}
				res, err := Guard(file[:sniffLen], rest, Options{Strip: mode})
				if err != nil {
					b.Fatal(err)
				}
				ps, ok := res.Rest.(pieceSource)
				if pieces && !ok {
					b.Fatalf("Rest %T has no NextPiece", res.Rest)
				}
				for {
					if pieces {
						_, err = ps.NextPiece(nil)
					} else {
						_, err = res.Rest.Read(buf)
					}
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// slicer hands out a file in pieces of 256 KiB, slices of the file itself: a source of pieces
// that costs nothing, so that what is measured is the guard's own work.
type slicer struct{ b []byte }

func (s *slicer) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.b)
	s.b = s.b[n:]
	return n, nil
}

func (s *slicer) NextPiece(func() error) ([]byte, error) {
	if len(s.b) == 0 {
		return nil, io.EOF
	}
	p := s.b[:min(len(s.b), 256<<10)]
	s.b = s.b[len(p):]
	return p, nil
}
