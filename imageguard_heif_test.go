package main

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"image/jpeg"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"cloudinary-upload-api/internal/imageguard"
)

// HEIC (the iPhone's format) and AVIF through run(): libheif's heif-enc makes them, exiftool
// gives them a location and is the oracle of what arrives.

// guardTestHEIF encodes guardTestImage as ext ("heic" or "avif") with heif-enc, then has
// exiftool write tags into it.
func guardTestHEIF(t *testing.T, ext string, tags ...string) []byte {
	t.Helper()
	enc := needTool(t, "heif-enc", "libheif-examples")
	dir := t.TempDir()
	pngFile, out := filepath.Join(dir, "in.png"), filepath.Join(dir, "photo."+ext)
	if err := os.WriteFile(pngFile, guardTestPNGPixels(t), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(enc, "-o", out, pngFile).CombinedOutput(); err != nil {
		t.Fatalf("heif-enc: %v\n%s", err, b)
	}
	if len(tags) > 0 {
		et := needTool(t, "exiftool", "libimage-exiftool-perl")
		if b, err := exec.Command(et, append(append([]string{"-overwrite_original"}, tags...), out)...).CombinedOutput(); err != nil {
			t.Fatalf("exiftool: %v\n%s", err, b)
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// guardTestPNGPixels is guardTestImage as a plain PNG, with no metadata.
func guardTestPNGPixels(t *testing.T) []byte {
	b := guardTestPNG(t)
	i := bytes.Index(b, []byte("eXIf")) - 4
	n := int(binary.BigEndian.Uint32(b[i:]))
	return slices.Concat(b[:i], b[i+12+n:])
}

// exifBlockOf is the TIFF structure exiftool reads as the file's EXIF (-b -EXIF).
func exifBlockOf(t *testing.T, b []byte) []byte {
	t.Helper()
	cmd := exec.Command(needTool(t, "exiftool", "libimage-exiftool-perl"), "-b", "-EXIF", "-")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil || len(out) < 8 {
		t.Fatalf("exiftool -b -EXIF: %v (%d bytes)", err, len(out))
	}
	return out
}

var heifGPSTags = []string{"-GPSLatitude=48.8584", "-GPSLatitudeRef=N", "-GPSLongitude=2.2945", "-GPSLongitudeRef=E", "-Make=Cam", "-Orientation#=6"}

// TestHEIFMetadataRemoved uploads a HEIC and an AVIF with GPS to every store and path: what
// arrives has no GPS for exiftool, keeps its other EXIF, and differs from what was sent only
// inside its EXIF block.
func TestHEIFMetadataRemoved(t *testing.T) {
	photos := map[string][]byte{
		"photo.heic": guardTestHEIF(t, "heic", heifGPSTags...),
		"photo.avif": guardTestHEIF(t, "avif", heifGPSTags...),
	}
	for name, b := range photos {
		if tags := exiftoolTags(t, b); tags["GPS:GPSLatitude"] == nil || tags["IFD0:Make"] != "Cam" {
			t.Fatalf("%s: the test photo lacks GPS or Make: %v", name, tags)
		}
	}
	cases := []struct{ store, mode string }{
		{"cloudinary", ""}, {"cloudinary-chunked", ""}, {"local", ""},
		{"cloudinary", "all"}, {"cloudinary", "off"},
	}
	for _, c := range cases {
		for name, photo := range photos {
			t.Run(c.store+"/"+c.mode+"/"+name, func(t *testing.T) {
				fake := newFakeCloudinary(t)
				env, dir := storeEnv(t, fake, c.store)
				if c.mode != "" {
					env["STRIP_METADATA"] = c.mode
				}
				srv := startServer(t, env)
				resp := sendToStore(t, c.store, srv.url, name, photo)
				decodeOK(t, resp, "upload")
				want := map[string]string{"": "gps", "all": "all", "off": "none"}[c.mode]
				if got := resp.Header.Get("X-Metadata-Removed"); got != want {
					t.Errorf("X-Metadata-Removed %q, want %q", got, want)
				}
				arrived := storedFile(t, c.store, fake, dir)
				if len(arrived) != len(photo) {
					t.Fatalf("%d bytes arrived of %d: HEIF is rewritten in place", len(arrived), len(photo))
				}
				tags := exiftoolTags(t, arrived)
				switch want {
				case "none":
					if !bytes.Equal(arrived, photo) {
						t.Errorf("STRIP_METADATA=off changed the file")
					}
					return
				case "gps":
					for k := range tags {
						if strings.Contains(k, "GPS") {
							t.Errorf("GPS arrived: %s = %v", k, tags[k])
						}
					}
					if tags["IFD0:Make"] != "Cam" || tags["IFD0:Orientation"] != float64(6) {
						t.Errorf("gps removed more than GPS: %v", tags)
					}
				case "all":
					for k := range tags {
						g, _, _ := strings.Cut(k, ":")
						switch {
						case g == "SourceFile", g == "ExifTool", g == "System", g == "File", g == "Composite", g == "QuickTime", g == "Meta":
						case k == "IFD0:Orientation":
						default:
							t.Errorf("with all, exiftool still finds %s = %v", k, tags[k])
						}
					}
				}
				exif := exifBlockOf(t, photo)
				at := bytes.Index(photo, exif)
				if at < 0 {
					t.Fatalf("exiftool's EXIF block is not in the file")
				}
				for i := range photo {
					if photo[i] != arrived[i] && (i < at || i >= at+len(exif)) {
						t.Fatalf("byte %d changed, outside the EXIF block [%d, %d)", i, at, at+len(exif))
					}
				}
			})
		}
	}
}

// A HEIC whose ispe claims 60,000 × 60,000 pixels gets 413, and nothing is stored.
func TestHEIFTooManyPixels(t *testing.T) {
	b := guardTestHEIF(t, "heic")
	for i := 0; ; i++ { // every ispe box: version and flags, then width and height
		j := bytes.Index(b[i:], []byte("ispe"))
		if j < 0 {
			break
		}
		i += j
		binary.BigEndian.PutUint32(b[i+8:], 60_000)
		binary.BigEndian.PutUint32(b[i+12:], 60_000)
	}
	refusedByEachStore(t, []string{"cloudinary", "local"}, "huge.heic", b,
		refusal{status: http.StatusRequestEntityTooLarge, contains: "image is 60000 × 60000 pixels"})
}

// A JPEG whose GPS is cut in two across ExtendedXMP segments (no one segment says "GPS")
// arrives without it.
func TestExtendedXMPGPSRemoved(t *testing.T) {
	ext := `<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">` +
		`<rdf:Description rdf:about="" xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="48,51.5N"/>` +
		`</rdf:RDF></x:xmpmeta>`
	sum := md5.Sum([]byte(ext))
	guid := strings.ToUpper(hex.EncodeToString(sum[:]))
	main := `<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">` +
		`<rdf:Description rdf:about="" xmlns:xmpNote="http://ns.adobe.com/xmp/note/" xmlns:dc="http://purl.org/dc/elements/1.1/" ` +
		`xmpNote:HasExtendedXMP="` + guid + `" dc:format="image/jpeg"/></rdf:RDF></x:xmpmeta>`
	seg := func(payload string) []byte {
		n := len(payload) + 2
		return append([]byte{0xFF, 0xE1, byte(n >> 8), byte(n)}, payload...)
	}
	portion := func(from, to int) []byte {
		hdr := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, uint32(len(ext))), uint32(from))
		return seg("http://ns.adobe.com/xmp/extension/\x00" + guid + string(hdr) + ext[from:to])
	}
	cut := strings.Index(ext, "GPS") + 1
	var img bytes.Buffer
	if err := jpeg.Encode(&img, guardTestImage(), nil); err != nil {
		t.Fatal(err)
	}
	photo := slices.Concat(img.Bytes()[:2], seg("http://ns.adobe.com/xap/1.0/\x00"+main), portion(0, cut), portion(cut, len(ext)), img.Bytes()[2:])
	if tags := exiftoolTags(t, photo); tags["XMP-exif:GPSLatitude"] == nil {
		t.Fatalf("exiftool does not see the GPS: %v", tags)
	}
	fake := newFakeCloudinary(t)
	srv := startServer(t, baseEnv(t, fake))
	ct, body := multipartBody(t, nil, "photo.jpg", photo)
	resp := postForm(t, newClient(t), srv.url, ct, bytes.NewReader(body))
	decodeOK(t, resp, "upload")
	if got := resp.Header.Get("X-Metadata-Removed"); got != "gps" {
		t.Errorf("X-Metadata-Removed %q", got)
	}
	arrived := storedFile(t, "cloudinary", fake, "")
	tags := exiftoolTags(t, arrived)
	for k := range tags {
		if strings.Contains(k, "GPS") {
			t.Errorf("GPS arrived: %s = %v", k, tags[k])
		}
	}
	if tags["XMP-dc:Format"] != "image/jpeg" {
		t.Errorf("the main XMP is gone: %v", tags)
	}
	samePixels(t, photo, arrived)
}

// A HEIC whose problem shows only after its first bytes went upstream (here a moov box after
// mdat, which can carry a location the guard does not walk) fails with 400, and nothing is
// stored, in Cloudinary or on disk.
func TestHEIFRefusedAfterFirstBytesStoresNothing(t *testing.T) {
	b := append(guardTestHEIF(t, "heic", heifGPSTags...), 0, 0, 0, 8, 'm', 'o', 'o', 'v')
	refusedAfterFirstBytes(t, "photo.heic", b, "malformed HEIF: an image sequence (moov box)")
}

// Every ISO base media file that the type sniff calls an image is walked by the guard, and no
// other: the guard's list of brands is mimetype's (and the server refuses a type of
// imageguard.Checks that the guard gives no format). Files of an ftyp box alone: the guard
// refuses them (no meta box) or passes them on, which tells which it took for HEIF.
func TestHEIFBrandsAreTheSniffs(t *testing.T) {
	brands := []string{"heic", "heix", "hevc", "hevx", "mif1", "msf1", "heim", "heis", "avic", "hevm", "hevs", "avcs",
		"avif", "avis", "mif2", "miaf", "isom", "iso2", "mp41", "mp42", "qt  ", "M4V ", "M4A ", "3gp4", "crx ", "jxl ", "jp2 ", "dash", "MSNV"}
	for _, brand := range brands {
		head := slices.Concat([]byte{0, 0, 0, 24}, []byte("ftyp"+brand), []byte{0, 0, 0, 0}, []byte("mif1"+brand))
		image := strings.HasPrefix(sniffType(head).String(), "image/")
		res, err := imageguard.Guard(head, bytes.NewReader(nil), imageguard.Options{})
		walked := err != nil || res.Format != ""
		if image != walked {
			t.Errorf("brand %q: sniffed %s, walked by the guard %v", brand, sniffType(head), walked)
		}
	}
}
