package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// The upload libraries, as a new user sets them up, in real Chromium. Their versions are pinned
// in testdata/browserlibs/package.json and package-lock.json; .ci/run installs them with npm ci.
// Each library runs its documented snippet (kept in testdata/browserlibs, checked against
// docs/upload-libraries.md by TestREADMELibrarySnippets) from a page on another origin than the server's.

const (
	browserLibsDir = "testdata/browserlibs"
	// snippetAPI is the server's address in the documented snippets; the test pages get the test server's.
	snippetAPI = "https://your-app.herokuapp.com"
)

// browserLibs returns the absolute path of testdata/browserlibs once its node_modules is installed,
// or skips (fails under CI, where .ci/run runs npm ci).
func browserLibs(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(browserLibsDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s/node_modules is missing: CI must install the upload libraries (.ci/run runs npm ci): %v", browserLibsDir, err)
		}
		t.Skipf("upload libraries not installed (run: npm ci --ignore-scripts --prefix %s)", browserLibsDir)
	}
	return dir
}

// bundleUppy bundles an Uppy snippet with esbuild (a pinned devDependency), as a user's bundler does:
// Uppy ships ES modules that import CommonJS packages, which a browser cannot load unbundled.
func bundleUppy(t *testing.T, dir, source string) []byte {
	t.Helper()
	cmd := exec.Command(filepath.Join(dir, "node_modules", ".bin", "esbuild"),
		"--bundle", "--format=esm", "--log-level=warning", "--sourcefile=uppy.js", "--loader=js")
	cmd.Dir = dir // resolves imports from node_modules
	cmd.Stdin = strings.NewReader(source)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("esbuild: %v\n%s", err, stderr.String())
	}
	return out
}

// libDefaults are the libraries on their documented defaults, without the option the snippets add:
// what a user sees before adding it, and so why the snippets add it.
func libDefaults() map[string]string {
	return map[string]string{
		"uppy-defaults.js": `import Uppy from '@uppy/core'
import Dashboard from '@uppy/dashboard'
import XHRUpload from '@uppy/xhr-upload'
new Uppy().use(Dashboard, { inline: true, target: '#uploader' }).use(XHRUpload, { endpoint: '` + snippetAPI + `/upload' })
`,
		"filepond-defaults.js": `import * as FilePond from 'filepond'
FilePond.create(document.querySelector('input[type="file"]'), { server: '` + snippetAPI + `/upload' })
`,
		"dropzone-defaults.js": `import Dropzone from 'dropzone'
new Dropzone('#uploader', { url: '` + snippetAPI + `/upload' })
`,
	}
}

// readSnippet reads one of the documented snippets.
func readSnippet(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(browserLibsDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// libSite is the other origin: it serves node_modules, the snippets and a page for each library.
// The page's query parameter api is the server the snippet uploads to.
type libSite struct {
	srv     *httptest.Server
	dir     string
	bundles map[string][]byte // by /snippet/ name: esbuild's Uppy bundles, the defaults pages' scripts
}

func newLibSite(t *testing.T) *libSite {
	t.Helper()
	dir := browserLibs(t)
	uppy := readSnippet(t, "uppy.js")
	const use = "  .use(XHRUpload, {\n"
	if strings.Count(uppy, use) != 1 {
		t.Fatalf("uppy.js: no single %q to add bundle: true to", use)
	}
	defaults := libDefaults()
	s := &libSite{dir: dir, bundles: map[string][]byte{
		"uppy.js":              bundleUppy(t, dir, uppy),
		"uppy-bundle.js":       bundleUppy(t, dir, strings.Replace(uppy, use, use+"    bundle: true,\n", 1)),
		"uppy-defaults.js":     bundleUppy(t, dir, defaults["uppy-defaults.js"]),
		"filepond-defaults.js": []byte(defaults["filepond-defaults.js"]),
		"dropzone-defaults.js": []byte(defaults["dropzone-defaults.js"]),
	}}
	mux := http.NewServeMux()
	modules := http.StripPrefix("/node_modules/", http.FileServer(http.Dir(filepath.Join(dir, "node_modules"))))
	mux.Handle("GET /node_modules/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ext := filepath.Ext(r.URL.Path); ext == ".js" || ext == ".mjs" {
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8") // module scripts need it
		}
		modules.ServeHTTP(w, r)
	}))
	mux.HandleFunc("GET /snippet/{name}", s.serveSnippet)
	mux.HandleFunc("GET /page/{lib}", s.servePage)
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	return s
}

