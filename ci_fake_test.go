package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
)

// TestServeFakeCloudinary runs the fake Cloudinary as a process of its own, for .ci/run's check of the
// Procfile: the server started by foreman uploads to it. It runs only when FAKE_CLOUDINARY_URL_FILE
// names a file, writes its CLOUDINARY_URL there, serves until SIGTERM or SIGINT, then prints each
// upload it accepted as "fake-upload sha256=... public_id=...".
func TestServeFakeCloudinary(t *testing.T) {
	urlFile := os.Getenv("FAKE_CLOUDINARY_URL_FILE")
	if urlFile == "" {
		t.Skip("set FAKE_CLOUDINARY_URL_FILE to run the fake Cloudinary as a process (.ci/run does)")
	}
	ctx, stop := signal.NotifyContext(t.Context(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	fake := newFakeCloudinary(t)
	if err := os.WriteFile(urlFile, []byte(fake.cloudinaryURL()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	<-ctx.Done()
	for _, u := range fake.uploads() {
		fmt.Printf("fake-upload sha256=%s public_id=%s\n", u.sha256, u.params.Get("public_id"))
	}
}
