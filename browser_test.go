package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The browser tests drive a real Chromium through the upload page and through fetch from other
// origins. Locally they skip when no Chromium is installed; under CI=true that is a failure.

// chromiumPath finds the browser, or skips (fails under CI).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium found: CI must run the browser tests (.ci/run installs it)")
	}
	t.Skip("no chromium found (install Debian's chromium to run the browser tests)")
	return ""
}

// newBrowser starts a headless Chromium with a fresh profile and stops it, and every chromedp
// goroutine, when the test ends.
func newBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox, // root in CI containers
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1100, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(opts, extra...)...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		if err := chromedp.Cancel(ctx); err != nil {
			t.Logf("close browser: %v", err)
		}
		cancel()
		cancelAlloc() // waits for the browser process to exit
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// newTab opens a tab that closes when the test ends. The deadline only keeps a broken run
// from hanging until the test binary's own timeout; nothing is measured against it.
func newTab(t *testing.T, browser context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() {
		cancelTimeout()
		cancel()
	})
	return ctx
}

// pageItem is what the page shows for one upload.
type pageItem struct {
	State        string `json:"state"`
	Progress     int    `json:"progress"`
	Percent      string `json:"percent"`
	NaturalWidth int    `json:"naturalWidth"`
	Src          string `json:"src"`
	Result       string `json:"result"`
	Error        string `json:"error"`
}

// uploadThroughPage opens the page, picks files in its file input, and waits until every
// upload has settled (done or error), then reads what the page shows.
func uploadThroughPage(t *testing.T, tab context.Context, baseURL string, files []string, tags string) []pageItem {
	t.Helper()
	steps := []chromedp.Action[chromedp.Void]{
		chromedp.Navigate(baseURL + "/"),
		chromedp.WaitVisible("#drop-zone"),
	}
	if tags != "" {
		steps = append(steps, chromedp.SetValue("#tags", tags))
	}
	steps = append(steps, chromedp.SetUploadFiles("#file-input", files))
	if err := chromedp.Do(tab, steps...); err != nil {
		t.Fatalf("page: %v", err)
	}
	settled := fmt.Sprintf(`document.querySelectorAll('#uploads li.upload').length === %d &&
		!document.querySelector('#uploads li.upload[data-state=uploading]')`, len(files))
	if _, err := chromedp.Run(tab, chromedp.Poll[chromedp.Void](settled, chromedp.WithPollingTimeout(0))); err != nil {
		t.Fatalf("uploads did not settle: %v", err)
	}
	items, err := chromedp.Run(tab, chromedp.Evaluate[[]pageItem](`Array.from(document.querySelectorAll('#uploads li.upload')).map(li => {
		const img = li.querySelector('img.preview'), pre = li.querySelector('details.result > pre'), err = li.querySelector('p.error[role=alert]');
		return {state: li.dataset.state, progress: li.querySelector('progress.progress').value,
			percent: li.querySelector('span.percent').textContent,
			naturalWidth: img ? img.naturalWidth : 0, src: img ? img.src : '',
			result: pre ? pre.textContent : '', error: err ? err.textContent : ''};
	})`))
	if err != nil {
		t.Fatalf("read the page: %v", err)
	}
	return items
}

// screenshot saves the page when SCREENSHOT_DIR is set; never into the repository by default.
func screenshot(t *testing.T, tab context.Context, name string) {
	t.Helper()
	dir := os.Getenv("SCREENSHOT_DIR")
	if dir == "" {
		return
	}
	b, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := saveScreenshot(dir, name, b); err != nil {
		t.Fatal(err)
	}
}

// saveScreenshot writes a screenshot into dir, creating dir first, so that docs/testing.md's
// SCREENSHOT_DIR=/tmp/shots works as written.
func saveScreenshot(dir, name string, png []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name), png, 0o644)
}

func TestSaveScreenshotCreatesTheDirectory(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "shots", "today")
	if err := saveScreenshot(dir, "page.png", []byte("png")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "page.png")); err != nil || string(b) != "png" {
		t.Errorf("%q, %v", b, err)
	}
}

// prettyPNG is a gradient, so that a screenshot shows a real preview.
func prettyPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for x := 0; x < w; x++ {
		for y := 0; y < h; y++ {
			img.Set(x, y, color.RGBA{uint8(40 + 180*x/w), uint8(60 + 120*y/h), uint8(220 - 100*x/w), 255})
		}
	}
	var buf strings.Builder
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return []byte(buf.String())
}