func (s *libSite) pageURL(lib, api string) string {
	return s.srv.URL + "/page/" + lib + "?api=" + url.QueryEscape(api)
}

func (s *libSite) serveSnippet(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	b, ok := s.bundles[name]
	if !ok {
		if !slices.Contains([]string{"filepond.js", "dropzone.js", "blueimp.js"}, name) {
			http.NotFound(w, r)
			return
		}
		var err error
		if b, err = os.ReadFile(filepath.Join(s.dir, name)); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	_, _ = w.Write(bytes.ReplaceAll(b, []byte(snippetAPI), []byte(r.URL.Query().Get("api"))))
}

func (s *libSite) servePage(w http.ResponseWriter, r *http.Request) {
	api := r.URL.Query().Get("api")
	script := func(name string) string {
		return `<script type="module" src="/snippet/` + name + `?api=` + url.QueryEscape(api) + `"></script>`
	}
	lib := r.PathValue("lib")
	base, _, _ := strings.Cut(lib, "-") // uppy-bundle, uppy-defaults: uppy's page with another script
	var body string
	switch base {
	case "uppy":
		body = `<link rel="stylesheet" href="/node_modules/@uppy/core/dist/style.min.css">
<link rel="stylesheet" href="/node_modules/@uppy/dashboard/dist/style.min.css">
<div id="uploader"></div>` + script(lib+".js")
	case "filepond":
		body = `<link rel="stylesheet" href="/node_modules/filepond/dist/filepond.min.css">
<script type="importmap">{"imports": {"filepond": "/node_modules/filepond/dist/filepond.esm.js"}}</script>
<input type="file">` + script(lib+".js")
	case "dropzone":
		body = `<link rel="stylesheet" href="/node_modules/dropzone/dist/dropzone.css">
<script type="importmap">{"imports": {"dropzone": "/node_modules/dropzone/dist/dropzone.mjs"}}</script>
<div id="uploader" class="dropzone"></div>` + script(lib+".js")
	case "blueimp":
		body = `<script src="/node_modules/jquery/dist/jquery.min.js"></script>
<script src="/node_modules/blueimp-file-upload/js/vendor/jquery.ui.widget.js"></script>
<script src="/node_modules/blueimp-file-upload/js/jquery.fileupload.js"></script>
<form>
  <input name="tags" value="blueimp, browser">
  <input name="comment" value="blueimp posts every input of the surrounding form">
  <input id="fileupload" type="file" name="files[]" multiple>
</form>
<ul id="uploads"></ul>
<script src="/snippet/blueimp.js?api=` + url.QueryEscape(api) + `"></script>`
	case "form":
		b, err := os.ReadFile(filepath.Join(s.dir, "form.html"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		body = strings.ReplaceAll(string(b), snippetAPI, api)
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, "<!doctype html>\n<meta charset=\"utf-8\">\n<title>%s</title>\n%s\n", lib, body)
}

// libItem is what a library's own UI shows for one file.
type libItem struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}

// libDriver picks files in a library's page the way a user does, and reads what its UI shows.
type libDriver struct {
	input   string // the file input the library listens to
	start   string // optional: JS run until it returns true, e.g. clicking the upload button
	items   string // JS: the list of shown files, as libItem
	settled string // JS, with %d for the number of files: true once every file is done or failed
}

// libDrivers knows each library's page.
func libDrivers() map[string]libDriver {
	return map[string]libDriver{
		"uppy": {
			input: `input.uppy-Dashboard-input[name="files[]"]`,
			start: `(() => { const b = document.querySelector('.uppy-StatusBar-actionBtn--upload'); if (!b) return false; b.click(); return true })()`,
			items: `[...document.querySelectorAll('.uppy-Dashboard-Item')].map(i => ({
			name: i.querySelector('.uppy-Dashboard-Item-name')?.textContent ?? '',
			ok: i.classList.contains('is-complete'),
			error: i.querySelector('.uppy-Dashboard-Item-errorDetails')?.getAttribute('aria-label') ?? ''}))`,
			settled: `(() => { const it = [...document.querySelectorAll('.uppy-Dashboard-Item')];
			return it.length === %d && it.every(i => i.classList.contains('is-complete') || i.classList.contains('is-error')) })()`,
		},
		"filepond": {
			input: `input.filepond--browser`,
			items: `[...document.querySelectorAll('.filepond--item')].map(i => ({
			name: i.querySelector('.filepond--file-info-main')?.textContent ?? '',
			ok: i.dataset.filepondItemState === 'processing-complete',
			error: i.dataset.filepondItemState === 'processing-error' ? i.querySelector('.filepond--file-status-main')?.textContent ?? '' : ''}))`,
			settled: `(() => { const it = [...document.querySelectorAll('.filepond--item')];
			return it.length === %d && it.every(i => ['processing-complete', 'processing-error'].includes(i.dataset.filepondItemState)) })()`,
		},
		"dropzone": {
			input: `input.dz-hidden-input`,
			items: `[...document.querySelectorAll('.dz-preview')].map(i => ({
			name: i.querySelector('[data-dz-name]')?.textContent ?? '',
			ok: i.classList.contains('dz-success'),
			error: i.classList.contains('dz-error') ? i.querySelector('[data-dz-errormessage]')?.textContent ?? '' : ''}))`,
			settled: `(() => { const it = [...document.querySelectorAll('.dz-preview')];
			return it.length === %d && it.every(i => i.classList.contains('dz-complete')) })()`,
		},
		"blueimp": {
			input: `#fileupload`,
			items: `[...document.querySelectorAll('#uploads li')].map(li => {
			const [name, ...rest] = li.textContent.split(': ');
			return {name, ok: li.classList.contains('done'), error: li.classList.contains('failed') ? rest.join(': ') : ''} })`,
			settled: `document.querySelectorAll('#uploads li').length === %d`,
		},
	}
}

// uploadWith opens lib's page against the server at api, picks files, and waits until the library
// shows every file as done or failed.
func uploadWith(t *testing.T, tab context.Context, site *libSite, lib, api string, files []string) []libItem {
	t.Helper()
	base, _, _ := strings.Cut(lib, "-")
	d := libDrivers()[base]
	if err := chromedp.Do(tab,
		chromedp.Navigate(site.pageURL(lib, api)),
		chromedp.WaitReady(d.input),
		chromedp.SetUploadFiles(d.input, files),
	); err != nil {
		t.Fatalf("%s page: %v", lib, err)
	}
	if d.start != "" {
		if _, err := chromedp.Run(tab, chromedp.Poll[chromedp.Void](d.start, chromedp.WithPollingTimeout(0))); err != nil {
			t.Fatalf("%s: start the upload: %v", lib, err)
		}
	}
	if _, err := chromedp.Run(tab, chromedp.Poll[chromedp.Void](fmt.Sprintf(d.settled, len(files)), chromedp.WithPollingTimeout(0))); err != nil {
		t.Fatalf("%s: uploads did not settle: %v", lib, err)
	}
	items, err := chromedp.Run(tab, chromedp.Evaluate[[]libItem](d.items))
	if err != nil {
		t.Fatalf("%s: read the page: %v", lib, err)
	}
	screenshot(t, tab, "lib-"+strings.ReplaceAll(t.Name(), "/", "-")+".png")
	return items
}

// submitForm picks files in the documented plain form, submits it, and returns the answer the
// browser shows in place of the page.
func submitForm(t *testing.T, tab context.Context, site *libSite, api string, files []string) string {
	t.Helper()
	if err := chromedp.Do(tab,
		chromedp.Navigate(site.pageURL("form", api)),
		chromedp.WaitReady(`input[name="file"]`),
		chromedp.SetUploadFiles(`input[name="file"]`, files),
		chromedp.SetValue(`input[name="tags"]`, "form, browser"),
		chromedp.Click(`button`),
		chromedp.WaitReady(`body > pre`), // Chromium shows a JSON answer in a <pre>
	); err != nil {
		t.Fatalf("form: %v", err)
	}
	answer, err := chromedp.Run(tab, chromedp.Evaluate[string](`location.origin + ' ' + document.body.innerText`))
	if err != nil {
		t.Fatalf("form: read the answer: %v", err)
	}
	origin, body, _ := strings.Cut(answer, " ")
	if origin != api {
		t.Fatalf("form: the browser shows %s, not the server's answer: %s", origin, body)
	}
	return body
}

// xhrPosts counts the page's finished requests to url (each retry is one more).
func xhrPosts(t *testing.T, tab context.Context, url string) int {
	t.Helper()
	n, err := chromedp.Run(tab, chromedp.Evaluate[int](fmt.Sprintf(
		`performance.getEntriesByType('resource').filter(e => e.name === %q && e.initiatorType === 'xmlhttprequest').length`, url)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// libBackend is a server that stores what it receives, and a way to read back what it stored.
type libBackend struct {
	name    string
	srv     *testServer
	stored  func(t *testing.T) []string // SHA-256 of every stored file
	ordered bool                        // stored lists them in the order they were stored
}

func startLibBackends(t *testing.T, origin string) []libBackend {
	t.Helper()
	fake := newFakeCloudinary(t)
	fakeEnv := baseEnv(t, fake)
	local := localEnv(t)
	var out []libBackend
	for _, env := range []map[string]string{fakeEnv, local} {
		env["MAX_UPLOAD_BYTES"] = "1048576"
		env["ALLOWED_ORIGINS"] = origin
	}
	out = append(out, libBackend{name: "fake_cloudinary", srv: startServer(t, fakeEnv), ordered: true, stored: func(t *testing.T) []string {
		var sums []string
		for _, u := range fake.Uploads() {
			sums = append(sums, u.SHA256)
		}
		return sums
	}})
	dir := local["UPLOAD_DIR"]
	out = append(out, libBackend{name: "local_store", srv: startServer(t, local), stored: func(t *testing.T) []string {
		var sums []string
		err := filepath.WalkDir(filepath.Join(dir, "files"), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sums = append(sums, sha256Hex(b))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return sums
	}})
	return out
}

// libFile is a file a test picks, and what it must arrive as.
type libFile struct {
	path, name, sha string
}

func newLibFile(t *testing.T, name string, b []byte) libFile {
	t.Helper()
	return libFile{path: writeTemp(t, name, b), name: name, sha: sha256Hex(b)}
}

func paths(files []libFile) []string {
	var out []string
	for _, f := range files {
		out = append(out, f.path)
	}
	return out
}

// checkArrived fails unless every file was stored byte for byte, and, where the store tells, in order.
func checkArrived(t *testing.T, b libBackend, files []libFile) {
	t.Helper()
	stored := b.stored(t)
	var want []string
	for _, f := range files {
		want = append(want, f.sha)
		if !slices.Contains(stored, f.sha) {
			t.Errorf("%s did not arrive byte for byte (sha256 %s not stored)", f.name, f.sha)
		}
	}
	if b.ordered && len(stored) >= len(want) && !slices.Equal(stored[len(stored)-len(want):], want) {
		t.Errorf("the last %d files stored are not the files picked, in order", len(want))
	}
}

// serverMessage is the error message the server answers a plain multipart POST of one file with.
func serverMessage(t *testing.T, api string, f libFile, contentType string) (int, string) {
	t.Helper()
	b, err := os.ReadFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	ct, body := buildForm(t, filePartOf("file", f.name, b).typed(contentType))
	resp, err := newClient(t).Post(api+"/upload", ct, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var e apiErrorBody
	decodeBody(t, resp, &e)
	if e.Error.Message == "" {
		t.Fatalf("server answered %d without an error message", resp.StatusCode)
	}
	return resp.StatusCode, e.Error.Message
}

// uniquePNG is a real PNG whose bytes no other file in the test has.
func uniquePNG(t *testing.T, seq *int) []byte {
	t.Helper()
	*seq++
	return prettyPNG(t, 20+*seq, 16+*seq%7)
}

func TestBrowserLibraries(t *testing.T) {
	site := newLibSite(t)
	browser := newBrowser(t)
	backends := startLibBackends(t, site.srv.URL)
	seq := 0
	// A few MiB: the library is still sending when the 413 comes, and must show it, not a reset.
	big := newLibFile(t, "big.png", append(testPNG(t, 4, 4), make([]byte, 3<<20)...))
	text := newLibFile(t, "notes.txt", []byte("these are notes, not an image\n"))

	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			api := b.srv.url
			status, tooBig := serverMessage(t, api, big, "image/png")
			if status != http.StatusRequestEntityTooLarge {
				t.Fatalf("big file: status %d, want 413", status)
			}
			status, notImage := serverMessage(t, api, text, "text/plain")
			if status != http.StatusUnsupportedMediaType {
				t.Fatalf("text file: status %d, want 415", status)
			}
			// checkShown fails unless the library shows each picked file, the good ones as uploaded and
			// big and text with the server's message.
			checkShown := func(t *testing.T, items []libItem, picked []libFile) {
				t.Helper()
				want := map[string]string{}
				for _, f := range picked {
					want[f.name] = map[libFile]string{big: tooBig, text: notImage}[f]
				}
				if len(items) != len(want) {
					t.Fatalf("the library shows %d files, want %d: %+v", len(items), len(want), items)
				}
				for _, it := range items {
					msg, ok := want[it.Name]
					switch {
					case !ok:
						t.Errorf("the library shows a file %q that was not picked", it.Name)
					case msg == "" && (!it.OK || it.Error != ""):
						t.Errorf("%s: not shown as uploaded (error %q)", it.Name, it.Error)
					case msg != "" && (it.OK || it.Error != msg):
						t.Errorf("%s: shown error %q, want the server's %q", it.Name, it.Error, msg)
					}
				}
			}
			tab := newTab(t, browser)

			t.Run("uppy", func(t *testing.T) {
				one := newLibFile(t, "uppy-one.png", uniquePNG(t, &seq))
				checkShown(t, uploadWith(t, tab, site, "uppy", api, paths([]libFile{one})), []libFile{one})
				checkArrived(t, b, []libFile{one})

				checkShown(t, uploadWith(t, tab, site, "uppy", api, paths([]libFile{big, text})), []libFile{big, text})
				if n := xhrPosts(t, tab, api+"/upload"); n != 2 {
					t.Errorf("Uppy sent %d requests for 2 refused files, want 2 (no retries of a 4xx)", n)
				}
			})
			t.Run("uppy_bundle", func(t *testing.T) {
				var three []libFile
				for i := range 3 {
					three = append(three, newLibFile(t, fmt.Sprintf("uppy-bundle-%d.png", i), uniquePNG(t, &seq)))
				}
				checkShown(t, uploadWith(t, tab, site, "uppy-bundle", api, paths(three)), three)
				if n := xhrPosts(t, tab, api+"/upload"); n != 1 {
					t.Errorf("Uppy with bundle: true sent %d requests, want 1", n)
				}
				checkArrived(t, b, three)

				// One answer for the whole bundle: a refused file fails it, and Uppy shows every file
				// with that message, though the others were stored (the answer lists them).
				first := newLibFile(t, "uppy-bundle-first.png", uniquePNG(t, &seq))
				last := newLibFile(t, "uppy-bundle-last.png", uniquePNG(t, &seq))
				items := uploadWith(t, tab, site, "uppy-bundle", api, paths([]libFile{first, text, last}))
				if len(items) != 3 {
					t.Fatalf("Uppy shows %d files, want 3: %+v", len(items), items)
				}
				for _, it := range items {
					if it.OK || it.Error != notImage {
						t.Errorf("bundle with a refused file: %s shown as %+v, want the error %q", it.Name, it, notImage)
					}
				}
				checkArrived(t, b, []libFile{first, last})
			})
			t.Run("filepond", func(t *testing.T) {
				one := newLibFile(t, "filepond-one.png", uniquePNG(t, &seq))
				var items []libItem // FilePond takes one file at a time on its defaults
				for _, f := range []libFile{one, big, text} {
					items = append(items, uploadWith(t, tab, site, "filepond", api, paths([]libFile{f}))...)
				}
				checkShown(t, items, []libFile{one, big, text})
				checkArrived(t, b, []libFile{one})
			})
			t.Run("dropzone", func(t *testing.T) {
				one := newLibFile(t, "dropzone-one.png", uniquePNG(t, &seq))
				checkShown(t, uploadWith(t, tab, site, "dropzone", api, paths([]libFile{one, big, text})), []libFile{one, big, text})
				checkArrived(t, b, []libFile{one})
			})
			t.Run("blueimp", func(t *testing.T) {
				one := newLibFile(t, "blueimp-one.png", uniquePNG(t, &seq))
				checkShown(t, uploadWith(t, tab, site, "blueimp", api, paths([]libFile{one, big, text})), []libFile{one, big, text})
				checkArrived(t, b, []libFile{one})
			})
			t.Run("form", func(t *testing.T) {
				var three []libFile
				for i := range 3 {
					three = append(three, newLibFile(t, fmt.Sprintf("form-%d.png", i), uniquePNG(t, &seq)))
				}
				var answer struct {
					Files []struct {
						OriginalFilename string   `json:"original_filename"`
						Tags             []string `json:"tags"`
						Error            any      `json:"error"`
					} `json:"files"`
				}
				body := submitForm(t, tab, site, api, paths(three))
				if err := json.Unmarshal([]byte(body), &answer); err != nil {
					t.Fatalf("form answer is not JSON: %v: %s", err, body)
				}
				var names []string
				for _, f := range answer.Files {
					names = append(names, f.OriginalFilename)
					if f.Error != nil || !slices.Equal(f.Tags, []string{"form", "browser"}) {
						t.Errorf("form file %q: error %v, tags %q", f.OriginalFilename, f.Error, f.Tags)
					}
				}
				if want := []string{"form-0", "form-1", "form-2"}; !slices.Equal(names, want) {
					t.Errorf("form answer names %q, want %q: %s", names, want, body)
				}
				checkArrived(t, b, three)

				for f, want := range map[libFile]string{big: tooBig, text: notImage} {
					var e apiErrorBody
					body := submitForm(t, tab, site, api, paths([]libFile{f}))
					if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Message != want {
						t.Errorf("form with %s: the browser shows %s, want the message %q", f.name, body, want)
					}
				}

				// The second of three refused: the error on top, and every file's fate in order.
				first := newLibFile(t, "form-first.png", uniquePNG(t, &seq))
				last := newLibFile(t, "form-last.png", uniquePNG(t, &seq))
				var mixed struct {
					Error struct{ Message string } `json:"error"`
					Files []struct {
						OriginalFilename string                   `json:"original_filename"`
						Error            struct{ Message string } `json:"error"`
					} `json:"files"`
				}
				body = submitForm(t, tab, site, api, paths([]libFile{first, text, last}))
				if err := json.Unmarshal([]byte(body), &mixed); err != nil {
					t.Fatalf("form answer is not JSON: %v: %s", err, body)
				}
				if mixed.Error.Message != notImage || len(mixed.Files) != 3 ||
					mixed.Files[0].OriginalFilename != "form-first" || mixed.Files[1].Error.Message != notImage ||
					mixed.Files[2].OriginalFilename != "form-last" {
					t.Errorf("form with the second of three refused: the browser shows %s", body)
				}
				checkArrived(t, b, []libFile{first, last})
			})
		})
	}

	// On their defaults the libraries hide our message (what the snippets' options are for), and
	// Uppy sends a refused file four times. If a new version changes that, docs/upload-libraries.md must change.
	t.Run("defaults", func(t *testing.T) {
		api := backends[len(backends)-1].srv.url
		tab := newTab(t, browser)
		for lib, want := range map[string]string{
			"uppy-defaults":     "This looks like a network error, the endpoint might be blocked by an internet provider or a firewall.",
			"filepond-defaults": "Error during upload",
			"dropzone-defaults": "[object Object]",
		} {
			items := uploadWith(t, tab, site, lib, api, paths([]libFile{text}))
			if len(items) != 1 || items[0].OK || items[0].Error != want {
				t.Errorf("%s shows %+v, want the error %q", lib, items, want)
			}
			if lib == "uppy-defaults" {
				if n := xhrPosts(t, tab, api+"/upload"); n != 4 {
					t.Errorf("Uppy on its defaults sent %d requests for a refused file, want 4 (3 retries)", n)
				}
			}
		}
	})
}

// snippetPage is where the README sends readers for the libraries' snippets.
const snippetPage = "docs/upload-libraries.md"

// TestREADMELibrarySnippets keeps the documented snippets the tested ones: each file in
// testdata/browserlibs that TestBrowserLibraries runs is in docs/upload-libraries.md (which the
// README links to), after a <!-- snippet: path --> line, as the fenced block that follows it,
// byte for byte. go test -run TestREADMELibrarySnippets -update copies the files into the page.
func TestREADMELibrarySnippets(t *testing.T) {
	readmeText, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readmeText), "]("+snippetPage+")") {
		t.Errorf("README.md does not link to %s", snippetPage)
	}
	b, err := os.ReadFile(snippetPage)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, name := range []string{"uppy.js", "filepond.js", "dropzone.js", "blueimp.js", "form.html"} {
		marker := "<!-- snippet: " + browserLibsDir + "/" + name + " -->\n"
		if n := strings.Count(page, marker); n != 1 {
			t.Errorf("%s has %d %q lines, want 1", snippetPage, n, strings.TrimSpace(marker))
			continue
		}
		before, rest, _ := strings.Cut(page, marker)
		fence, rest, ok := strings.Cut(rest, "\n")
		if !ok || !strings.HasPrefix(fence, "```") {
			t.Errorf("%s: no fenced block right after %q", snippetPage, strings.TrimSpace(marker))
			continue
		}
		block, after, ok := strings.Cut(rest, "\n```\n")
		if !ok {
			t.Errorf("%s: the block after %q does not end", snippetPage, strings.TrimSpace(marker))
			continue
		}
		want := readSnippet(t, name)
		if block+"\n" == want {
			continue
		}
		if *update {
			page = before + marker + fence + "\n" + want + "```\n" + after
			continue
		}
		t.Errorf("%s's %s snippet differs from %s/%s, the tested one (go test -run TestREADMELibrarySnippets -update copies it):\npage:\n%s\nfile:\n%s",
			snippetPage, name, browserLibsDir, name, block, want)
	}
	if *update && page != string(b) {
		if err := os.WriteFile(snippetPage, []byte(page), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
