package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"cloudinary-upload-api/internal/store"
	"cloudinary-upload-api/internal/upload"
)

// filesAnswerBody is the answer for several files.
type filesAnswerBody struct {
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
	Files []map[string]any `json:"files"`
}

func entryError(e map[string]any) string {
	errObj, _ := e["error"].(map[string]any)
	msg, _ := errObj["message"].(string)
	return msg
}

func threeImages(t *testing.T) [][]byte {
	return [][]byte{testPNG(t, 10, 7), testJPEG(t, 30, 20), testPNG(t, 33, 9)}
}

func TestUploadSeveralFilesArriveInOrder(t *testing.T) {
	fake := newFakeCloudinary(t)
	srv := startServer(t, baseEnv(t, fake))
	client := newClient(t)
	imgs := threeImages(t)
	names := []string{"one.png", "two.jpg", "three.png"}
	ct, body := buildForm(t, field("tags", "trip"), filePartOf("files[]", names[0], imgs[0]),
		filePartOf("files[]", names[1], imgs[1]), filePartOf("files[]", names[2], imgs[2]))
	resp := postForm(t, client, srv.url, ct, bytes.NewReader(body))
	var got filesAnswerBody
	decodeBody(t, resp, &got)
	if resp.StatusCode != http.StatusOK || got.Error != nil || len(got.Files) != 3 {
		t.Fatalf("status %d, answer %+v; want 200 with three files", resp.StatusCode, got)
	}
	ups := fake.Uploads()
	if len(ups) != 3 {
		t.Fatalf("fake stored %d files, want 3", len(ups))
	}
	for i, up := range ups {
		if up.SHA256 != sha256Hex(imgs[i]) || up.Params.Get("filename_override") != names[i] {
			t.Errorf("upload %d: %s %q, want %s %q (in order, byte for byte)", i, up.SHA256, up.Params.Get("filename_override"), sha256Hex(imgs[i]), names[i])
		}
		if strings.Join(up.Tags(), ",") != "trip" {
			t.Errorf("upload %d: tags %v, want the form's tags on every file", i, up.Tags())
		}
		if got.Files[i]["bytes"] != float64(len(imgs[i])) || got.Files[i]["public_id"] == nil {
			t.Errorf("answer entry %d = %v, want Cloudinary's result for file %d", i, got.Files[i], i)
		}
	}
}

func TestUploadSeveralFilesToTheLocalStore(t *testing.T) {
	env := map[string]string{"PORT": "0", "ENV_FILE": "absent.env", "STORAGE": "local", "UPLOAD_DIR": t.TempDir(), "LOG_LEVEL": "debug"}
	srv := startServer(t, env)
	client := newClient(t)
	imgs := threeImages(t)
	ct, body := buildForm(t, filePartOf("file", "a.png", imgs[0]), filePartOf("file", "b.jpg", imgs[1]), filePartOf("file", "c.png", imgs[2]))
	resp := postForm(t, client, srv.url, ct, bytes.NewReader(body))
	var got filesAnswerBody
	decodeBody(t, resp, &got)
	if resp.StatusCode != http.StatusOK || len(got.Files) != 3 {
		t.Fatalf("status %d, answer %+v", resp.StatusCode, got)
	}
	for i, f := range got.Files {
		url, _ := f["secure_url"].(string)
		r, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		stored, err := io.ReadAll(r.Body)
		_ = r.Body.Close()
		if err != nil || !bytes.Equal(stored, imgs[i]) {
			t.Errorf("file %d at %s: %d bytes (%v), want the %d bytes sent", i, url, len(stored), err, len(imgs[i]))
		}
	}
}

