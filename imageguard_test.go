package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"cloudinary-upload-api/internal/formstream"
	"cloudinary-upload-api/internal/testkit"
)

// Photos for the end-to-end tests of the image guard, built here (the package's own tests
// build richer ones): pixels from image/jpeg and image/png, an EXIF block laid out by hand
// after TIFF 6.0 with Make, Orientation 6 and a GPS IFD, an XMP packet and a comment.

// guardTestExif is a big-endian TIFF structure: IFD0 {Make, Orientation=6, GPS pointer}, then
// the GPS IFD {GPSLatitudeRef N, GPSLatitude 48/1 51/1 29/1}.
func guardTestExif() []byte {
	bo := binary.BigEndian
	b := []byte("MM\x00*\x00\x00\x00\x08")
	entry := func(tag, typ uint16, count, value uint32) {
		b = bo.AppendUint16(b, tag)
		b = bo.AppendUint16(b, typ)
		b = bo.AppendUint32(b, count)
		b = bo.AppendUint32(b, value)
	}
	const ifd0 = 8
	const gps = ifd0 + 2 + 3*12 + 4
	const lat = gps + 2 + 2*12 + 4
	b = bo.AppendUint16(b, 3)
	entry(0x010F, 2, 4, 'C'<<24|'a'<<16|'m'<<8) // Make "Cam"
	entry(0x0112, 3, 1, 6<<16)                  // Orientation 6 (a SHORT sits in the first 2 bytes)
	entry(0x8825, 4, 1, gps)                    // GPS IFD pointer
	b = bo.AppendUint32(b, 0)
	b = bo.AppendUint16(b, 2)
	entry(0x0001, 2, 2, 'N'<<24) // GPSLatitudeRef
	entry(0x0002, 5, 3, lat)     // GPSLatitude
	b = bo.AppendUint32(b, 0)
	for _, v := range []uint32{48, 1, 51, 1, 29, 1} {
		b = bo.AppendUint32(b, v)
	}
	return b
}

func guardTestJPEG(t testing.TB) []byte {
	var img bytes.Buffer
	if err := jpeg.Encode(&img, guardTestImage(), nil); err != nil {
		t.Fatal(err)
	}
	seg := func(marker byte, payload string) []byte {
		n := len(payload) + 2
		return append([]byte{0xFF, marker, byte(n >> 8), byte(n)}, payload...)
	}
	xmp := `<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">` +
		`<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:format="image/jpeg"/></rdf:RDF></x:xmpmeta>`
	return slices.Concat(img.Bytes()[:2],
		seg(0xE1, "Exif\x00\x00"+string(guardTestExif())),
		seg(0xE1, "http://ns.adobe.com/xap/1.0/\x00"+xmp),
		seg(0xFE, "taken at home"),
		img.Bytes()[2:])
}

func guardTestPNG(t testing.TB) []byte {
	var img bytes.Buffer
	if err := png.Encode(&img, guardTestImage()); err != nil {
		t.Fatal(err)
	}
	chunk := func(typ, data string) []byte {
		c := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
		c = append(c, typ+data...)
		return binary.BigEndian.AppendUint32(c, crc32.ChecksumIEEE(c[4:]))
	}
	b := img.Bytes()
	return slices.Concat(b[:33], chunk("eXIf", string(guardTestExif())), b[33:len(b)-12],
		chunk("tEXt", "Comment\x00taken at home"), b[len(b)-12:])
}

func guardTestImage() image.Image { return testkit.Image(48, 32) }

// needTool finds a program a test needs: missing, the test skips, or fails under CI=true.
func needTool(t *testing.T, name, debian string) string {
	t.Helper()
	return testkit.Tool(t, name, debian)
}

// exiftoolTags reads b with exiftool (-G1: tags by group:name).
func exiftoolTags(t *testing.T, b []byte) map[string]any { t.Helper(); return testkit.Exiftool(t, b) }

func samePixels(t *testing.T, a, b []byte) {
	t.Helper()
	ia, _, err := image.Decode(bytes.NewReader(a))
	if err != nil {
		t.Fatalf("decode original: %v", err)
	}
	ib, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("decode what arrived: %v", err)
	}
	r := ia.Bounds()
	if ib.Bounds() != r {
		t.Fatalf("bounds %v, want %v", ib.Bounds(), r)
	}
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if ia.At(x, y) != ib.At(x, y) {
				t.Fatalf("pixel (%d,%d) differs", x, y)
			}
		}
	}
}

