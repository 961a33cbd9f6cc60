// Command fakecloudinary serves internal/cloudinary/cloudinarytest's fake Cloudinary as a process
// of its own, for .ci/run's check of the Procfile: the server that foreman starts uploads to it.
//
//	fakecloudinary -url-file PATH
//
// It writes its CLOUDINARY_URL (cloudinary://KEY:SECRET@CLOUD?upload_prefix=http://127.0.0.1:PORT)
// to PATH, serves until SIGTERM or SIGINT, then prints each upload it accepted as
// "fake-upload sha256=... public_id=..." on stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"cloudinary-upload-api/internal/cloudinary/cloudinarytest"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "fakecloudinary:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("fakecloudinary", flag.ContinueOnError)
	urlFile := fs.String("url-file", "", "file to write the fake's CLOUDINARY_URL to (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *urlFile == "" {
		return errors.New("-url-file is required")
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	fake := cloudinarytest.Start()
	defer fake.Close()
	if err := os.WriteFile(*urlFile, []byte(fake.CloudinaryURL()+"\n"), 0o600); err != nil {
		return err
	}
	<-ctx.Done()
	for _, u := range fake.Uploads() {
		if _, err := fmt.Fprintf(stdout, "fake-upload sha256=%s public_id=%s\n", u.SHA256, u.Params.Get("public_id")); err != nil {
			return err
		}
	}
	return nil
}
