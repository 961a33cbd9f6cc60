package main

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"net/http"
	"slices"
	"strings"
	"testing"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"

	"cloudinary-upload-api/internal/imageguard"
	"cloudinary-upload-api/internal/testkit"
)

// Every image type that ALLOWED_TYPES=image/* admits has its size read, its frames counted:
// the attack run's files, each a few bytes of header claiming a size, get 413 and nothing is
// stored; real files of the same formats are stored unchanged.

// dimsBMP is a BMP of 58 bytes claiming w × h.
func dimsBMP(w, h uint32) []byte {
	b := make([]byte, 58)
	le := binary.LittleEndian
	copy(b, "BM")
	le.PutUint32(b[2:], 58)
	le.PutUint32(b[10:], 54)
	le.PutUint32(b[14:], 40)
	le.PutUint32(b[18:], w)
	le.PutUint32(b[22:], h)
	le.PutUint16(b[26:], 1)
	le.PutUint16(b[28:], 24)
	return b
}

// dimsTIFF is a little-endian TIFF whose one IFD (at offset 8) claims w × h.
func dimsTIFF(w, h uint32) []byte {
	le := binary.LittleEndian
	b := le.AppendUint32([]byte("II*\x00"), 8)
	b = le.AppendUint16(b, 2)
	for _, e := range [][2]uint32{{256, w}, {257, h}} {
		b = le.AppendUint16(b, uint16(e[0]))
		b = le.AppendUint16(b, 4) // LONG
		b = le.AppendUint32(b, 1)
		b = le.AppendUint32(b, e[1])
	}
	return le.AppendUint32(b, 0)
}

// dimsPSD is a Photoshop file claiming w × h, its sections empty.
func dimsPSD(w, h uint32) []byte {
	b := append([]byte("8BPS\x00\x01"), make([]byte, 6)...)
	b = append(b, 0, 3)
	b = binary.BigEndian.AppendUint32(b, h)
	b = binary.BigEndian.AppendUint32(b, w)
	b = append(b, 0, 8, 0, 3)
	return append(b, make([]byte, 12)...) // no colour mode data, image resources or layers
}

// dimsPNGChunk is a PNG chunk with its CRC.
func dimsPNGChunk(typ string, data []byte) []byte {
	c := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	c = append(append(c, typ...), data...)
	return binary.BigEndian.AppendUint32(c, crc32.ChecksumIEEE(c[4:]))
}

// dimsICO is an icon whose one image is a PNG whose IHDR claims w × h (the directory says 16).
func dimsICO(t *testing.T, w, h uint32) []byte {
	p := testPNG(t, 16, 16)
	binary.BigEndian.PutUint32(p[16:], w)
	binary.BigEndian.PutUint32(p[20:], h)
	binary.BigEndian.PutUint32(p[29:], crc32.ChecksumIEEE(p[12:29]))
	b := []byte{0, 0, 1, 0, 1, 0, 16, 16, 0, 0, 1, 0, 32, 0}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(p)))
	b = binary.LittleEndian.AppendUint32(b, 22)
	return append(b, p...)
}

// dimsWebP is an extended WebP with a 1 × 1 canvas around a VP8L image whose header says
// 16383 × 16383.
func dimsWebP() []byte {
	vp8l := []byte{0x2f, 0xfe, 0xbf, 0xff, 0x0f, 0, 0, 0} // width-1 and height-1: 16382 in 14 bits each
	body := append([]byte("WEBPVP8X\x0a\x00\x00\x00"), make([]byte, 10)...)
	body = append(body, "VP8L"...)
	body = binary.LittleEndian.AppendUint32(body, uint32(len(vp8l)))
	body = append(body, vp8l...)
	return append(binary.LittleEndian.AppendUint32([]byte("RIFF"), uint32(len(body))), body...)
}