func TestUploadSeveralFilesOneRefused(t *testing.T) {
	fake := newFakeCloudinary(t)
	srv := startServer(t, baseEnv(t, fake))
	imgs := threeImages(t)
	ct, body := buildForm(t, filePartOf("file", "a.png", imgs[0]), filePartOf("file", "notes.png", []byte("just some text, not an image\n")),
		filePartOf("file", "c.png", imgs[2]))
	resp := postForm(t, newClient(t), srv.url, ct, bytes.NewReader(body))
	var got filesAnswerBody
	decodeBody(t, resp, &got)
	if resp.StatusCode != http.StatusUnsupportedMediaType || got.Error == nil || !strings.Contains(got.Error.Message, "text/plain is not allowed") {
		t.Fatalf("status %d, error %+v; want the second file's 415 on top", resp.StatusCode, got.Error)
	}
	if len(got.Files) != 3 || got.Files[0]["public_id"] == nil || !strings.Contains(entryError(got.Files[1]), "text/plain is not allowed") || got.Files[2]["public_id"] == nil {
		t.Fatalf("files %v; want stored, refused, stored", got.Files)
	}
	if ups := fake.Uploads(); len(ups) != 2 || ups[0].SHA256 != sha256Hex(imgs[0]) || ups[1].SHA256 != sha256Hex(imgs[2]) {
		t.Fatalf("fake stored %d files, want the first and third", len(ups))
	}
}

func TestUploadPublicIDWithTwoFiles(t *testing.T) {
	fake := newFakeCloudinary(t)
	srv := startServer(t, baseEnv(t, fake))
	imgs := threeImages(t)
	ct, body := buildForm(t, field("public_id", "cats/tom"), filePartOf("file", "a.png", imgs[0]), filePartOf("file", "b.jpg", imgs[1]))
	resp := postForm(t, newClient(t), srv.url, ct, bytes.NewReader(body))
	var got filesAnswerBody
	decodeBody(t, resp, &got)
	if resp.StatusCode != http.StatusBadRequest || got.Error == nil || !strings.Contains(got.Error.Message, "public_id names one file") {
		t.Fatalf("status %d, error %+v", resp.StatusCode, got.Error)
	}
	if len(got.Files) != 2 || got.Files[0]["public_id"] != "cats/tom" || !strings.Contains(entryError(got.Files[1]), "public_id names one file") {
		t.Fatalf("files %v; want the first named cats/tom, the second refused", got.Files)
	}
	if ups := fake.Uploads(); len(ups) != 1 || ups[0].Params.Get("public_id") != "cats/tom" {
		t.Fatalf("fake stored %+v, want only the first file, as cats/tom", ups)
	}
}

func TestUploadMaxFilesPerRequest(t *testing.T) {
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	env["MAX_FILES_PER_REQUEST"] = "2"
	srv := startServer(t, env)
	imgs := threeImages(t)
	ct, body := buildForm(t, filePartOf("file", "a.png", imgs[0]), filePartOf("file", "b.jpg", imgs[1]), filePartOf("file", "c.png", imgs[2]))
	resp := postForm(t, newClient(t), srv.url, ct, bytes.NewReader(body))
	var got filesAnswerBody
	decodeBody(t, resp, &got)
	if resp.StatusCode != http.StatusBadRequest || got.Error == nil || !strings.Contains(got.Error.Message, "at most 2 files per request") {
		t.Fatalf("status %d, error %+v", resp.StatusCode, got.Error)
	}
	if len(got.Files) != 3 || got.Files[1]["public_id"] == nil || !strings.Contains(entryError(got.Files[2]), "at most 2 files") {
		t.Fatalf("files %v; want two stored and the third refused", got.Files)
	}
	if ups := fake.Uploads(); len(ups) != 2 {
		t.Fatalf("fake stored %d files, want 2", len(ups))
	}
}

func TestUploadLibraryForms(t *testing.T) {
	fake := newFakeCloudinary(t)
	srv := startServer(t, baseEnv(t, fake))
	client := newClient(t)
	img := testPNG(t, 12, 12)
	for _, tc := range []struct {
		name  string
		parts []formPart
	}{
		{"uppy: name, type and relativePath before the file", []formPart{field("relativePath", "null"), field("name", "a.png"), field("type", "image/png"), filePartOf("file", "a.png", img)}},
		{"filepond: its metadata part, then the file, both named filepond", []formPart{field("filepond", "{}"), filePartOf("filepond", "a.png", img)}},
		{"blueimp: files[]", []formPart{filePartOf("files[]", "a.png", img)}},
		{"a surrounding form's inputs", []formPart{field("folder", "elsewhere"), field("overwrite", "true"), field("upload_preset", "x"), filePartOf("files", "a.png", img)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(fake.Uploads())
			ct, body := buildForm(t, tc.parts...)
			resp := postForm(t, client, srv.url, ct, bytes.NewReader(body))
			var got map[string]any
			decodeBody(t, resp, &got)
			if resp.StatusCode != http.StatusOK || got["public_id"] == nil || got["files"] != nil {
				t.Fatalf("status %d, answer %v; want one file's answer as always", resp.StatusCode, got)
			}
			ups := fake.Uploads()
			if len(ups) != before+1 || ups[len(ups)-1].SHA256 != sha256Hex(img) {
				t.Fatalf("fake stored %d files, want the one sent", len(ups)-before)
			}
			for _, name := range []string{"relativePath", "name", "type", "filepond", "folder", "overwrite", "upload_preset"} {
				if v := ups[len(ups)-1].Params[name]; v != nil {
					t.Errorf("the client's %q field reached Cloudinary: %q", name, v)
				}
			}
		})
	}
}

