package imageguard

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"strings"
	"testing"

	"cloudinary-upload-api/internal/testkit"
)

// The test images are made here: pixels encoded by the standard library, metadata blocks
// built by hand from the specs (TIFF 6.0, Exif 2.32, PNG, RFC 9649), so that exiftool, an
// independent reader, can say what they hold before and after the guard.

// tiffEntry is one IFD entry; data is the value's bytes (inline when at most 4), or, for a
// pointer, sub is the IFD it points to.
type tiffEntry struct {
	tag   uint16
	typ   uint16
	count uint32
	data  []byte
	sub   *tiffIFD
}

type tiffIFD struct {
	entries []tiffEntry
	next    *tiffIFD
}

// buildTIFF lays out the IFD tree (IFD0 first, then each IFD's values, then the IFDs it
// points to) in byte order bo.
func buildTIFF(bo binary.ByteOrder, ifd0 *tiffIFD) []byte {
	offsets := map[*tiffIFD]uint32{}
	var order []*tiffIFD
	var visit func(d *tiffIFD)
	visit = func(d *tiffIFD) {
		if d == nil {
			return
		}
		order = append(order, d)
		for _, e := range d.entries {
			visit(e.sub)
		}
		visit(d.next)
	}
	visit(ifd0)
	size := func(d *tiffIFD) uint32 {
		n := uint32(2 + 12*len(d.entries) + 4)
		for _, e := range d.entries {
			if len(e.data) > 4 {
				n += uint32(len(e.data)+1) &^ 1
			}
		}
		return n
	}
	at := uint32(8)
	for _, d := range order {
		offsets[d] = at
		at += size(d)
	}
	out := make([]byte, at)
	if bo == binary.LittleEndian {
		copy(out, "II*\x00")
	} else {
		copy(out, "MM\x00*")
	}
	bo.PutUint32(out[4:], 8)
	for _, d := range order {
		off := offsets[d]
		bo.PutUint16(out[off:], uint16(len(d.entries)))
		data := off + 2 + 12*uint32(len(d.entries)) + 4
		for i, e := range d.entries {
			p := out[off+2+12*uint32(i):]
			bo.PutUint16(p, e.tag)
			bo.PutUint16(p[2:], e.typ)
			bo.PutUint32(p[4:], e.count)
			switch {
			case e.sub != nil:
				bo.PutUint32(p[8:], offsets[e.sub])
			case len(e.data) > 4:
				bo.PutUint32(p[8:], data)
				copy(out[data:], e.data)
				data += uint32(len(e.data)+1) &^ 1
			default:
				copy(p[8:12], e.data)
			}
		}
		if d.next != nil {
			bo.PutUint32(out[off+2+12*uint32(len(d.entries)):], offsets[d.next])
		}
	}
	return out
}

func ascii(s string) tiffEntry {
	return tiffEntry{typ: 2, count: uint32(len(s) + 1), data: append([]byte(s), 0)}
}

func withTag(tag uint16, e tiffEntry) tiffEntry { e.tag = tag; return e }

func short(bo binary.ByteOrder, tag uint16, v uint16) tiffEntry {
	b := make([]byte, 4)
	bo.PutUint16(b, v)
	return tiffEntry{tag: tag, typ: 3, count: 1, data: b}
}

func rationals(bo binary.ByteOrder, tag uint16, vs ...uint32) tiffEntry {
	var b []byte
	for _, v := range vs {
		b = bo.(binary.AppendByteOrder).AppendUint32(b, v)
		b = bo.(binary.AppendByteOrder).AppendUint32(b, 1)
	}
	return tiffEntry{tag: tag, typ: 5, count: uint32(len(vs)), data: b}
}

// photoExif is a phone photo's EXIF: camera, orientation 6, a serial number, the time, and a
// GPS IFD with latitude and longitude.
func photoExif(bo binary.ByteOrder, withGPS bool) []byte {
	exifIFD := &tiffIFD{entries: []tiffEntry{
		withTag(0x9003, ascii("2026:11:30 12:34:56")), // DateTimeOriginal
		withTag(0xA431, ascii("SN-0042-SECRET")),      // BodySerialNumber
	}}
	gps := &tiffIFD{entries: []tiffEntry{
		{tag: 0x0000, typ: 1, count: 4, data: []byte{2, 3, 0, 0}}, // GPSVersionID
		withTag(0x0001, ascii("N")),
		rationals(bo, 0x0002, 48, 51, 29),
		withTag(0x0003, ascii("E")),
		rationals(bo, 0x0004, 2, 17, 40),
	}}
	ifd0 := &tiffIFD{entries: []tiffEntry{
		withTag(0x010F, ascii("TestCam")), // Make
		withTag(0x0110, ascii("Model 9")), // Model
		short(bo, tagOrientation, 6),
		{tag: tagExifIFD, typ: 4, count: 1, sub: exifIFD},
	}}
	if withGPS {
		ifd0.entries = append(ifd0.entries, tiffEntry{tag: tagGPSIFD, typ: 4, count: 1, sub: gps})
	}
	ifd0.next = &tiffIFD{entries: []tiffEntry{short(bo, 0x0103, 6)}} // IFD1: Compression
	return buildTIFF(bo, ifd0)
}

