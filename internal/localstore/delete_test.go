package localstore

import (
	"context"
	"errors"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cloudinary-upload-api/internal/store"
)

// The delete token deletes its own file, both the served file and its record, within
// store.DeleteTokenTTL and never after; the record keeps nothing that deletes.
func TestDeleteByToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := New(dir, "site", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	now := start
	s.SetClock(func() time.Time { return now })
	ctx := context.Background()

	if a := upload(t, s, onePixel, store.Params{PublicID: "no-token"}); a.DeleteToken != "" {
		t.Errorf("a token without asking: %q", a.DeleteToken)
	}
	a := upload(t, s, onePixel, store.Params{PublicID: "mine", DeleteToken: true})
	b := upload(t, s, onePixel, store.Params{PublicID: "other", DeleteToken: true})
	if len(a.DeleteToken) != 64 || a.DeleteToken == b.DeleteToken {
		t.Fatalf("tokens %q, %q", a.DeleteToken, b.DeleteToken)
	}
	if again := upload(t, s, onePixel, store.Params{PublicID: "mine", DeleteToken: true}); !again.Existing || again.DeleteToken != "" {
		t.Errorf("an existing answer: existing %v, token %q; want no token", again.Existing, again.DeleteToken)
	}
	meta, err := os.ReadFile(filepath.Join(dir, metaDir, localKey("site/mine")+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(meta), a.DeleteToken) || strings.Contains(string(meta), a.DeleteToken[32:]) {
		t.Errorf("the record holds the token: %s", meta)
	}

	forged := a.DeleteToken[:32] + b.DeleteToken[32:] // mine's key, another file's secret
	for _, bad := range []string{"", "x", forged, strings.ToUpper(a.DeleteToken), a.DeleteToken + "0"} {
		if err := s.DeleteByToken(ctx, bad); !errors.Is(err, ErrTokenRefused) {
			t.Errorf("token %q: %v, want ErrTokenRefused", bad, err)
		}
	}
	name := path.Base(a.SecureURL)
	now = start.Add(store.DeleteTokenTTL - time.Second)
	if err := s.DeleteByToken(ctx, a.DeleteToken); err != nil {
		t.Fatalf("DeleteByToken: %v", err)
	}
	if _, _, err := s.Open(name); err == nil {
		t.Error("the file is still served")
	}
	for _, p := range []string{filepath.Join(dir, localFilesDir, name), filepath.Join(dir, metaDir, localKey("site/mine")+".json")} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %v, want gone", p, err)
		}
	}
	if err := s.DeleteByToken(ctx, a.DeleteToken); !errors.Is(err, ErrNotFound) {
		t.Errorf("again: %v, want ErrNotFound", err)
	}
	if again := upload(t, s, onePixel, store.Params{PublicID: "mine"}); again.Existing {
		t.Error("the public id is still taken after the delete")
	}

	now = start.Add(store.DeleteTokenTTL)
	if err := s.DeleteByToken(ctx, b.DeleteToken); !errors.Is(err, ErrTokenRefused) {
		t.Errorf("expired: %v, want ErrTokenRefused", err)
	}
	if _, _, err := s.Open(path.Base(b.SecureURL)); err != nil {
		t.Errorf("an expired token deleted the file: %v", err)
	}
}

// Destroy deletes by public id, whatever the time, and only with the file's own resource type.
func TestDestroy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := New(dir, "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	a := upload(t, s, onePixel, store.Params{PublicID: "u/pic"})
	if err := s.Destroy(ctx, "u/pic", "raw"); !errors.Is(err, ErrNotFound) {
		t.Errorf("raw: %v, want ErrNotFound", err)
	}
	if err := s.Destroy(ctx, "u/other", "image"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown: %v, want ErrNotFound", err)
	}
	if err := s.Destroy(ctx, "u/pic", "image"); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if _, _, err := s.Open(path.Base(a.SecureURL)); err == nil {
		t.Error("still served")
	}
	if left, err := os.ReadDir(filepath.Join(dir, localFilesDir)); err != nil || len(left) != 0 {
		t.Errorf("files/ holds %v, %v", left, err)
	}
	if err := s.Destroy(ctx, "u/pic", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("again: %v, want ErrNotFound", err)
	}
}