func TestUploadFilePartUnderAnotherName(t *testing.T) {
	fake := newFakeCloudinary(t)
	srv := startServer(t, baseEnv(t, fake))
	ct, body := buildForm(t, filePartOf("upload", "a.png", testPNG(t, 2, 2)))
	resp := postForm(t, newClient(t), srv.url, ct, bytes.NewReader(body))
	var got apiErrorBody
	decodeBody(t, resp, &got)
	want := `file part "upload" is not accepted: send files as "file", "files", "files[]" or "filepond"`
	if resp.StatusCode != http.StatusBadRequest || got.Error.Message != want {
		t.Fatalf("%d %q, want 400 %q", resp.StatusCode, got.Error.Message, want)
	}
	if n := fake.RequestCount(); n != 0 {
		t.Fatalf("%d requests reached Cloudinary", n)
	}
}

func TestUploadContextIsSignedLikeSign(t *testing.T) {
	fake := newFakeCloudinary(t)
	srv := startServer(t, baseEnv(t, fake))
	client := newClient(t)
	ct, body := buildForm(t, field("context", `alt=a cat|caption=on the mat`), filePartOf("file", "a.png", testPNG(t, 3, 3)))
	resp := postForm(t, client, srv.url, ct, bytes.NewReader(body))
	decodeOK(t, resp, "upload with context") // the fake checks the signature over every field
	if ups := fake.Uploads(); len(ups) != 1 || ups[0].Params.Get("context") != "alt=a cat|caption=on the mat" {
		t.Fatalf("context at the fake: %+v", ups)
	}

	// The same check as POST /sign: a control character is refused by both.
	ct, body = buildForm(t, field("context", "alt=a\x01"), filePartOf("file", "a.png", testPNG(t, 3, 3)))
	resp = postForm(t, client, srv.url, ct, bytes.NewReader(body))
	var got apiErrorBody
	decodeBody(t, resp, &got)
	_, signErr := signValue("context", json.RawMessage(`"alt=a\u0001"`))
	if resp.StatusCode != http.StatusBadRequest || signErr == nil || got.Error.Message != signErr.Error() {
		t.Fatalf("%d %q; POST /sign says %v", resp.StatusCode, got.Error.Message, signErr)
	}

	env := baseEnv(t, fake)
	env["SIGNABLE_PARAMS"] = "public_id"
	srv2 := startServer(t, env)
	before := len(fake.Uploads())
	ct, body = buildForm(t, field("context", "alt=x"), field("tags", "a"), filePartOf("file", "a.png", testPNG(t, 3, 3)))
	decodeOK(t, postForm(t, client, srv2.url, ct, bytes.NewReader(body)), "upload with fields that are not signable")
	if ups := fake.Uploads(); len(ups) != before+1 || ups[before].Params.Has("context") || len(ups[before].Tags()) != 0 {
		t.Fatalf("fields SIGNABLE_PARAMS leaves out reached Cloudinary: %+v", ups[before].Params)
	}
}

// syncBuffer is a log destination tests can read while the server writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestUploadIgnoredFieldsAreLogged(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := newServer(logger, testConfig(), testStorage(acceptAllUploader{}), newHealthState())
	ct, body := buildForm(t, field("relativePath", "null"), field("name", "a.png"), filePartOf("file", "a.png", testPNG(t, 2, 2)))
	req := httptest.NewRequest(http.MethodPost, "/upload", bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if !strings.Contains(logs.String(), `"msg":"form fields ignored"`) || !strings.Contains(logs.String(), `"fields":["relativePath","name"]`) {
		t.Fatalf("no debug line naming the ignored fields:\n%s", logs.String())
	}
}