// testICC is a small but well-formed ICC profile: the 128-byte header and one tag, the white point.
func testICC() []byte {
	p := make([]byte, 164)
	binary.BigEndian.PutUint32(p, 164)
	copy(p[4:], "none")
	binary.BigEndian.PutUint32(p[8:], 0x04300000) // version 4.3
	copy(p[12:], "mntr")
	copy(p[16:], "RGB ")
	copy(p[20:], "XYZ ")
	copy(p[36:], "acsp")
	binary.BigEndian.PutUint32(p[68:], 0x0000F6D6) // D50 illuminant
	binary.BigEndian.PutUint32(p[72:], 0x00010000)
	binary.BigEndian.PutUint32(p[76:], 0x0000D32D)
	binary.BigEndian.PutUint32(p[128:], 1) // tag count
	copy(p[132:], "wtpt")
	binary.BigEndian.PutUint32(p[136:], 144)
	binary.BigEndian.PutUint32(p[140:], 20)
	copy(p[144:], "XYZ ")
	copy(p[152:], p[68:80])
	return p
}

const testXMP = `<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">` +
	`<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" ` +
	`xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:creator><rdf:Seq><rdf:li>Jane Photographer</rdf:li>` +
	`</rdf:Seq></dc:creator></rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>`

func testImage(w, h int) *image.RGBA { return testkit.Image(w, h) }