// dimsAPNG is a real 8 × 8 PNG made an animation of n frames, the last one's fcTL claiming
// fw × fh.
func dimsAPNG(t *testing.T, n int, fw, fh uint32) []byte {
	p := testPNG(t, 8, 8)
	be := binary.BigEndian
	actl := be.AppendUint32(nil, uint32(n))
	out := slices.Concat(p[:33], dimsPNGChunk("acTL", be.AppendUint32(actl, 0)))
	idat := p[33 : len(p)-12]
	for i := range n {
		w, h := uint32(8), uint32(8)
		if i == n-1 {
			w, h = fw, fh
		}
		d := be.AppendUint32(nil, uint32(2*i))
		d = be.AppendUint32(be.AppendUint32(d, w), h)
		d = append(d, make([]byte, 8)...)
		out = append(out, dimsPNGChunk("fcTL", append(d, 0, 1, 0, 10, 0, 0))...)
		if i == 0 {
			out = append(out, idat...)
			continue
		}
		data := be.AppendUint32(nil, uint32(2*i+1))
		out = append(out, dimsPNGChunk("fdAT", append(data, idat[8:len(idat)-4]...))...)
	}
	return append(out, p[len(p)-12:]...)
}

// dimsGIF is a GIF of n frames of w × h, one byte of image data each.
func dimsGIF(n int, w, h uint16) []byte {
	le := binary.LittleEndian
	b := le.AppendUint16(le.AppendUint16([]byte("GIF89a"), w), h)
	b = append(b, 0, 0, 0)
	for range n {
		b = append(b, 0x2C, 0, 0, 0, 0)
		b = le.AppendUint16(le.AppendUint16(b, w), h)
		b = append(b, 0, 2, 1, 0x44, 0)
	}
	return append(b, 0x3B)
}

func TestImageFormatsMeasured(t *testing.T) {
	const big = "more than 20000 on a side or 50000000 in all (MAX_IMAGE_DIMENSION, MAX_PIXELS)"
	cases := []struct {
		name string
		file []byte
		want string
	}{
		{"bomb.bmp", dimsBMP(60000, 60000), "image is 60000 × 60000 pixels: " + big},
		{"bomb.tiff", dimsTIFF(1_000_000, 1_000_000), "image is 1000000 × 1000000 pixels: " + big},
		{"bomb.psd", dimsPSD(1_000_000, 1_000_000), "image is 1000000 × 1000000 pixels: " + big},
		{"bomb.ico", dimsICO(t, 60000, 60000), "image is 60000 × 60000 pixels: " + big},
		{"bomb.webp", dimsWebP(), "image is 16383 × 16383 pixels: " + big},
		{"bomb.png", dimsAPNG(t, 3, 60000, 60000), "image is 60000 × 60000 pixels: " + big},
		{"bomb.gif", dimsGIF(5000, 7000, 7000), "image's frames add up to more than 2000000000 pixels (MAX_ANIMATION_PIXELS)"},
		{"many.gif", dimsGIF(1001, 10, 10), "image has more than 1000 frames (MAX_FRAMES)"},
	}
	for _, store := range []string{"cloudinary", "local"} {
		for _, mode := range []string{"gps", "off"} {
			for _, c := range cases {
				t.Run(store+"/"+mode+"/"+c.name, func(t *testing.T) {
					fake := newFakeCloudinary(t)
					env, dir := storeEnv(t, fake, store)
					env["STRIP_METADATA"] = mode
					srv := startServer(t, env)
					checkRefused(t, sendToStore(t, store, srv.url, c.name, c.file), fake, dir,
						refusal{status: http.StatusRequestEntityTooLarge, message: c.want})
				})
			}
		}
	}
}

// Real files of the formats measured are stored as they were sent.
func TestImageFormatsMeasuredPass(t *testing.T) {
	var bmpB, tiffB, gifB bytes.Buffer
	img := testkit.Image(120, 80)
	if err := bmp.Encode(&bmpB, img); err != nil {
		t.Fatal(err)
	}
	if err := tiff.Encode(&tiffB, img, nil); err != nil { // its IFD after 38 KB of pixels
		t.Fatal(err)
	}
	pal := color.Palette{color.Black, color.White, color.RGBA{200, 0, 0, 255}}
	anim := &gif.GIF{}
	for i := range 30 {
		f := image.NewPaletted(image.Rect(0, 0, 60, 40), pal)
		for j := range f.Pix {
			f.Pix[j] = uint8((i + j) % 3)
		}
		anim.Image, anim.Delay = append(anim.Image, f), append(anim.Delay, 4)
	}
	if err := gif.EncodeAll(&gifB, anim); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"a.bmp": bmpB.Bytes(), "a.tiff": tiffB.Bytes(), "a.gif": gifB.Bytes(), "a.png": dimsAPNG(t, 20, 8, 8)}
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	env["STRIP_METADATA"] = "off"
	srv := startServer(t, env)
	for name, b := range files {
		ct, body := multipartBody(t, nil, name, b)
		resp := postForm(t, newClient(t), srv.url, ct, bytes.NewReader(body))
		decodeOK(t, resp, name)
		ups := fake.Uploads()
		if last := ups[len(ups)-1]; !bytes.Equal(last.Prefix, b) || last.Bytes != int64(len(b)) {
			t.Errorf("%s: stored %d bytes, not the file's %d", name, last.Bytes, len(b))
		}
	}
}