// pieceRecorder is an uploader that reads the file as the Cloudinary uploader does (io.Copy,
// which takes uploadBody's WriteTo) and records the largest write.
type pieceRecorder struct {
	mu       sync.Mutex
	pieces   bool // the body's file is a pieceReader: the zero-copy path
	maxWrite int
	n        int64
}

func (u *pieceRecorder) Upload(_ context.Context, file io.Reader, _ store.Params) (json.RawMessage, error) {
	inner := file
	if c, ok := inner.(*countingReader); ok { // the metrics' counter, which keeps WriteTo
		inner = c.r
	}
	isPieces := upload.HandsOutPieces(inner)
	w := &maxWriter{}
	n, err := io.Copy(w, file)
	u.mu.Lock()
	defer u.mu.Unlock()
	u.pieces, u.maxWrite, u.n = isPieces, w.max, n
	if err != nil {
		return nil, err
	}
	return json.RawMessage(`{"public_id":"x"}`), nil
}

type maxWriter struct{ max int }

func (w *maxWriter) Write(p []byte) (int, error) {
	w.max = max(w.max, len(p))
	return len(p), nil
}

func TestUploadIgnoredFieldsCountAgainstTheFormBudget(t *testing.T) {
	t.Parallel()
	h := newServer(discardLogger(), testConfig(), testStorage(acceptAllUploader{}), newHealthState())
	for _, tc := range []struct {
		name   string
		size   int
		status int
	}{
		{"within 64 KiB", 60 << 10, http.StatusOK},
		{"over 64 KiB", 70 << 10, http.StatusBadRequest},
	} {
		ct, body := buildForm(t, field("description", strings.Repeat("d", tc.size)), filePartOf("file", "a.png", testPNG(t, 2, 2)))
		req := httptest.NewRequest(http.MethodPost, "/upload", bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.status || tc.status != http.StatusOK && !strings.Contains(rec.Body.String(), "form fields and part headers are larger than 64 KiB") {
			t.Errorf("%s: %d %s, want %d", tc.name, rec.Code, rec.Body, tc.status)
		}
	}
}

// A field the server would use (SIGNABLE_PARAMS) sent after the file comes too late: 400 naming
// it, and the answer's files say what was stored without it. A field it ignores anywhere is
// ignored after the file too (a form's named submit button).
func TestUploadFieldAfterTheFile(t *testing.T) {
	fake := newFakeCloudinary(t)
	srv := startServer(t, baseEnv(t, fake))
	img := testPNG(t, 4, 3)
	ct, body := buildForm(t, filePartOf("file", "a.png", img), field("tags", "late"))
	resp := postForm(t, newClient(t), srv.url, ct, bytes.NewReader(body))
	var got filesAnswerBody
	decodeBody(t, resp, &got)
	want := `form field "tags" came after a file, which was stored without it: send text fields before the files`
	if resp.StatusCode != http.StatusBadRequest || got.Error == nil || got.Error.Message != want {
		t.Fatalf("status %d, error %+v; want 400 %q", resp.StatusCode, got.Error, want)
	}
	if len(got.Files) != 1 || got.Files[0]["public_id"] == nil {
		t.Fatalf("files %v, want the stored file's result", got.Files)
	}
	if ups := fake.Uploads(); len(ups) != 1 || len(ups[0].Tags()) != 0 {
		t.Fatalf("fake stored %d files (tags %v), want the file without the late tags", len(ups), ups)
	}

	ct, body = buildForm(t, field("tags", "early"), filePartOf("file", "b.png", img), field("submit", "Upload"))
	resp = postForm(t, newClient(t), srv.url, ct, bytes.NewReader(body))
	answer := decodeOK(t, resp, "a field the server ignores, after the file")
	if tags, _ := answer["tags"].([]any); len(tags) != 1 || tags[0] != "early" {
		t.Errorf("tags %v, want the field sent before the file", answer["tags"])
	}
}
