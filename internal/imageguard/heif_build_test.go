package imageguard

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"cloudinary-upload-api/internal/testkit"
)

// HEIF files for the tests: real ones made by heif-enc (libheif) with tags written by
// exiftool, and synthetic ones laid out by hand after ISO 23008-12 to reach the layouts the
// tools never write.

// tool finds a program the tests need: missing, the test skips, or fails under CI=true.
func tool(t testing.TB, name, debian string) string {
	t.Helper()
	return testkit.Tool(t, name, debian)
}

// heifPhoto encodes a w × h test image with heif-enc (HEIC or AVIF by ext, "heic" or "avif"),
// then has exiftool write tags into it (arguments such as "-GPSLatitude=48.85").
func heifPhoto(t testing.TB, ext string, w, h int, tags ...string) []byte {
	t.Helper()
	enc := tool(t, "heif-enc", "libheif-examples")
	dir := t.TempDir()
	var buf bytes.Buffer
	if err := png.Encode(&buf, testImage(w, h)); err != nil {
		t.Fatal(err)
	}
	in, out := filepath.Join(dir, "in.png"), filepath.Join(dir, "photo."+ext)
	if err := os.WriteFile(in, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(enc, "-q", "90", "-o", out, in).CombinedOutput(); err != nil {
		t.Fatalf("heif-enc: %v\n%s", err, b)
	}
	if len(tags) > 0 {
		et := tool(t, "exiftool", "libimage-exiftool-perl")
		args := append([]string{"-overwrite_original"}, tags...)
		if b, err := exec.Command(et, append(args, out)...).CombinedOutput(); err != nil {
			t.Fatalf("exiftool %v: %v\n%s", tags, err, b)
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// heifPixels decodes a HEIC or AVIF with heif-convert (libheif) into an image.
func heifPixels(t testing.TB, b []byte) image.Image {
	t.Helper()
	conv := tool(t, "heif-convert", "libheif-examples")
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.heif"), filepath.Join(dir, "out.png")
	if err := os.WriteFile(in, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if o, err := exec.Command(conv, in, out).CombinedOutput(); err != nil {
		t.Fatalf("heif-convert: %v\n%s", err, o)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func isoBoxOf(typ string, parts ...[]byte) []byte {
	n := 8
	for _, p := range parts {
		n += len(p)
	}
	b := binary.BigEndian.AppendUint32(nil, uint32(n))
	b = append(b, typ...)
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func fullBoxOf(typ string, version byte, flags uint32, parts ...[]byte) []byte {
	vf := binary.BigEndian.AppendUint32(nil, uint32(version)<<24|flags)
	return isoBoxOf(typ, append([][]byte{vf}, parts...)...)
}

func u16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// synthItem is an item of a synthetic HEIF: its data goes to mdat (method 0) or idat
// (method 1), in as many extents as split says; method 2 is written as such, with no data.
type synthItem struct {
	typ, contentType, encoding string
	data                       []byte
	method                     int
	split                      int  // extents: data cut in this many pieces (0 or 1: one)
	gapAfter                   int  // bytes of mdat between this item's extents
	inFree                     bool // data in a free box between meta and mdat, not in mdat
}

// synthHEIF lays out ftyp, the boxes of before, meta, the boxes of after, then mdat. Item 1
// is the primary image ("hvc1", w × h, a few bytes of data); the items of extra follow.
type synthHEIF struct {
	brand         string
	w, h          uint32
	primary       *synthItem // instead of the stand-in hvc1 item (a grid, say)
	metaBoxes     [][]byte   // more boxes inside meta
	extra         []synthItem
	before, after [][]byte
	mdatFirst     bool
	mdatHeader    string // "large": a 64-bit size; "to end": size 0, to the end of the file
}

// exifItem is an Exif item's payload: the offset to the TIFF header, "Exif\0\0", the TIFF.
func exifItem(tiff []byte) []byte {
	return append(append(u32(6), "Exif\x00\x00"...), tiff...)
}

func (s synthHEIF) build() []byte {
	if s.brand == "" {
		s.brand = "heic"
	}
	ftyp := isoBoxOf("ftyp", []byte(s.brand), u32(0), []byte("mif1"), []byte(s.brand))
	first := synthItem{typ: "hvc1", data: []byte("not really HEVC but a stand-in")}
	if s.primary != nil {
		first = *s.primary
	}
	items := append([]synthItem{first}, s.extra...)
	// Lay out mdat and idat: extents as offsets within each.
	var mdat, idat, free []byte
	extents := make([][][2]uint32, len(items))
	for i, it := range items {
		if it.inFree {
			extents[i] = [][2]uint32{{uint32(len(free)), uint32(len(it.data))}}
			free = append(free, it.data...)
			continue
		}
		pieces := max(it.split, 1)
		step := (len(it.data) + pieces - 1) / pieces
		for p := 0; p < len(it.data); p += step {
			piece := it.data[p:min(p+step, len(it.data))]
			if it.method == 1 {
				extents[i] = append(extents[i], [2]uint32{uint32(len(idat)), uint32(len(piece))})
				idat = append(idat, piece...)
				continue
			}
			extents[i] = append(extents[i], [2]uint32{uint32(len(mdat)), uint32(len(piece))})
			mdat = append(mdat, piece...)
			mdat = append(mdat, make([]byte, it.gapAfter)...)
		}
		if it.method == 2 {
			extents[i] = [][2]uint32{{0, 4}}
		}
	}
	meta := func(mdatAt, freeAt uint32) []byte {
		var infes [][]byte
		for i, it := range items {
			p := [][]byte{u16(uint16(i + 1)), u16(0), []byte(it.typ), []byte("\x00")}
			if it.typ == "mime" {
				p = append(p, []byte(it.contentType+"\x00"))
				if it.encoding != "" {
					p = append(p, []byte(it.encoding+"\x00"))
				}
			}
			infes = append(infes, fullBoxOf("infe", 2, 0, p...))
		}
		iloc := [][]byte{{0x44, 0x40}, u16(uint16(len(items)))}
		for i, it := range items {
			base := mdatAt
			switch {
			case it.method != 0:
				base = 0
			case it.inFree:
				base = freeAt
			}
			iloc = append(iloc, u16(uint16(i+1)), u16(uint16(it.method)), u16(0), u32(base), u16(uint16(len(extents[i]))))
			for _, e := range extents[i] {
				iloc = append(iloc, u32(e[0]), u32(e[1]))
			}
		}
		ispe := fullBoxOf("ispe", 0, 0, u32(s.w), u32(s.h))
		ipma := fullBoxOf("ipma", 0, 0, u32(1), u16(1), []byte{1, 0x81})
		boxes := [][]byte{
			fullBoxOf("hdlr", 0, 0, u32(0), []byte("pict"), make([]byte, 13)),
			fullBoxOf("pitm", 0, 0, u16(1)),
			fullBoxOf("iinf", 0, 0, append([][]byte{u16(uint16(len(items)))}, infes...)...),
			fullBoxOf("iloc", 1, 0, iloc...),
			isoBoxOf("iprp", isoBoxOf("ipco", ispe), ipma),
		}
		if idat != nil {
			boxes = append(boxes, isoBoxOf("idat", idat))
		}
		boxes = append(boxes, s.metaBoxes...)
		return fullBoxOf("meta", 0, 0, boxes...)
	}
	head := bytes.Join(append([][]byte{ftyp}, s.before...), nil)
	after := bytes.Join(s.after, nil)
	if free != nil {
		after = append(isoBoxOf("free", free), after...)
	}
	if s.mdatFirst {
		at := uint32(len(head) + 8)
		return bytes.Join([][]byte{head, isoBoxOf("mdat", mdat), meta(at, 0), after}, nil)
	}
	metaLen := len(meta(0, 0))
	freeAt := uint32(len(head) + metaLen + 8)
	mdatBox := isoBoxOf("mdat", mdat)
	switch s.mdatHeader {
	case "large":
		mdatBox = slices.Concat(u32(1), []byte("mdat"), binary.BigEndian.AppendUint64(nil, uint64(16+len(mdat))), mdat)
	case "to end":
		mdatBox = slices.Concat(u32(0), []byte("mdat"), mdat)
	}
	at := uint32(len(head) + metaLen + len(after) + len(mdatBox) - len(mdat))
	return bytes.Join([][]byte{head, meta(at, freeAt), after, mdatBox}, nil)
}
