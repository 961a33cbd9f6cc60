package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	envconfig "cloudinary-upload-api/internal/config"
)

var update = flag.Bool("update", false, "rewrite testdata/help.golden from the current --help")

func TestHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-h", "-help"} {
		var out bytes.Buffer
		if err := run(context.Background(), []string{"cloudinary-upload-api", arg}, mapGetenv(nil), &out, io.Discard); err != nil {
			t.Fatalf("%s: %v", arg, err)
		}
		golden := filepath.Join("testdata", "help.golden")
		if *update && arg == "--help" {
			if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test -run TestHelp -update)", err)
		}
		if !bytes.Equal(out.Bytes(), want) {
			t.Errorf("%s differs from %s (run go test -run TestHelp -update):\n%s", arg, golden, out.String())
		}
	}
}

// --help's first line says where uploads go: Cloudinary, or the local store.
func TestHelpFirstLine(t *testing.T) {
	t.Parallel()
	first, _, _ := strings.Cut(helpText(), "\n")
	if !strings.Contains(first, "Cloudinary") || !strings.Contains(first, "local store") || len(first) > 80 {
		t.Errorf("--help's first line %q: want both stores named, in at most 80 characters", first)
	}
}

// TestHelpDescribesEveryVariable keeps --help in step with the table: every name, default and meaning.
func TestHelpDescribesEveryVariable(t *testing.T) {
	t.Parallel()
	help := helpText()
	flat := strings.Join(strings.Fields(help), " ")
	for _, v := range envconfig.Vars() {
		if !strings.Contains(help, "\n  "+v.Name+" ") && !strings.Contains(help, "\n  "+v.Name+"\n") {
			t.Errorf("--help lacks %s", v.Name)
		}
		if v.Default != "" && !v.Secret && !strings.Contains(help, v.Name+" (default "+v.Default+")") {
			t.Errorf("--help does not give %s's default %q", v.Name, v.Default)
		}
		if !strings.Contains(flat, strings.Join(strings.Fields(v.Help), " ")) {
			t.Errorf("--help does not explain %s as the table does: %q", v.Name, v.Help)
		}
	}
	for _, line := range strings.Split(help, "\n") {
		if len(line) > 80 {
			t.Errorf("--help line longer than 80 characters: %q", line)
		}
	}
}

// TestLoaderReadsEveryVariable keeps the loader in step with the table: run reads exactly the table's names.
func TestLoaderReadsEveryVariable(t *testing.T) {
	read := map[string]bool{}
	env := map[string]string{
		"CLOUD_NAME": "c", "API_KEY": "k", "API_SECRET": "s", // so that CLOUDINARY_UPLOAD_PREFIX is read too
		"PORT":     "not-a-port", // stops run after the configuration has been read
		"ENV_FILE": filepath.Join(t.TempDir(), "absent.env"),
	}
	getenv := func(name string) string {
		read[name] = true
		return env[name]
	}
	if err := run(context.Background(), []string{"cloudinary-upload-api"}, getenv, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "PORT") {
		t.Fatalf("run = %v, want a PORT error", err)
	}
	var got, want []string
	for name := range read {
		got = append(got, name)
	}
	for _, v := range envconfig.Vars() {
		want = append(want, v.Name)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("run reads %v\nthe table lists %v", got, want)
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"cloudinary-upload-api", "--version"}, mapGetenv(nil), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	v, ok := strings.CutPrefix(out.String(), "cloudinary-upload-api ")
	if !ok || !strings.HasSuffix(v, "\n") || strings.TrimSpace(v) == "" || strings.Contains(strings.TrimSpace(v), " ") {
		t.Errorf("--version printed %q, want \"cloudinary-upload-api VERSION\\n\"", out.String())
	}

	for _, tc := range []struct {
		name string
		info *debug.BuildInfo
		want string
	}{
		{"no_build_info", nil, "devel"},
		{"released_module", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v1.2.3"},
		{"vcs_revision", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "false"},
		}}, "0123456789ab"},
		{"dirty_tree", &debug.BuildInfo{Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"},
		}}, "0123456789ab-dirty"},
		{"no_vcs", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "devel"},
	} {
		if got := buildVersion(tc.info, tc.info != nil); got != tc.want {
			t.Errorf("%s: buildVersion = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestBadArguments(t *testing.T) {
	for _, args := range [][]string{{"x", "--nope"}, {"x", "serve"}, {"x", "--version=maybe"}} {
		var out bytes.Buffer
		err := run(context.Background(), args, mapGetenv(map[string]string{"PORT": "0"}), &out, &out)
		if err == nil || !strings.Contains(err.Error(), "--help") {
			t.Errorf("run %q = %v, want an error pointing to --help", args[1:], err)
		}
		if strings.Contains(out.String(), "listening") {
			t.Errorf("run %q started the server", args[1:])
		}
	}
}
