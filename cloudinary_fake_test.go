package main

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"testing"

	cldupload "github.com/cloudinary/cloudinary-go/v2/api/uploader"
	cldconfig "github.com/cloudinary/cloudinary-go/v2/config"

	"cloudinary-upload-api/internal/cloudinary/cloudinarytest"
)

// The root's tests upload to internal/cloudinary/cloudinarytest's fake, under these names.
type (
	fakeCloudinary = cloudinarytest.Server
	fakeBehaviour  = cloudinarytest.Behaviour
	fakeUpload     = cloudinarytest.Upload
)

// The fake's account.
const (
	fakeCloudName = cloudinarytest.CloudName
	fakeAPIKey    = cloudinarytest.APIKey
	fakeAPISecret = cloudinarytest.APISecret
)

// newFakeCloudinary starts the fake and closes it when the test ends.
func newFakeCloudinary(t testing.TB) *fakeCloudinary { return cloudinarytest.New(t) }

// newFakeTestUploader is the SDK's uploader for url, with its own transport so its idle connections end with the test.
//
// Call it before t.Parallel: config.NewFromURL calls IgnoreUnknownKeys on the SDK's package-level gorilla/schema
// decoder (cloudinary-go v2.16.1 config/configuration.go), a data race when two goroutines build configs at once.
func newFakeTestUploader(t *testing.T, cldURL string) *cldupload.API {
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

// fakeTestPNG is a w × h PNG.
func fakeTestPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	img.Set(0, 0, color.RGBA{R: 255, A: 255})
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
