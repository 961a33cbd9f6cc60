package localstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"cloudinary-upload-api/internal/store"
)

// A 1 × 1 PNG.
var onePixel = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\x89\x99=\x1d\x00\x00\x00\x00IEND\xaeB`\x82")

type answer struct {
	PublicID     string `json:"public_id"`
	Format       string `json:"format"`
	ResourceType string `json:"resource_type"`
	Bytes        int64  `json:"bytes"`
	Width        int    `json:"width"`
	SecureURL    string `json:"secure_url"`
	Existing     bool   `json:"existing"`
	DeleteToken  string `json:"delete_token"`
}

func upload(t *testing.T, s *Store, file []byte, p store.Params) answer {
	t.Helper()
	raw, err := s.Upload(context.Background(), bytes.NewReader(file), p)
	if err != nil {
		t.Fatal(err)
	}
	var a answer
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return a
}

// An upload is answered as Cloudinary would, served back by its URL's name, and a taken public
// id is never overwritten.
func TestUploadOpenAndNoOverwrite(t *testing.T) {
	t.Parallel()
	s, err := New(t.TempDir(), "site", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	a := upload(t, s, onePixel, store.Params{PublicID: "cat", BaseURL: "http://localhost:8080"})
	if a.PublicID != "site/cat" || a.Format != "png" || a.ResourceType != "image" || a.Bytes != int64(len(onePixel)) || a.Width != 1 || a.Existing {
		t.Errorf("answer %+v", a)
	}
	dir, name := filepath.Split(a.SecureURL)
	if dir != "http://localhost:8080"+FilesRoute {
		t.Errorf("secure_url %s is not under %s", a.SecureURL, FilesRoute)
	}
	f, rec, err := s.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(f)
	_ = f.Close()
	if err != nil || !bytes.Equal(got, onePixel) || rec.ContentType != "image/png" {
		t.Errorf("Open(%s): %d bytes, %s, %v", name, len(got), rec.ContentType, err)
	}
	again := upload(t, s, []byte("other bytes entirely"), store.Params{PublicID: "cat", BaseURL: "http://localhost:8080"})
	if !again.Existing || again.SecureURL != a.SecureURL {
		t.Errorf("second upload of the public id: %+v, want the first one's, existing", again)
	}
	for _, bad := range []string{"../meta/x.json", "nothere.png", a.SecureURL} {
		if _, _, err := s.Open(bad); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Open(%q) = %v, want fs.ErrNotExist", bad, err)
		}
	}
}

// New removes what an interrupted process left half-written.
func TestNewRemovesStaleTemps(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o750); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "tmp", ".upload-crashed")
	if err := os.WriteFile(stale, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := New(dir, "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the stale temp file is still there: %v", err)
	}
}
