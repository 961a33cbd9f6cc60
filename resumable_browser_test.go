package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// uppyTusSnippet is Uppy with its Tus plugin on its defaults, as docs/resumable.md shows it.
const uppyTusSnippet = `import Uppy from '@uppy/core'
import Dashboard from '@uppy/dashboard'
import Tus from '@uppy/tus'

new Uppy()
  .use(Dashboard, { inline: true, target: '#uploader' })
  .use(Tus, { endpoint: 'API/upload/resumable/' })
`

// In Chromium, Uppy's Tus plugin on its defaults uploads three files through a proxy that drops
// every connection once, when 60 % of the bytes have gone through: its retryDelays resume them,
// and each file arrives whole, once.
func TestBrowserUppyTusResumesAfterTheConnectionDrops(t *testing.T) {
	dir := browserLibs(t)
	fake := newFakeCloudinary(t)
	srv := startServer(t, resumableEnv(t, fake))
	var files []string
	var sums []string
	total := 0
	for i, n := range []int{6 << 20, 7 << 20, 3 << 20} {
		path, b := bigJPEG(t, n+i)
		named := filepath.Join(t.TempDir(), fmt.Sprintf("photo-%d.jpg", i))
		if err := os.Rename(path, named); err != nil {
			t.Fatal(err)
		}
		files, sums, total = append(files, named), append(sums, sha(b)), total+len(b)
	}
	proxy := newCuttingProxy(t, srv.url, int64(total)*6/10, nil)
	bundle := bundleUppy(t, dir, strings.ReplaceAll(uppyTusSnippet, "API", proxy.url()))
	modules := http.StripPrefix("/node_modules/", http.FileServer(http.Dir(filepath.Join(dir, "node_modules"))))
	mux := http.NewServeMux()
	mux.Handle("GET /node_modules/", modules)
	mux.HandleFunc("GET /uppy.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		_, _ = w.Write(bundle)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><meta charset="utf-8"><title>uppy tus</title>
<link rel="stylesheet" href="/node_modules/@uppy/core/dist/style.min.css">
<link rel="stylesheet" href="/node_modules/@uppy/dashboard/dist/style.min.css">
<div id="uploader"></div><script type="module" src="/uppy.js"></script>`)
	})
	site := httptest.NewServer(mux)
	t.Cleanup(site.Close)

	tab := newTab(t, newBrowser(t))
	d := libDrivers()["uppy"]
	if err := chromedp.Do(tab,
		chromedp.Navigate(site.URL+"/"),
		chromedp.WaitReady(d.input),
		chromedp.SetUploadFiles(d.input, files),
	); err != nil {
		t.Fatalf("page: %v", err)
	}
	if _, err := chromedp.Run(tab, chromedp.Poll[chromedp.Void](d.start, chromedp.WithPollingTimeout(0))); err != nil {
		t.Fatalf("start the upload: %v", err)
	}
	if _, err := chromedp.Run(tab, chromedp.Poll[chromedp.Void](fmt.Sprintf(d.settled, len(files)), chromedp.WithPollingTimeout(0))); err != nil {
		t.Fatalf("uploads did not settle: %v", err)
	}
	items, err := chromedp.Run(tab, chromedp.Evaluate[[]libItem](d.items))
	if err != nil {
		t.Fatal(err)
	}
	screenshot(t, tab, "uppy-tus.png")
	for _, it := range items {
		if !it.OK {
			t.Errorf("%s: not shown as uploaded: %q", it.Name, it.Error)
		}
	}
	if !proxy.cut.Load() {
		t.Error("the proxy never dropped the connections")
	}
	got := map[string]int{}
	for _, u := range fake.Uploads() {
		got[u.SHA256]++
	}
	for i, s := range sums {
		if got[s] != 1 {
			t.Errorf("file %d arrived %d times, want once", i, got[s])
		}
	}
	if len(got) != len(sums) {
		t.Errorf("the fake holds %d files, want %d", len(got), len(sums))
	}
}
