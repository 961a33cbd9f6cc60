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

// BenchmarkGuard measures the guard's cost per upload: Guard on the first 3 KiB, then reading
// Rest to its end into a 256 KiB buffer, as the server's upload body does. For JPEG, Rest is
// the caller's reader: the reads are the same with and without the guard.
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
		{"png-50MB-gps", "png", 50 << 20, StripGPS},
		{"png-50MB-off", "png", 50 << 20, StripOff},
		{"tiff-50MB-off", "tiff", 50 << 20, StripOff},
		{"heic-50MB-gps", "heic", 50 << 20, StripGPS},
		{"heic-50MB-off", "heic", 50 << 20, StripOff},
	} {
		file := benchFile(b, c.format, c.size)
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(file)))
			b.ReportAllocs()
			rest := bytes.NewReader(nil)
			buf := make([]byte, 256<<10)
			for b.Loop() {
				rest.Reset(file[sniffLen:])
				res, err := Guard(file[:sniffLen], rest, Options{Strip: c.mode})
				if err != nil {
					b.Fatal(err)
				}
				for {
					_, err := res.Rest.Read(buf)
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
