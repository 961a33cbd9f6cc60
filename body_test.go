package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"cloudinary-upload-api/internal/imageguard"
)

// TestUploadTakesTheFastPath: an ordinary upload's bytes go upstream as pieces of the form
// reader's own buffer. A JPEG keeps that path whatever STRIP_METADATA says (its metadata comes
// before the image data, which the guard hands on untouched), and so does any image with
// STRIP_METADATA=off; a wrapper that hides the pieces fails here, not only in a benchmark.
// (A PNG or WebP being stripped is read through the guard's chunk walker instead: one copy.)
// pngWithLongChunk is a PNG whose text chunk, to be removed, comes after 3 MiB of image data.
func pngWithLongChunk(t *testing.T) []byte {
	b := guardTestPNG(t)
	iend := len(b) - 12
	return slices.Concat(b[:iend], dimsPNGChunk("IDAT", bytes.Repeat([]byte{7}, 3<<20)),
		dimsPNGChunk("tEXt", []byte("GPSLatitude\x0048 N")), b[iend:])
}

func TestUploadTakesTheFastPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		strip imageguard.Mode
		image func(t *testing.T) []byte
	}{
		{"jpeg_gps", imageguard.StripGPS, func(t *testing.T) []byte { return guardTestJPEG(t) }},
		{"jpeg_all", imageguard.StripAll, func(t *testing.T) []byte { return guardTestJPEG(t) }},
		{"png_off", imageguard.StripOff, func(t *testing.T) []byte { return testPNG(t, 4, 4) }},
		// Walked by the guard, its long chunk and the bytes after IEND come as pieces too.
		{"png_gps", imageguard.StripGPS, pngWithLongChunk},
		{"png_all", imageguard.StripAll, pngWithLongChunk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := &pieceRecorder{}
			cfg := testConfig()
			cfg.MaxUploadBytes = 8 << 20
			cfg.Image.Strip = tc.strip
			h := newServer(discardLogger(), cfg, testStorage(up), newHealthState())
			img := append(tc.image(t), bytes.Repeat([]byte{7}, 3<<20)...) // after the image's end: nothing the guard reads
			ct, body := buildForm(t, filePartOf("file", "a.img", img))
			req := httptest.NewRequest(http.MethodPost, "/upload", bytes.NewReader(body))
			req.Header.Set("Content-Type", ct)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			up.mu.Lock()
			defer up.mu.Unlock()
			if !up.pieces || up.n < int64(3<<20) {
				t.Fatalf("pieceReader path %v, %d bytes; want the form reader's pieces, all of the file", up.pieces, up.n)
			}
			// Pieces of the 1 MiB read buffer, not copies through the 256 KiB copy buffer.
			if up.maxWrite <= copyBufferBytes {
				t.Fatalf("largest write %d bytes; want pieces larger than the copy buffer's %d", up.maxWrite, copyBufferBytes)
			}
		})
	}
}