func encodeJPEG(t testing.TB, w, h int) []byte {
	var b bytes.Buffer
	if err := jpeg.Encode(&b, testImage(w, h), &jpeg.Options{Quality: 80}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func segment(marker byte, payload ...[]byte) []byte { return appendSegment(nil, marker, payload...) }

// insertAfterSOI puts segments right after a JPEG's SOI.
func insertAfterSOI(jpg []byte, segs ...[]byte) []byte {
	out := append([]byte{}, jpg[:2]...)
	for _, s := range segs {
		out = append(out, s...)
	}
	return append(out, jpg[2:]...)
}

// photoJPEG is a JPEG as a phone writes it: EXIF with GPS, ICC, XMP, IPTC and a comment.
func photoJPEG(t testing.TB, w, h int) []byte {
	return insertAfterSOI(encodeJPEG(t, w, h),
		segment(mAPP1, []byte("Exif\x00\x00"), photoExif(binary.BigEndian, true)),
		segment(mAPP2, []byte("ICC_PROFILE\x00\x01\x01"), testICC()),
		segment(mAPP1, []byte("http://ns.adobe.com/xap/1.0/\x00"), []byte(testXMP)),
		segment(mAP13, []byte("Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x0c\x1c\x02\x50\x00\x07Someone\x00")),
		segment(mCOM, []byte("taken at home")),
	)
}

func encodePNG(t testing.TB, w, h int) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, testImage(w, h)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func chunk(typ string, data []byte) []byte { return pngChunk(typ, data) }

// pngChunks splits a PNG into its signature and chunks.
func pngChunks(t testing.TB, b []byte) [][]byte {
	var cs [][]byte
	for p := 8; p < len(b); {
		n := int(binary.BigEndian.Uint32(b[p:]))
		cs = append(cs, b[p:p+12+n])
		p += 12 + n
	}
	return cs
}

// photoPNG puts eXIf, iCCP-less text, XMP before the image data and a tEXt after it.
func photoPNG(t testing.TB, w, h int, exifAfterIDAT bool) []byte {
	cs := pngChunks(t, encodePNG(t, w, h))
	exif := chunk("eXIf", photoExif(binary.LittleEndian, true))
	out := []byte(pngSignature)
	out = append(out, cs[0]...) // IHDR
	out = append(out, chunk("iCCP", append([]byte("test profile\x00\x00"), deflate(t, testICC())...))...)
	if !exifAfterIDAT {
		out = append(out, exif...)
	}
	out = append(out, chunk("tEXt", []byte("Author\x00Jane Photographer"))...)
	out = append(out, chunk("iTXt", []byte("XML:com.adobe.xmp\x00\x00\x00\x00\x00"+testXMP))...)
	out = append(out, chunk("tIME", []byte{0x07, 0xea, 11, 30, 12, 34, 56})...)
	for _, c := range cs[1 : len(cs)-1] {
		out = append(out, c...)
	}
	if exifAfterIDAT {
		out = append(out, exif...)
	}
	out = append(out, chunk("tEXt", []byte("Comment\x00taken at home"))...)
	return append(out, cs[len(cs)-1]...)
}

func deflate(t testing.TB, b []byte) []byte {
	var z bytes.Buffer
	w := zlib.NewWriter(&z)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return z.Bytes()
}

// bitWriter writes VP8L's least-significant-bit-first bit stream.
type bitWriter struct {
	b    []byte
	nbit uint
}

func (w *bitWriter) write(v uint32, n uint) {
	for i := range n {
		if w.nbit%8 == 0 {
			w.b = append(w.b, 0)
		}
		w.b[len(w.b)-1] |= byte(v>>i&1) << (w.nbit % 8)
		w.nbit++
	}
}

// vp8l is a lossless WebP bitstream (RFC 9649 §3) of w × h pixels of one colour: no transform,
// no colour cache, five simple prefix codes of one symbol each, so each pixel takes no bits.
func vp8l(w, h int, c color.RGBA) []byte {
	bw := &bitWriter{b: []byte{0x2f}, nbit: 8}
	bw.write(uint32(w-1), 14)
	bw.write(uint32(h-1), 14)
	bw.write(0, 1) // alpha_is_used
	bw.write(0, 3) // version
	bw.write(0, 1) // no transform
	bw.write(0, 1) // no colour cache
	bw.write(0, 1) // no meta prefix codes
	for _, sym := range []uint8{c.G, c.R, c.B, c.A} {
		bw.write(1, 1) // simple code
		bw.write(0, 1) // one symbol
		bw.write(1, 1) // of 8 bits
		bw.write(uint32(sym), 8)
	}
	bw.write(1, 1) // distance: simple code, one 1-bit symbol 0
	bw.write(0, 1)
	bw.write(0, 1)
	bw.write(0, 1)
	return bw.b
}

func riffChunk(fourcc string, data []byte) []byte {
	c := append([]byte(fourcc), 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(c[4:], uint32(len(data)))
	c = append(c, data...)
	if len(data)%2 == 1 {
		c = append(c, 0)
	}
	return c
}

func riff(chunks ...[]byte) []byte {
	var body []byte
	for _, c := range chunks {
		body = append(body, c...)
	}
	out := append([]byte("RIFF\x00\x00\x00\x00WEBP"), body...)
	binary.LittleEndian.PutUint32(out[4:], uint32(4+len(body)))
	return out
}

func vp8x(flags byte, w, h int) []byte {
	d := make([]byte, 10)
	d[0] = flags
	d[4], d[5], d[6] = byte(w-1), byte((w-1)>>8), byte((w-1)>>16)
	d[7], d[8], d[9] = byte(h-1), byte((h-1)>>8), byte((h-1)>>16)
	return riffChunk("VP8X", d)
}

// photoWebP is an extended WebP with ICC, the image, then EXIF (with GPS) and XMP.
func photoWebP(w, h int) []byte {
	return riff(
		vp8x(0x20|0x08|0x04, w, h),
		riffChunk("ICCP", testICC()),
		riffChunk("VP8L", vp8l(w, h, color.RGBA{10, 200, 30, 255})),
		riffChunk("EXIF", photoExif(binary.LittleEndian, true)),
		riffChunk("XMP ", []byte(testXMP)),
	)
}

// exiftool reads b with exiftool and returns its tags by group:name (-G1), numbers as numbers.
func exiftool(t testing.TB, b []byte) map[string]any {
	t.Helper()
	return testkit.Exiftool(t, b)
}

// metadataTags is what exiftool found in the file itself, leaving out what describes the file
// (size, type), exiftool's own and its computed tags, and the image's dimensions.
func metadataTags(tags map[string]any) map[string]any {
	m := map[string]any{}
	for k, v := range tags {
		g, _, _ := strings.Cut(k, ":")
		switch g {
		case "SourceFile", "ExifTool", "System", "File", "Composite", "JFIF":
			continue
		}
		m[k] = v
	}
	return m
}

func gpsTags(tags map[string]any) []string {
	var found []string
	for k := range tags {
		if strings.Contains(strings.ToUpper(k), "GPS") {
			found = append(found, k)
		}
	}
	return found
}

// crcOK checks every PNG chunk's CRC.
func crcOK(b []byte) bool {
	for p := 8; p+12 <= len(b); {
		n := int(binary.BigEndian.Uint32(b[p:]))
		if p+12+n > len(b) || crc32.ChecksumIEEE(b[p+4:p+8+n]) != binary.BigEndian.Uint32(b[p+8+n:]) {
			return false
		}
		p += 12 + n
	}
	return true
}