// image/* admits the image types whose size the server reads; another is refused with 415
// unless ALLOWED_TYPES names it, and a line at start-up says it goes unchecked.
func TestImageTypesUnchecked(t *testing.T) {
	icns := []byte("icns\x00\x00\x00\x10is32\x00\x00\x00\x08")
	fake := newFakeCloudinary(t)
	srv := startServer(t, baseEnv(t, fake))
	ct, body := multipartBody(t, nil, "a.icns", icns)
	resp := postForm(t, newClient(t), srv.url, ct, bytes.NewReader(body))
	var got apiErrorBody
	decodeBody(t, resp, &got)
	want := "file type image/x-icns is not allowed: the server cannot check its size (name it in ALLOWED_TYPES to accept it unchecked)"
	if resp.StatusCode != http.StatusUnsupportedMediaType || got.Error.Message != want {
		t.Errorf("status %d %q, want 415 %q", resp.StatusCode, got.Error.Message, want)
	}
	if strings.Contains(srv.logs.String(), "ALLOWED_TYPES admits images") {
		t.Errorf("a start-up line about unchecked types, with image/* alone")
	}

	env := baseEnv(t, fake)
	env["ALLOWED_TYPES"] = "image/*,image/x-icns"
	named := startServer(t, env)
	if !strings.Contains(named.logs.String(), "ALLOWED_TYPES admits images whose size the server cannot check") ||
		!strings.Contains(named.logs.String(), "image/x-icns") {
		t.Errorf("no start-up line names image/x-icns: %s", named.logs.String())
	}
	ct, body = multipartBody(t, nil, "a.icns", icns)
	decodeOK(t, postForm(t, newClient(t), named.url, ct, bytes.NewReader(body)), "a named type")
}

// PNG text chunks are bounded in total, not only one by one: 1.8 MB of tEXt after the image
// data, in chunks of 600 KB, gets 413 and is not stored (the attack run's 40 MiB was kept).
func TestPNGTextInTotal(t *testing.T) {
	p := testPNG(t, 8, 8)
	text := dimsPNGChunk("tEXt", append([]byte("Comment\x00"), bytes.Repeat([]byte("x"), 600<<10)...))
	b := slices.Concat(p[:len(p)-12], text, text, text, p[len(p)-12:])
	refusedByEachStore(t, []string{"cloudinary", "local"}, "text.png", b,
		refusal{status: http.StatusRequestEntityTooLarge, message: "the image's metadata is larger than 1 MiB"})
}

// A file admitted by image/* as a type the guard measures, in which the guard finds no format
// it knows (the sniffer and the guard disagree), is refused rather than stored unmeasured.
func TestImageUnmeasuredRefused(t *testing.T) {
	head := []byte("icns\x00\x00\x00\x10is32\x00\x00\x00\x08")
	_, _, _, err := guardImage(head, bytes.NewReader(nil), testConfig().uploadLimits(), true)
	if api := asAPIError(err); api.status != http.StatusUnsupportedMediaType || !strings.Contains(api.message, "cannot check its size") {
		t.Errorf("measured but unknown: %v", err)
	}
	if _, _, _, err := guardImage(head, bytes.NewReader(nil), testConfig().uploadLimits(), false); err != nil {
		t.Errorf("a type named in ALLOWED_TYPES: %v", err)
	}
}