// TestImageMetadataRemoved uploads photos with GPS through run() to every store and path,
// and asks exiftool what arrived.
func TestImageMetadataRemoved(t *testing.T) {
	photos := map[string][]byte{"photo.jpg": guardTestJPEG(t), "photo.png": guardTestPNG(t)}
	for name, b := range photos {
		if tags := exiftoolTags(t, b); tags["GPS:GPSLatitude"] == nil || tags["IFD0:Make"] == nil {
			t.Fatalf("%s: the test photo lacks GPS or Make: %v", name, tags)
		}
	}
	for _, store := range []string{"cloudinary", "cloudinary-chunked", "local"} {
		for _, mode := range []string{"", "gps", "all", "off"} {
			for name, photo := range photos {
				t.Run(store+"/"+mode+"/"+name, func(t *testing.T) {
					fake := newFakeCloudinary(t)
					env, dir := storeEnv(t, fake, store)
					if mode != "" {
						env["STRIP_METADATA"] = mode
					}
					srv := startServer(t, env)
					resp := sendToStore(t, store, srv.url, name, photo)
					decodeOK(t, resp, "upload")
					want := map[string]string{"": "gps", "gps": "gps", "all": "all", "off": "none"}[mode]
					if got := resp.Header.Get("X-Metadata-Removed"); got != want {
						t.Errorf("X-Metadata-Removed %q, want %q", got, want)
					}
					arrived := storedFile(t, store, fake, dir)
					if store == "cloudinary-chunked" && len(fake.Uploads()[0].Chunks) == 0 {
						t.Errorf("the upload did not take the chunked path")
					}
					tags := exiftoolTags(t, arrived)
					switch want {
					case "none":
						if !bytes.Equal(arrived, photo) {
							t.Errorf("STRIP_METADATA=off changed the file")
						}
					case "gps":
						if tags["GPS:GPSLatitude"] != nil || tags["GPS:GPSLatitudeRef"] != nil {
							t.Errorf("GPS arrived: %v", tags)
						}
						if tags["IFD0:Make"] != "Cam" || tags["IFD0:Orientation"] != float64(6) {
							t.Errorf("gps removed more than GPS: %v", tags)
						}
					case "all":
						for k := range tags {
							g, tag, _ := strings.Cut(k, ":")
							switch {
							case g == "SourceFile", g == "ExifTool", g == "System", g == "File", g == "Composite", g == "JFIF":
							case g == "PNG" && slices.Contains([]string{"ImageWidth", "ImageHeight", "BitDepth", "ColorType", "Compression", "Filter", "Interlace"}, tag):
							case k == "IFD0:Orientation":
							default:
								t.Errorf("with all, exiftool still finds %s = %v", k, tags[k])
							}
						}
						if tags["IFD0:Orientation"] != float64(6) {
							t.Errorf("Orientation lost: %v", tags)
						}
					}
					samePixels(t, photo, arrived)
				})
			}
		}
	}
}

