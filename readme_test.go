package main

// The README's tables and commands against the code: its size, its test command and .ci/run's,
// the error table, the variables table, docs/configuration.md's rows, and every link and anchor of
// the README and docs/. (The library snippets: TestREADMELibrarySnippets in browserlibs_test.go.)

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	envconfig "cloudinary-upload-api/internal/config"
	"cloudinary-upload-api/internal/imageguard"
	"cloudinary-upload-api/internal/ratelimit"
)

// readmeMaxBytes is what a newcomer reads in ten minutes; the rest is in docs/.
const readmeMaxBytes = 12 * 1000

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// section is the text under the "## title" heading of a Markdown page, up to the next "## ".
func section(t *testing.T, page, title string) string {
	t.Helper()
	_, rest, ok := strings.Cut(page, "\n## "+title+"\n")
	if !ok {
		t.Fatalf("no section %q", title)
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// tableRows are the cells of the Markdown table rows in text, header and rule left out.
func tableRows(text string) [][]string {
	var rows [][]string
	header := true
	for line := range strings.SplitSeq(text, "\n") {
		if !strings.HasPrefix(line, "|") {
			header = true
			continue
		}
		if header { // the header row, then its |---| rule
			if strings.HasPrefix(line, "|---") {
				header = false
			}
			continue
		}
		inner := strings.TrimSuffix(strings.TrimPrefix(line, "|"), "|")
		inner = strings.ReplaceAll(inner, `\|`, "\x00")
		var cells []string
		for c := range strings.SplitSeq(inner, "|") {
			cells = append(cells, strings.TrimSpace(strings.ReplaceAll(c, "\x00", "|")))
		}
		rows = append(rows, cells)
	}
	return rows
}

var codeSpan = regexp.MustCompile("`([^`]*)`")

func TestREADMESize(t *testing.T) {
	if n := len(readFile(t, "README.md")); n > readmeMaxBytes {
		t.Errorf("README.md is %d bytes, more than %d: move detail into docs/", n, readmeMaxBytes)
	}
}

// TestREADMETestCommandIsCIs: the README's command that passes all tests is the one .ci/run runs.
func TestREADMETestCommandIsCIs(t *testing.T) {
	cmds := section(t, readFile(t, "README.md"), "Two commands")
	var readmeCmd string
	for line := range strings.SplitSeq(cmds, "\n") {
		if strings.HasPrefix(line, "go test ") {
			if readmeCmd != "" {
				t.Fatalf("README's Two commands has two go test lines: %q, %q", readmeCmd, line)
			}
			readmeCmd = line
		}
	}
	if readmeCmd == "" {
		t.Fatal("README's Two commands has no go test line")
	}
	var ciCmds []string
	for line := range strings.SplitSeq(readFile(t, filepath.Join(".ci", "run")), "\n") {
		if strings.HasPrefix(line, "go test ") && !strings.HasPrefix(line, "go test -c") {
			ciCmds = append(ciCmds, line)
		}
	}
	if len(ciCmds) != 1 || ciCmds[0] != readmeCmd {
		t.Errorf(".ci/run runs %q; the README says %q", ciCmds, readmeCmd)
	}
}

// producibleErrors are the errors the code can answer with, built from the code's own values
// and constructors, with the README's example arguments where a message has a variable part.
func producibleErrors(t *testing.T) []apiError {
	t.Helper()
	fileFields := strings.Split(envDefault(t, "FILE_FIELDS"), ",")
	signable := strings.Split(envDefault(t, "SIGNABLE_PARAMS"), ",")
	lim := uploadLimits{maxFiles: 10, maxFileBytes: 100 << 20, fileFields: fileFields, signable: signable}
	fromErr := func(err error) apiError {
		t.Helper()
		var api apiError
		if !errors.As(err, &api) {
			t.Fatalf("%v is not an apiError", err)
		}
		return api
	}
	fromPtr := func(api *apiError) apiError {
		t.Helper()
		if api == nil {
			t.Fatal("no apiError")
		}
		return *api
	}
	_, signErr := signingConfig{signable: signable}.clientParams(map[string]json.RawMessage{"overwrite": json.RawMessage(`true`)})
	seenTags := &formFields{seen: map[string]bool{"tags": true}}
	return []apiError{
		errNotFound, errMethodNotAllowed, errNotMultipart, errMalformedBody, errEmptyFile,
		errBodyIncomplete, errUpstreamCredentials, errUpstreamFailed, errUpstreamUnreachable,
		errUpstreamNotJSON, errUpstreamRateLimited, errUpstreamTimeout, errInternal, errTooBusy, errClientMemory,
		errClientBusy, errBodyIdle, errFormTooLarge, errTooManyParts, errNoDelimiter,
		errTransferEncoding, errPublicIDOneFile, errTooSlow, errForeignOrigin, errTwoOrigins, errImageMetadataTooLarge,
		errUnauthorized, errMetricsToken, errRateLimited,
		errSignInRequired, errTokenMalformed, errTokenAlgorithm, errTokenMissingClaim, errTokenExpired,
		errTokenNotYetValid, errTokenIssuer, errTokenAudience, errTokenUnknownKey, errTokenBadSignature,
		errKeysUnavailable, errPublicIDTaken, errUploadedBy, errTokenSubject,
		errSignNeedsCloudinary, errSignNotJSON, errSignBadJSON, errSignTooLarge,
		errDeleteBadBody, errDeleteTooLarge, errDeleteToken, errDeleteNotYours,
		errTusVersion, errResumableContentType, errResumableOffsetHeader, errResumableOffset, errResumableLength,
		errResumableLengthSet, errResumableMetadata, errResumableNotFound, errResumableExpired, errResumableLocked,
		errResumableTooLong, errResumableIncomplete, errResumableMoved, errResumableTakenOver, errResumableState,
		errNoFilePart(fileFields),
		errNotFileField("upload", fileFields),
		errTooManyFiles(lim.maxFiles),
		errBodyTooLarge(lim),
		errTooLarge(lim.maxFileBytes),
		errTypeNotAllowed("image/svg+xml", []string{"image/*"}),
		errTypeUnchecked("image/x-icns"), errTypeKeepsLocation("image/tiff"),
		errUpstreamRejected("Invalid image file"),
		fromPtr(imageAPIError(&imageguard.SizeError{Width: 100000, Height: 100000, MaxPixels: 50000000, MaxDimension: 20000})),
		fromPtr(imageAPIError(&imageguard.FramesError{Frames: 1001, MaxFrames: 1000, MaxAnimationPixels: 2000000000})),
		fromPtr(imageAPIError(&imageguard.FramesError{Frames: 50, Pixels: 2000000001, MaxFrames: 1000, MaxAnimationPixels: 2000000000})),
		fromPtr(imageAPIError(&imageguard.MalformedError{Format: "JPEG", Detail: "two frame headers (SOF markers) before the image data"})),
		fromErr(validatePublicID("../etc/passwd")),
		fromErr(seenTags.read(nil, "tags", lim)),
		fromErr(signErr),
		errFieldAfterFile("tags"),
		errQuotaExceeded, errQuotaTooLarge(ratelimit.QuotaSpec{Bytes: 500e6, Window: 24 * time.Hour, Text: "500MB/day"}),
	}
}

// notOurs are the README's rows that Go's net/http answers before any of our code runs
// (hostile_test.go sends headers over 64 KiB and checks this answer).
var notOurs = []apiError{{http.StatusRequestHeaderFieldsTooLarge, "431 Request Header Fields Too Large"}}

func envDefault(t *testing.T, name string) string {
	t.Helper()
	for _, v := range envconfig.Vars() {
		if v.Name == name {
			return v.Default
		}
	}
	t.Fatalf("the table has no %s", name)
	return ""
}

// matches reports whether the README's example message is the code's message; a … in the
// example stands for the rest of it.
func matches(example, message string) bool {
	if prefix, ok := strings.CutSuffix(example, "…"); ok {
		return strings.HasPrefix(message, prefix)
	}
	return example == message
}

// TestREADMEErrorTable: docs/api.md's error table is whole: every row has a status and example
// messages that the code answers with, and every error the code answers with has a row. The
// README's is the part of it a newcomer meets: each of its rows is one of docs/api.md's (same
// status, same examples), a short table that links to the whole one.
func TestREADMEErrorTable(t *testing.T) {
	api := tableRows(section(t, readFile(t, filepath.Join("docs", "api.md")), "Errors"))
	t.Run("api.md", func(t *testing.T) {
		checkErrorTable(t, "docs/api.md", api, true)
	})
	t.Run("README.md", func(t *testing.T) {
		errs := section(t, readFile(t, "README.md"), "Errors")
		rows := tableRows(errs)
		if len(rows) > readmeMaxErrorRows {
			t.Errorf("README.md's error table has %d rows, more than %d: keep the ones a newcomer meets, the rest are in docs/api.md", len(rows), readmeMaxErrorRows)
		}
		if !strings.Contains(errs, "](docs/api.md#errors)") {
			t.Error("README.md's Errors section does not link to the whole table, docs/api.md#errors")
		}
		checkErrorTable(t, "README.md", rows, false)
		for _, row := range rows {
			if len(row) != 3 {
				continue // checkErrorTable says so
			}
			found := false
			for _, full := range api {
				if len(full) == 3 && full[0] == row[0] && exampleSet(full[2]) == exampleSet(row[2]) {
					found = true
				}
			}
			if !found {
				t.Errorf("README.md: error row %s %s is not a row of docs/api.md's table (same status and examples)", row[0], row[2])
			}
		}
	})
}

// readmeMaxErrorRows keeps the README's error table to what a newcomer meets.
const readmeMaxErrorRows = 14

// exampleSet is a row's example messages, in order, as one string.
func exampleSet(cell string) string {
	var out []string
	for _, m := range codeSpan.FindAllStringSubmatch(cell, -1) {
		out = append(out, m[1])
	}
	return strings.Join(out, "\x00")
}

// checkErrorTable checks that each row's examples are messages the code answers with, at the
// row's status; complete: that every error the code answers with has a row.
func checkErrorTable(t *testing.T, page string, rows [][]string, complete bool) {
	if len(rows) < 5 {
		t.Fatalf("%s's error table has %d rows", page, len(rows))
	}
	known := append(producibleErrors(t), notOurs...)
	used := make([]bool, len(known))
	for _, row := range rows {
		if len(row) != 3 {
			t.Errorf("%s: error row %q: want 3 cells", page, row)
			continue
		}
		status, err := strconv.Atoi(row[0])
		if err != nil {
			t.Errorf("%s: error row %q: status %q", page, row, row[0])
			continue
		}
		examples := codeSpan.FindAllStringSubmatch(row[2], -1)
		if len(examples) == 0 {
			t.Errorf("%s: error row %q: no message", page, row)
		}
		for _, ex := range examples {
			found := false
			for i, k := range known {
				if k.status == status && matches(ex[1], k.message) {
					found, used[i] = true, true
				}
			}
			if !found {
				t.Errorf("%s: error row %d %q: the code has no such error", page, status, ex[1])
			}
		}
	}
	for i, k := range known {
		if complete && !used[i] {
			t.Errorf("the code answers %d %q, which %s's error table does not list", k.status, k.message, page)
		}
	}
}

// TestREADMEVariables: the README's variables are the table's names, with its defaults.
func TestREADMEVariables(t *testing.T) {
	rows := tableRows(section(t, readFile(t, "README.md"), "Configuration"))
	if len(rows) != 8 {
		t.Errorf("README's variables table has %d rows, want the eight most people set", len(rows))
	}
	checkVariableRows(t, "README.md", rows)
}

// TestConfigurationDocMatchesEnvVars: docs/configuration.md (which tools/gendocs writes from
// config.go's source, and its own test keeps fresh) has every variable of the running table.
func TestConfigurationDocMatchesEnvVars(t *testing.T) {
	rows := tableRows(readFile(t, filepath.Join("docs", "configuration.md")))
	checkVariableRows(t, "docs/configuration.md", rows)
	var got []string
	for _, row := range rows {
		got = append(got, strings.Trim(row[0], "`"))
	}
	var want []string
	for _, v := range envconfig.Vars() {
		want = append(want, v.Name)
	}
	if !slices.Equal(got, want) {
		t.Errorf("docs/configuration.md lists %v\nthe table lists %v (run go generate ./...)", got, want)
	}
}

func checkVariableRows(t *testing.T, page string, rows [][]string) {
	t.Helper()
	vars := map[string]envconfig.Var{}
	for _, v := range envconfig.Vars() {
		vars[v.Name] = v
	}
	for _, row := range rows {
		if len(row) != 3 {
			t.Errorf("%s: variable row %q: want 3 cells", page, row)
			continue
		}
		name := strings.Trim(row[0], "`")
		v, ok := vars[name]
		if !ok {
			t.Errorf("%s: %q is not in the table", page, row[0])
			continue
		}
		want := "`" + v.Default + "`"
		switch {
		case v.Secret && page != "README.md":
			want = "(secret)"
		case v.Default == "" || v.Secret:
			want = ""
		}
		if row[1] != want {
			t.Errorf("%s: %s's default is %q; the table says %q", page, name, row[1], want)
		}
	}
}

var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestDocLinks: every relative link of the README and docs/ names a file that exists, and every
// #anchor a heading of its page (as GitHub makes anchors of headings); and the README links to
// every page of docs/.
func TestDocLinks(t *testing.T) {
	pages, err := filepath.Glob(filepath.Join("docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	pages = append(pages, "README.md")
	anchors := map[string]map[string]bool{}
	anchorsOf := func(page string) map[string]bool {
		if a, ok := anchors[page]; ok {
			return a
		}
		a := headingAnchors(readFile(t, page))
		anchors[page] = a
		return a
	}
	readme := readFile(t, "README.md")
	for _, page := range pages[:len(pages)-1] {
		if !strings.Contains(readme, "]("+filepath.ToSlash(page)) {
			t.Errorf("README.md does not link to %s", page)
		}
	}
	for _, page := range pages {
		text := withoutCode(readFile(t, page))
		for _, m := range mdLink.FindAllStringSubmatch(text, -1) {
			link := m[1]
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			target, anchor, _ := strings.Cut(link, "#")
			file := page
			if target != "" {
				file = filepath.Join(filepath.Dir(page), filepath.FromSlash(target))
				if _, err := os.Stat(file); err != nil {
					t.Errorf("%s: link %q: %v", page, link, err)
					continue
				}
			}
			if anchor == "" {
				continue
			}
			if !strings.HasSuffix(file, ".md") {
				t.Errorf("%s: link %q: an anchor into a file that is not Markdown", page, link)
				continue
			}
			if !anchorsOf(file)[anchor] {
				t.Errorf("%s: link %q: %s has no heading with that anchor", page, link, file)
			}
		}
	}
}

// withoutCode is a page without its fenced blocks, whose brackets are not links.
func withoutCode(page string) string {
	var b strings.Builder
	fenced := false
	for line := range strings.SplitSeq(page, "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
			continue
		}
		if !fenced {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// headingAnchors are the anchors GitHub gives a page's headings: lower case, spaces as
// hyphens, punctuation other than - and _ dropped, and -1, -2 … after repeats.
func headingAnchors(page string) map[string]bool {
	anchors := map[string]bool{}
	count := map[string]int{}
	for line := range strings.SplitSeq(withoutCode(page), "\n") {
		title, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " ")
		if !ok || !strings.HasPrefix(line, "#") {
			continue
		}
		slug := githubSlug(title)
		if n := count[slug]; n > 0 {
			anchors[fmt.Sprintf("%s-%d", slug, n)] = true
		} else {
			anchors[slug] = true
		}
		count[slug]++
	}
	return anchors
}

func githubSlug(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(title)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r > 127 && !strings.ContainsRune("×–—…’‘“”", r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestGithubSlug(t *testing.T) {
	for title, want := range map[string]string{
		"Image metadata and pixel limits":    "image-metadata-and-pixel-limits",
		"Who may upload":                     "who-may-upload",
		"`REDIS_TLS_VERIFY=false` on Heroku": "redis_tls_verifyfalse-on-heroku",
		"Performance: measured figures":      "performance-measured-figures",
	} {
		if got := githubSlug(title); got != want {
			t.Errorf("githubSlug(%q) = %q, want %q", title, got, want)
		}
	}
}