func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// localEnv is a server environment with the local store and no Cloudinary credentials.
func localEnv(t *testing.T) map[string]string {
	return map[string]string{
		"PORT":       "0",
		"ENV_FILE":   filepath.Join(t.TempDir(), "absent.env"),
		"UPLOAD_DIR": t.TempDir(),
		"LOG_LEVEL":  "debug",
	}
}

func TestBrowserUploadPage(t *testing.T) {
	img := prettyPNG(t, 96, 64)
	file := writeTemp(t, "gradient.png", img)

	// Cloudinary's delivery host is res.cloudinary.com. The browser resolves it to a local TLS
	// server that serves what the fake stored, so the page's real CSP (img-src https://res.cloudinary.com)
	// is exercised without the internet.
	delivered := make(chan string, 8)
	cdn := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case delivered <- r.URL.Path:
		default:
		}
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write(img)
	}))
	t.Cleanup(cdn.Close)
	_, cdnPort, err := net.SplitHostPort(cdn.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	browser := newBrowser(t,
		chromedp.Flag("host-resolver-rules", "MAP res.cloudinary.com:443 127.0.0.1:"+cdnPort),
		chromedp.Flag("ignore-certificate-errors", true), // the local CDN's certificate is httptest's
	)

	for _, tc := range []struct {
		name      string
		env       func(t *testing.T) (map[string]string, *fakeCloudinary)
		urlPrefix func(srvURL string) string
	}{
		{"local_store", func(t *testing.T) (map[string]string, *fakeCloudinary) { return localEnv(t), nil },
			func(srvURL string) string { return srvURL + "/files/" }},
		{"fake_cloudinary", func(t *testing.T) (map[string]string, *fakeCloudinary) {
			fake := newFakeCloudinary(t)
			return baseEnv(t, fake), fake
		}, func(string) string { return "https://res.cloudinary.com/" + fakeCloudName + "/image/upload/" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, fake := tc.env(t)
			srv := startServer(t, env)
			tab := newTab(t, browser)
			items := uploadThroughPage(t, tab, srv.url, []string{file}, "browser, test")
			if len(items) != 1 {
				t.Fatalf("page shows %d uploads, want 1", len(items))
			}
			it := items[0]
			if it.State != "done" || it.Error != "" {
				t.Fatalf("upload state %q, error %q", it.State, it.Error)
			}
			if it.Progress != 100 || it.Percent != "100%" {
				t.Errorf("progress %d %q, want 100 and 100%%", it.Progress, it.Percent)
			}
			if it.NaturalWidth != 96 {
				t.Errorf("preview naturalWidth %d, want 96 (the image loaded)", it.NaturalWidth)
			}
			if !strings.HasPrefix(it.Src, tc.urlPrefix(srv.url)) {
				t.Errorf("preview src %q, want it under %q", it.Src, tc.urlPrefix(srv.url))
			}
			for _, want := range []string{`"secure_url"`, `"public_id"`, `"width": 96`, `"browser"`} {
				if !strings.Contains(it.Result, want) {
					t.Errorf("JSON result lacks %s: %s", want, it.Result)
				}
			}
			if fake != nil {
				ups := fake.Uploads()
				if len(ups) != 1 || ups[0].SHA256 != sha256Hex(img) {
					t.Errorf("Cloudinary did not receive the file as picked: %+v", ups)
				}
				select {
				case p := <-delivered:
					if !strings.HasPrefix(p, "/"+fakeCloudName+"/image/upload/") {
						t.Errorf("preview fetched %q from the CDN", p)
					}
				default:
					t.Errorf("the preview was not fetched from Cloudinary's delivery host")
				}
			}
			screenshot(t, tab, "page-"+tc.name+".png")
		})
	}
}

func TestBrowserErrorsShowServerMessage(t *testing.T) {
	browser := newBrowser(t)
	env := localEnv(t)
	env["MAX_UPLOAD_BYTES"] = "1048576"
	srv := startServer(t, env)
	tab := newTab(t, browser)

	good := writeTemp(t, "mountain-lake.png", prettyPNG(t, 480, 300))
	// A few MiB: a browser that is still sending when the 413 comes must see it, not a reset.
	big := writeTemp(t, "holiday-raw.png", append(testPNG(t, 4, 4), make([]byte, 6<<20)...))
	text := writeTemp(t, "notes.png", []byte("these are notes, not an image\n"))
	items := uploadThroughPage(t, tab, srv.url, []string{good, big, text}, "")
	if len(items) != 3 {
		t.Fatalf("page shows %d uploads, want 3", len(items))
	}
	if items[0].State != "done" || items[0].NaturalWidth != 480 {
		t.Errorf("good file: state %q, naturalWidth %d, error %q", items[0].State, items[0].NaturalWidth, items[0].Error)
	}
	for i, want := range map[int]string{
		1: "413 — file is larger than the limit of 1 MiB",
		2: "415 — file type text/plain is not allowed (allowed: image/*)",
	} {
		if items[i].State != "error" || items[i].Error != want {
			t.Errorf("upload %d: state %q, error %q, want %q", i, items[i].State, items[i].Error, want)
		}
	}
	screenshot(t, tab, "page-errors.png")
}