// storedFile is what the store received.
func storedFile(t *testing.T, store string, fake *fakeCloudinary, dir string) []byte {
	t.Helper()
	if store == "local" {
		var found []string
		for _, f := range listFiles(t, dir) {
			if strings.HasPrefix(f, "files"+string(filepath.Separator)) {
				found = append(found, f)
			}
		}
		if len(found) != 1 {
			t.Fatalf("local store holds %v, want one file", found)
		}
		b, err := os.ReadFile(filepath.Join(dir, found[0]))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ups := fake.Uploads()
	if len(ups) != 1 {
		t.Fatalf("fake stored %d uploads, want 1", len(ups))
	}
	if int64(len(ups[0].Prefix)) != ups[0].Bytes {
		t.Fatalf("fake kept %d of %d bytes", len(ups[0].Prefix), ups[0].Bytes)
	}
	return ups[0].Prefix
}

// A JPEG's bytes after its segments reach the uploader through the request's own buffer: the
// guard hands back the reader it was given.
func TestImageGuardKeepsTheFastPath(t *testing.T) {
	photo := append(guardTestJPEG(t), make([]byte, 64<<10)...) // after EOI: the guard does not look
	var file io.Reader = &formstream.Part{}
	head, rest, removed, err := guardImage(photo[:sniffLen], file, testConfig().uploadLimits(), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rest.(pieceReader); !ok || rest != file {
		t.Errorf("the file is now %T: the fast path is lost", rest)
	}
	if removed != "gps" || len(head) != sniffLen {
		t.Errorf("removed %q, head of %d bytes", removed, len(head))
	}
}

// guardTestTwoSOF is a JPEG with its frame header twice: the guard cannot tell which one holds.
func guardTestTwoSOF(t *testing.T) []byte {
	b := guardTestJPEG(t)
	i := bytes.Index(b, []byte{0xFF, 0xC0})
	seg := b[i : i+2+int(binary.BigEndian.Uint16(b[i+2:]))]
	return slices.Concat(b[:i], seg, b[i:])
}

// guardTestBomb is a PNG of 40 KB whose header says 100,000 × 100,000 pixels.
func guardTestBomb(t *testing.T) []byte {
	b := slices.Clone(guardTestPNG(t))
	binary.BigEndian.PutUint32(b[16:], 100_000)
	binary.BigEndian.PutUint32(b[20:], 100_000)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return slices.Concat(b, make([]byte, 40<<10))
}

// guardTestHugeMetadata is a JPEG with 17 APP2 segments of 64 KB before its frame header.
func guardTestHugeMetadata(t *testing.T) []byte {
	b := guardTestJPEG(t)
	seg := append([]byte{0xFF, 0xE2, 0xFF, 0xFF}, make([]byte, 0xFFFD)...)
	out := slices.Clone(b[:2])
	for range 17 {
		out = append(out, seg...)
	}
	return append(out, b[2:]...)
}

// A PNG whose structure breaks after its image data has begun going upstream: the upload
// fails with 400 and nothing is stored, in Cloudinary or on disk.
func TestImageMalformedAfterImageDataStoresNothing(t *testing.T) {
	b := guardTestPNG(t)
	broken := slices.Concat(b[:len(b)-12], []byte{0, 0, 0, 40, 't', 'E', 'X', 't', 'c', 'u', 't'}) // a tEXt cut short, no IEND
	refusedAfterFirstBytes(t, "broken.png", broken, "malformed PNG: the file ends inside")
}

// refusedAfterFirstBytes uploads file, whose fault shows only after its first bytes went upstream,
// to each store (Cloudinary in one request and in chunks, the local store): each answers 400 with
// want in its message, and stores nothing.
func refusedAfterFirstBytes(t *testing.T, name string, file []byte, want string) {
	t.Helper()
	refusedByEachStore(t, []string{"cloudinary", "cloudinary-chunked", "local"}, name, file, refusal{status: http.StatusBadRequest, contains: want})
}

// refusedByEachStore sends file as name to each of stores (as storeEnv names them), on the
// defaults: each answers the refusal want, and stores nothing.
func refusedByEachStore(t *testing.T, stores []string, name string, file []byte, want refusal) {
	t.Helper()
	for _, store := range stores {
		t.Run(store, func(t *testing.T) {
			fake := newFakeCloudinary(t)
			env, dir := storeEnv(t, fake, store)
			srv := startServer(t, env)
			checkRefused(t, sendToStore(t, store, srv.url, name, file), fake, dir, want)
		})
	}
}

// storeEnv is baseEnv for one of the stores the image tests send to: "cloudinary",
// "cloudinary-chunked" (the same, to which sendToStore sends the file in chunks) or "local",
// in dir (a new empty directory for every store, so that checks of it hold for all).
func storeEnv(t *testing.T, fake *fakeCloudinary, store string) (env map[string]string, dir string) {
	t.Helper()
	env, dir = baseEnv(t, fake), t.TempDir()
	if store == "local" {
		env["STORAGE"], env["UPLOAD_DIR"] = "local", dir
	}
	return env, dir
}

// sendToStore posts file as the form's one file, name; to "cloudinary-chunked" streamed with no
// length, so that the server sends it to Cloudinary in chunks.
func sendToStore(t *testing.T, store, baseURL, name string, file []byte) *http.Response {
	t.Helper()
	if store == "cloudinary-chunked" {
		resp, err := streamForm(context.Background(), t, newClient(t), baseURL, bytes.NewReader(file), -1)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	ct, body := multipartBody(t, nil, name, file)
	return postForm(t, newClient(t), baseURL, ct, bytes.NewReader(body))
}

// refusal is the answer to a refused file: its status, and its whole message or a part of it.
type refusal struct {
	status            int
	message, contains string
}

// checkRefused checks that resp is the refusal want, and that neither the fake nor the local
// store in dir kept anything.
func checkRefused(t *testing.T, resp *http.Response, fake *fakeCloudinary, dir string, want refusal) {
	t.Helper()
	var got apiErrorBody
	decodeBody(t, resp, &got)
	if resp.StatusCode != want.status || (want.message != "" && got.Error.Message != want.message) ||
		!strings.Contains(got.Error.Message, want.contains) {
		t.Errorf("status %d %q, want %d %q", resp.StatusCode, got.Error.Message, want.status, want.message+want.contains)
	}
	if n := len(fake.Uploads()); n != 0 {
		t.Errorf("the fake stored %d uploads", n)
	}
	for _, f := range listFiles(t, dir) {
		if strings.HasPrefix(f, "files"+string(filepath.Separator)) {
			t.Errorf("the local store kept %s", f)
		}
	}
}

// guardTestGIFFrameFar is a two-frame GIF whose canvas is 16 × 16 but whose second frame sits
// at x = 30,000: seen only as the file streams, after its first bytes went upstream.
func guardTestGIFFrameFar(t *testing.T) []byte {
	pal := color.Palette{color.Black, color.White}
	g := &gif.GIF{Config: image.Config{Width: 16, Height: 16, ColorModel: pal}}
	for range 2 {
		g.Image = append(g.Image, image.NewPaletted(image.Rect(0, 0, 16, 16), pal))
		g.Delay = append(g.Delay, 10)
	}
	var buf bytes.Buffer
	if err := gif.EncodeAll(&buf, g); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	i := bytes.LastIndex(b, []byte{0x2C, 0, 0, 0, 0, 16, 0, 16, 0})
	binary.LittleEndian.PutUint16(b[i+1:], 30_000)
	return b
}

// Several files in one request: each is guarded on its own, and X-Metadata-Removed lists what
// was removed from each file part in order ("none" for one that was refused).
func TestImageGuardSeveralFiles(t *testing.T) {
	fake := newFakeCloudinary(t)
	srv := startServer(t, baseEnv(t, fake))
	jpg, png := guardTestJPEG(t), guardTestPNG(t)
	ct, body := buildForm(t, filePartOf("file", "a.jpg", jpg), filePartOf("file", "bomb.png", guardTestBomb(t)), filePartOf("file", "c.png", png))
	resp := postForm(t, newClient(t), srv.url, ct, bytes.NewReader(body))
	var got filesAnswerBody
	decodeBody(t, resp, &got)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || got.Error == nil || !strings.Contains(got.Error.Message, "image is 100000 × 100000 pixels") {
		t.Fatalf("status %d, error %+v; want the bomb's 413 on top", resp.StatusCode, got.Error)
	}
	if len(got.Files) != 3 || got.Files[0]["public_id"] == nil || got.Files[2]["public_id"] == nil {
		t.Fatalf("files %v; want stored, refused, stored", got.Files)
	}
	if h := resp.Header.Get("X-Metadata-Removed"); h != "gps, none, gps" {
		t.Errorf("X-Metadata-Removed %q, want %q", h, "gps, none, gps")
	}
	ups := fake.Uploads()
	if len(ups) != 2 {
		t.Fatalf("fake stored %d files, want 2", len(ups))
	}
	for i, orig := range [][]byte{jpg, png} {
		if int64(len(ups[i].Prefix)) != ups[i].Bytes {
			t.Fatalf("fake kept %d of %d bytes", len(ups[i].Prefix), ups[i].Bytes)
		}
		if tags := exiftoolTags(t, ups[i].Prefix); tags["GPS:GPSLatitude"] != nil || tags["IFD0:Make"] != "Cam" {
			t.Errorf("file %d: exiftool finds %v; want no GPS, the rest kept", i, tags)
		}
		samePixels(t, orig, ups[i].Prefix)
	}
}
