// Command fakecloudinary serves internal/cloudinary/cloudinarytest's fake Cloudinary as a process
// of its own: to try the server's Cloudinary path without an account, and for .ci/run's check of
// the Procfile (the server that foreman starts uploads to it).
//
//	go run ./tools/fakecloudinary -env-file .env     # then, in another terminal: go run .
//	fakecloudinary -url-file PATH                     # .ci/run
//
// It prints its CLOUDINARY_URL (cloudinary://KEY:SECRET@CLOUD?upload_prefix=http://127.0.0.1:PORT)
// as a ready .env line; -env-file sets that line in a .env file (the other lines are kept) and
// -url-file writes the bare URL to a file. It keeps every file it accepts, in memory, and serves
// it back at the secure_url it answers. Each upload is printed as it is accepted, as
// "fake-upload sha256=... public_id=... bytes=... secure_url=...", until SIGTERM or SIGINT.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"sync"
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
	addr := fs.String("addr", "127.0.0.1:0", "loopback address to listen on (port 0: a free one)")
	envFile := fs.String("env-file", "", "a .env file to set the fake's CLOUDINARY_URL line in (created if missing)")
	urlFile := fs.String("url-file", "", "a file to write the fake's CLOUDINARY_URL to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()

	var mu sync.Mutex // uploads are heard on the fake's handler goroutines
	var printErr error
	printf := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		if _, err := fmt.Fprintf(stdout, format, a...); err != nil && printErr == nil {
			printErr = err
		}
	}
	fake, err := cloudinarytest.StartWith(cloudinarytest.Options{
		Addr:  *addr,
		Serve: true,
		OnUpload: func(u cloudinarytest.Upload) {
			printf("fake-upload sha256=%s public_id=%s bytes=%d secure_url=%s\n",
				u.SHA256, u.Params.Get("public_id"), u.Bytes, secureURL(u.Response))
		},
	})
	if err != nil {
		return err
	}
	defer fake.Close()

	line := "CLOUDINARY_URL=" + fake.CloudinaryURL()
	if *urlFile != "" {
		if err := os.WriteFile(*urlFile, []byte(fake.CloudinaryURL()+"\n"), 0o600); err != nil {
			return err
		}
	}
	if *envFile != "" {
		if err := setEnvLine(*envFile, line); err != nil {
			return err
		}
		printf("fake Cloudinary at %s; %s now has:\n%s\n", fake.URL(), *envFile, line)
		printf("start the server (go run .) and upload: the server logs \"storing uploads in Cloudinary\", and each upload is listed here; its secure_url serves the file back. Ctrl-C stops the fake (and forgets the files).\n")
	} else {
		printf("fake Cloudinary at %s; for .env or the environment:\n%s\n", fake.URL(), line)
	}
	<-ctx.Done()
	mu.Lock()
	defer mu.Unlock()
	return printErr
}

// envLineRE is a line that sets CLOUDINARY_URL in a .env file (a commented one does not).
var envLineRE = regexp.MustCompile(`^\s*(export\s+)?CLOUDINARY_URL\s*=`)

// setEnvLine puts line in place of the .env file's CLOUDINARY_URL lines, or after its last line.
func setEnvLine(path, line string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var out []string
	replaced := false
	text := strings.TrimSuffix(string(old), "\n")
	if text != "" {
		for l := range strings.SplitSeq(text, "\n") {
			if envLineRE.MatchString(l) {
				if replaced {
					continue // one line is enough: godotenv would take the last
				}
				l, replaced = line, true
			}
			out = append(out, l)
		}
	}
	if !replaced {
		out = append(out, line)
	}
	return os.WriteFile(path, []byte(strings.Join(out, "\n")+"\n"), 0o600)
}

// secureURL is the secure_url of an upload's answer.
func secureURL(answer []byte) string {
	var r struct {
		SecureURL string `json:"secure_url"`
	}
	_ = json.Unmarshal(answer, &r) // the fake's own JSON; empty if it were not
	return r.SecureURL
}
