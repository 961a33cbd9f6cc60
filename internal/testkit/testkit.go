// Package testkit holds what the tests of several packages share: the programs they run as
// makers and oracles, exiftool's reading of a file, test images, and the Cloudinary Go SDK's
// uploader.
//
// A program (exiftool, heif-enc, curl, redis-server…) is found on the PATH; when it is missing the
// test skips, or fails under CI=true, where .ci/run installs them all. The SDK's uploader is the
// reference that internal/cloudinary's Client and the fake are checked against. Only tests, and
// packages that serve tests, import it.
package testkit

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"testing"

	cldupload "github.com/cloudinary/cloudinary-go/v2/api/uploader"
	cldconfig "github.com/cloudinary/cloudinary-go/v2/config"
)

// Tool is the path of the program name: when it is missing the test skips, or fails under
// CI=true, naming debian, the Debian package that has it.
func Tool(t testing.TB, name, debian string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing (Debian: %s)", name, debian)
		}
		t.Skipf("%s not installed", name)
	}
	return path
}

// Exiftool reads b with exiftool and returns its tags by group:name (-G1), duplicates too (-a),
// numbers as numbers (-n).
func Exiftool(t testing.TB, b []byte) map[string]any {
	t.Helper()
	cmd := exec.Command(Tool(t, "exiftool", "libimage-exiftool-perl"), "-j", "-a", "-G1", "-n", "-")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("exiftool: %v", err)
	}
	var tags []map[string]any
	if err := json.Unmarshal(out, &tags); err != nil || len(tags) != 1 {
		t.Fatalf("exiftool output %q: %v", out, err)
	}
	return tags[0]
}

// Image is a w × h image whose every pixel differs from its neighbours, so that encoders keep
// it apart from a blank one.
func Image(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x * 7), uint8(y * 5), uint8(x ^ y), 255})
		}
	}
	return img
}

// PNG is Image(w, h) encoded as a PNG.
func PNG(t testing.TB, w, h int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, Image(w, h)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// SDKUploader is the Cloudinary Go SDK's uploader for cldURL (cloudinary://key:secret@cloud…),
// with a transport of its own whose idle connections are closed with the test.
//
// Call it before t.Parallel: config.NewFromURL calls IgnoreUnknownKeys on the SDK's package-level
// gorilla/schema decoder (cloudinary-go v2.16.1 config/configuration.go), a data race when two
// goroutines build configs at once. Top-level tests run their code before t.Parallel one at a
// time, and never beside a parallel test's body.
func SDKUploader(t testing.TB, cldURL string) *cldupload.API {
	t.Helper()
	cfg, err := cldconfig.NewFromURL(cldURL)
	if err != nil {
		t.Fatalf("config.NewFromURL: %v", err)
	}
	up, err := cldupload.NewWithConfiguration(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	up.Client = http.Client{Transport: tr}
	return up
}