// The sniffer and the guard agree: a file of each format the guard measures is sniffed as a
// type that imageguard.Checks lists, and the guard reads its size.
func TestCheckedTypesAreSniffedAndMeasured(t *testing.T) {
	var bmpB bytes.Buffer
	if err := bmp.Encode(&bmpB, image.NewGray(image.Rect(0, 0, 4, 4))); err != nil {
		t.Fatal(err)
	}
	for want, b := range map[string][]byte{
		"image/jpeg":                testJPEG(t, 8, 8),
		"image/png":                 testPNG(t, 8, 8),
		"image/apng":                dimsAPNG(t, 2, 8, 8),
		"image/gif":                 dimsGIF(2, 8, 8),
		"image/webp":                dimsWebP(),
		"image/bmp":                 bmpB.Bytes(),
		"image/tiff":                dimsTIFF(8, 8),
		"image/vnd.adobe.photoshop": dimsPSD(8, 8),
		"image/x-icon":              dimsICO(t, 16, 16),
	} {
		got, _, _ := strings.Cut(sniffType(b).String(), ";")
		if got != want {
			t.Errorf("%s is sniffed as %s", want, got)
		}
		if !imageguard.Checks(got) {
			t.Errorf("imageguard.Checks(%q) is false", got)
		}
		lim := testConfig().uploadLimits()
		lim.image.MaxPixels, lim.image.MaxDimension = 1<<40, 1<<20
		if _, _, _, err := guardImage(b, bytes.NewReader(nil), lim, true); err != nil {
			t.Errorf("%s: %v", want, err)
		}
	}
}

// The start-up line names what ALLOWED_TYPES admits unchecked, and nothing else.
func TestUncheckedImageTypes(t *testing.T) {
	for _, c := range []struct {
		allowed, want string
	}{
		{"image/*", ""},
		{"image/png,image/x-ms-bmp,image/tiff", ""}, // an alias of a type the guard measures
		{"image/*,image/svg+xml", "image/svg+xml"},
		{"image/jxl,application/pdf", "image/jxl"},
		{"*", "*"},
	} {
		if got := strings.Join(uncheckedImageTypes(strings.Split(c.allowed, ",")), ","); got != c.want {
			t.Errorf("ALLOWED_TYPES=%s: unchecked %q, want %q", c.allowed, got, c.want)
		}
	}
}

// TIFF and PSD keep their metadata through the guard, a GPS IFD included: while STRIP_METADATA
// removes the location from the other formats, image/* refuses them (415, nothing stored), and
// naming the type admits them as they are.
func TestImageTypesThatKeepTheirLocation(t *testing.T) {
	var tiffB bytes.Buffer
	if err := tiff.Encode(&tiffB, image.NewRGBA(image.Rect(0, 0, 16, 16)), nil); err != nil {
		t.Fatal(err)
	}
	fake := newFakeCloudinary(t)
	for _, tc := range []struct {
		env  map[string]string
		want int
	}{
		{map[string]string{}, http.StatusUnsupportedMediaType},
		{map[string]string{"STRIP_METADATA": "all"}, http.StatusUnsupportedMediaType},
		{map[string]string{"STRIP_METADATA": "off"}, http.StatusOK},
		{map[string]string{"ALLOWED_TYPES": "image/*,image/tiff"}, http.StatusOK},
	} {
		env := baseEnv(t, fake)
		for k, v := range tc.env {
			env[k] = v
		}
		srv := startServer(t, env)
		before := len(fake.Uploads())
		ct, body := multipartBody(t, nil, "scan.tiff", tiffB.Bytes())
		resp := postForm(t, newClient(t), srv.url, ct, bytes.NewReader(body))
		var got apiErrorBody
		decodeBody(t, resp, &got)
		if resp.StatusCode != tc.want {
			t.Errorf("%v: %d %q, want %d", tc.env, resp.StatusCode, got.Error.Message, tc.want)
		}
		if want := errTypeKeepsLocation("image/tiff").message; tc.want != http.StatusOK && got.Error.Message != want {
			t.Errorf("%v: %q, want %q", tc.env, got.Error.Message, want)
		}
		if stored := len(fake.Uploads()) - before; (stored == 1) != (tc.want == http.StatusOK) {
			t.Errorf("%v: %d files stored", tc.env, stored)
		}
	}
}
