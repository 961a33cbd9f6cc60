package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"strings"

	envconfig "cloudinary-upload-api/internal/config"
)

// parseArgs reads the command line: --help (-h) and --version print to stdout and ask run to
// exit; anything else is an error.
func parseArgs(args []string, stdout io.Writer) (exit bool, err error) {
	name := "cloudinary-upload-api"
	if len(args) == 0 {
		return false, nil
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, and help goes to stdout
	fs.Usage = func() {}
	showVersion := fs.Bool("version", false, "print the version and exit")
	err = fs.Parse(args[1:])
	switch {
	case errors.Is(err, flag.ErrHelp):
		_, err := io.WriteString(stdout, helpText())
		return true, err
	case err != nil:
		return true, fmt.Errorf("%w (see --help)", err)
	case fs.NArg() > 0:
		return true, fmt.Errorf("unexpected argument %q: configuration comes from the environment (see --help)", fs.Arg(0))
	case *showVersion:
		_, err := fmt.Fprintf(stdout, "cloudinary-upload-api %s\n", buildVersion(debug.ReadBuildInfo()))
		return true, err
	}
	return false, nil
}

// helpSummary is --help's first line: what the server does, both stores named.
const helpSummary = "Uploads to Cloudinary, or to a local store when there are no credentials."

// helpText is the --help page: the flags, then every variable of internal/config's table with its default and meaning.
func helpText() string {
	var b strings.Builder
	b.WriteString(helpSummary + `

Usage: cloudinary-upload-api [--help] [--version]

Files posted to /upload (multipart/form-data) stream through to Cloudinary,
signed here, so that clients never see the API secret. Without Cloudinary
credentials (or with STORAGE=local) they go to the local store instead: files
under UPLOAD_DIR, served at /files/, in the same answer shape. GET / is an
upload page; GET /openapi.yaml describes the API.

Flags:
  -h, --help   print this help and exit
  --version    print the version and exit

Environment variables (also read from ENV_FILE; the real environment wins):
`)
	for _, v := range envconfig.Vars() {
		b.WriteString("  " + v.Name)
		switch {
		case v.Secret:
			b.WriteString(" (secret)")
		case v.Default != "":
			b.WriteString(" (default " + v.Default + ")")
		}
		b.WriteString("\n")
		b.WriteString(wrap(v.Help, "      ", 80))
	}
	return b.String()
}

// wrap breaks text into lines of at most width characters, each starting with indent.
func wrap(text, indent string, width int) string {
	var b strings.Builder
	line := indent
	for _, word := range strings.Fields(text) {
		if line != indent && len(line)+1+len(word) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if line != indent {
			line += " "
		}
		line += word
	}
	b.WriteString(line + "\n")
	return b.String()
}

// buildVersion is the module version of a released build, else the VCS revision the binary
// was built from (with "-dirty" for uncommitted changes), else "devel".
func buildVersion(info *debug.BuildInfo, ok bool) string {
	if !ok || info == nil {
		return "devel"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var revision string
	var dirty bool
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if revision == "" {
		return "devel"
	}
	if len(revision) > 12 {
		revision = revision[:12]
	}
	if dirty {
		revision += "-dirty"
	}
	return revision
}