func TestBrowserCrossOriginFetch(t *testing.T) {
	browser := newBrowser(t)
	blank := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte("<!doctype html><title>another site</title><p>another site</p>"))
	})
	allowedSite := httptest.NewServer(blank)
	t.Cleanup(allowedSite.Close)
	otherSite := httptest.NewServer(blank)
	t.Cleanup(otherSite.Close)

	env := localEnv(t)
	env["ALLOWED_ORIGINS"] = allowedSite.URL
	srv := startServer(t, env)
	img := base64.StdEncoding.EncodeToString(testPNG(t, 12, 10))

	// The README's browser example, run from a page on another origin.
	script := fmt.Sprintf(`(async () => {
		const bytes = Uint8Array.from(atob(%q), c => c.charCodeAt(0));
		const form = new FormData();
		form.append("tags", "avatar");
		form.append("file", new Blob([bytes], {type: "image/png"}), "avatar.png");
		try {
			const res = await fetch(%q + "/upload", {method: "POST", body: form});
			const body = await res.json();
			if (!res.ok) return "error: " + body.error.message;
			const img = new Image();
			img.src = body.secure_url;
			await img.decode();
			return "ok: " + img.naturalWidth;
		} catch (e) {
			return "blocked: " + e.name;
		}
	})()`, img, srv.url)

	for _, tc := range []struct {
		name, site, want string
	}{
		{"allowed_origin", allowedSite.URL, "ok: 12"},
		{"other_origin_blocked_by_browser", otherSite.URL, "blocked: TypeError"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tab := newTab(t, browser)
			if err := chromedp.Do(tab, chromedp.Navigate(tc.site+"/")); err != nil {
				t.Fatal(err)
			}
			got, err := chromedp.Run(tab, chromedp.Evaluate[string](script, chromedp.EvalAwaitPromise))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("fetch from %s: %q, want %q", tc.site, got, tc.want)
			}
		})
	}
}

// A page on a foreign origin that posts a form to /upload (no fetch, no preflight: a plain form
// submission, which CORS never stops) is refused, and nothing is stored.
func TestBrowserForeignFormPostRefused(t *testing.T) {
	browser := newBrowser(t)
	allowedSite := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(allowedSite.Close)
	env := localEnv(t)
	env["ALLOWED_ORIGINS"] = allowedSite.URL
	srv := startServer(t, env)
	page := fmt.Sprintf(`<!doctype html><title>another site</title>
		<form id="f" method="post" enctype="multipart/form-data" action="%s/upload">
		<input type="file" name="file" id="file"><button id="go">Send</button></form>`, srv.url)
	otherSite := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(page))
	}))
	t.Cleanup(otherSite.Close)

	file := writeTemp(t, "cat.png", testPNG(t, 8, 8))
	tab := newTab(t, browser)
	if err := chromedp.Do(tab,
		chromedp.Navigate(otherSite.URL+"/"),
		chromedp.WaitVisible("#go"),
		chromedp.SetUploadFiles("#file", []string{file}),
		chromedp.Click("#go"),
	); err != nil {
		t.Fatal(err)
	}
	// The form's answer is the new document: the server's JSON, which must be the 403.
	if err := chromedp.Do(tab, chromedp.WaitReady(chromedp.Search(`//body[contains(., '{"')]`))); err != nil {
		t.Fatalf("the form's answer did not arrive: %v", err)
	}
	text, err := chromedp.Run(tab, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, errForeignOrigin.message) {
		t.Errorf("the foreign page's form got %q, want the 403 %q", text, errForeignOrigin.message)
	}
	loc, err := chromedp.Run(tab, chromedp.Location())
	if err != nil || loc != srv.url+"/upload" {
		t.Errorf("the answer's document is %q (%v), want %s/upload", loc, err, srv.url)
	}
	if files := listFiles(t, env["UPLOAD_DIR"]); len(files) != 0 {
		t.Errorf("the foreign form's file was stored: %v", files)
	}
}
