package imageguard

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"image/jpeg"
	"strings"
	"testing"
)

// extendedXMPJPEG is a JPEG whose main XMP names an extension (xmpNote:HasExtendedXMP) and
// whose extension, ext, comes in APP1 ExtendedXMP segments cut at the offsets in cuts.
func extendedXMPJPEG(t testing.TB, ext string, cuts ...int) []byte {
	var parts [][2]int
	from := 0
	for _, to := range append(cuts, len(ext)) {
		parts = append(parts, [2]int{from, to})
		from = to
	}
	return extendedXMPParts(t, ext, parts)
}

// extendedXMPParts is extendedXMPJPEG with the portions given as [from, to) ranges of ext.
func extendedXMPParts(t testing.TB, ext string, parts [][2]int) []byte {
	sum := md5.Sum([]byte(ext))
	guid := strings.ToUpper(hex.EncodeToString(sum[:]))
	main := `<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">` +
		`<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" ` +
		`xmlns:xmpNote="http://ns.adobe.com/xmp/note/" xmlns:dc="http://purl.org/dc/elements/1.1/" ` +
		`xmpNote:HasExtendedXMP="` + guid + `"><dc:creator><rdf:Seq><rdf:li>Jane Photographer</rdf:li></rdf:Seq>` +
		`</dc:creator></rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>`
	segs := [][]byte{segment(mAPP1, []byte("http://ns.adobe.com/xap/1.0/\x00"), []byte(main))}
	for _, p := range parts {
		hdr := append([]byte(xmpExtension+guid), binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, uint32(len(ext))), uint32(p[0]))...)
		segs = append(segs, segment(mAPP1, hdr, []byte(ext[p[0]:p[1]])))
	}
	return insertAfterSOI(encodeJPEG(t, 16, 8), segs...)
}

const extWithGPS = `<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">` +
	`<rdf:Description rdf:about="" xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="48,51.5N"/>` +
	`</rdf:RDF></x:xmpmeta>`

// GPS cut in two across ExtendedXMP segments is found once the portions are joined, and the
// extension goes; an extension without GPS stays, and so does the main XMP.
func TestExtendedXMP(t *testing.T) {
	cut := strings.Index(extWithGPS, "GPS") + 1 // "exif:G" | "PSLatitude"
	withGPS := extendedXMPJPEG(t, extWithGPS, cut)
	before := exiftool(t, withGPS)
	if before["XMP-exif:GPSLatitude"] == nil || before["XMP-dc:Creator"] == nil {
		t.Fatalf("exiftool does not see the extension's GPS: %v", before)
	}
	_, out := mustGuard(t, withGPS, Options{Strip: StripGPS})
	after := exiftool(t, out)
	if g := gpsTags(after); len(g) > 0 {
		t.Errorf("exiftool still finds %v", g)
	}
	if after["XMP-dc:Creator"] != "Jane Photographer" {
		t.Errorf("the main XMP is gone: %v", after)
	}
	decodeSame(t, withGPS, out, jpeg.Decode)

	noGPS := extendedXMPJPEG(t, strings.ReplaceAll(extWithGPS, "exif:GPSLatitude", "exif:UserComment"), cut)
	if _, out := mustGuard(t, noGPS, Options{Strip: StripGPS}); !bytes.Equal(out, noGPS) {
		t.Errorf("an extension without GPS was changed")
	}

	// Portions a reader could join otherwise than the guard: dropped, whatever they say.
	quiet := strings.ReplaceAll(extWithGPS, "GPS", "Gps")
	n := len(quiet)
	for name, b := range map[string][]byte{
		"overlapping": extendedXMPParts(t, quiet, [][2]int{{0, cut}, {cut - 1, n}}),
		"a gap":       extendedXMPParts(t, quiet, [][2]int{{0, cut}, {cut + 1, n}}),
		"short":       extendedXMPParts(t, quiet, [][2]int{{0, cut}}),
		"no header":   insertAfterSOI(encodeJPEG(t, 8, 8), segment(mAPP1, []byte(xmpExtension+"0123"))),
	} {
		if _, out := mustGuard(t, b, Options{Strip: StripGPS}); bytes.Contains(out, []byte(xmpExtension)) {
			t.Errorf("%s: the extension was kept", name)
		}
	}
}
