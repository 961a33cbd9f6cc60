package localstore

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"cloudinary-upload-api/internal/store"
)

// chunkedFile is a PNG's start followed by bytes that differ from offset to offset, n in all.
func chunkedFile(n int) []byte {
	b := make([]byte, n)
	copy(b, onePixel)
	for i := len(onePixel); i < n; i++ {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func newStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := New(dir, "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// tmpEntries are the names in the store's tmp/.
func tmpEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, localTmpDir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// A file sent in chunks, the store restarted between two of them, is stored byte for byte and
// answered as Upload answers; the chunks before the last answer nil, and nothing is left in tmp/.
func TestSendChunkAcrossRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := chunkedFile(300_000)
	p := store.Params{PublicID: "resumed", Filename: "cat.png", BaseURL: "http://localhost:8080"}
	const id = "upload-1"

	first := newStore(t, dir)
	if got, err := first.SendChunk(t.Context(), id, 0, file[:100_000], -1, p); err != nil || got != nil {
		t.Fatalf("first chunk: %s, %v; want nil, nil", got, err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	s := newStore(t, dir) // sweeps stale temps, not an upload's chunks
	if got, err := s.SendChunk(t.Context(), id, 100_000, file[100_000:250_000], -1, p); err != nil || got != nil {
		t.Fatalf("second chunk after a restart: %s, %v; want nil, nil", got, err)
	}
	raw, err := s.SendChunk(t.Context(), id, 250_000, file[250_000:], int64(len(file)), p)
	if err != nil {
		t.Fatalf("last chunk: %v", err)
	}
	var a answer
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	if a.PublicID != "resumed" || a.Format != "png" || a.Bytes != int64(len(file)) || a.Width != 1 || a.Existing {
		t.Errorf("answer %s; want the upload result of a %d-byte PNG", raw, len(file))
	}
	f, rec, err := s.Open(filepath.Base(a.SecureURL))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	stored, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(file)
	if !bytes.Equal(stored, file) || rec.Result.Etag != hex.EncodeToString(sum[:]) {
		t.Errorf("stored %d bytes, etag %s; want the file's %d bytes, etag %x", len(stored), rec.Result.Etag, len(file), sum)
	}
	if names := tmpEntries(t, dir); len(names) != 0 {
		t.Errorf("tmp/ holds %q after the upload; want nothing", names)
	}
}

// A chunk that does not start where the upload's bytes end is a Conflict and changes nothing;
// AbortChunks drops an unfinished upload, and is no error for one the store holds nothing of.
func TestSendChunkConflictAndAbort(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := newStore(t, dir)
	file := chunkedFile(30_000)
	const id = "upload-2"

	if _, err := s.SendChunk(t.Context(), id, 10, file[10:20], -1, store.Params{}); store.KindOf(err) != store.Conflict || !errors.Is(err, ErrChunkOffset) {
		t.Errorf("first chunk at 10: %v; want a Conflict", err)
	}
	if _, err := s.SendChunk(t.Context(), id, 0, file[:10_000], -1, store.Params{}); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 5_000, 10_001} { // again, inside, past the end
		if _, err := s.SendChunk(t.Context(), id, off, file[off:off+100], -1, store.Params{}); store.KindOf(err) != store.Conflict {
			t.Errorf("chunk at %d of 10000 held: %v; want a Conflict", off, err)
		}
	}
	if _, err := s.SendChunk(t.Context(), id, 10_000, file[10_000:20_000], 5, store.Params{}); !errors.Is(err, ErrChunkRange) {
		t.Errorf("total not at the chunk's end: %v; want ErrChunkRange", err)
	}
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.SendChunk(cancelled, id, 10_000, file[10_000:20_000], -1, store.Params{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v; want context.Canceled", err)
	}
	if _, err := s.SendChunk(t.Context(), id, 10_000, file[10_000:20_000], -1, store.Params{}); err != nil {
		t.Errorf("the chunk that follows, after the refusals: %v", err)
	}

	if err := s.AbortChunks(id); err != nil {
		t.Fatal(err)
	}
	if names := tmpEntries(t, dir); len(names) != 0 {
		t.Errorf("tmp/ holds %q after AbortChunks; want nothing", names)
	}
	if _, err := s.SendChunk(t.Context(), id, 20_000, file[20_000:], int64(len(file)), store.Params{}); store.KindOf(err) != store.Conflict {
		t.Errorf("last chunk of an aborted upload: %v; want a Conflict", err)
	}
	if err := s.AbortChunks("never-started"); err != nil {
		t.Errorf("AbortChunks of an upload never started: %v", err)
	}
}
