package cloudinary_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"regexp"
	"strconv"
	"testing"
	"time"

	"cloudinary-upload-api/internal/cloudinary"
	"cloudinary-upload-api/internal/cloudinary/cloudinarytest"
	"cloudinary-upload-api/internal/store"
)

// within waits for ch, failing the test after a deadline (never reached when the code is right).
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("no %s within 30s", what)
		var zero T
		return zero
	}
}

var rangeShape = regexp.MustCompile(`^bytes (\d+)-(\d+)/(-1|\d+)$`)

// checkChunks checks that an upload's chunks are contiguous and cover n bytes, every one but the
// last of at least MinChunkBytes and at most max, the last one's total n.
func checkChunks(t *testing.T, u cloudinarytest.Upload, n int64, max int64) {
	t.Helper()
	if len(u.Chunks) == 0 {
		t.Fatalf("sent in one request; want chunks")
	}
	var next int64
	for i, cr := range u.Chunks {
		m := rangeShape.FindStringSubmatch(cr)
		if m == nil {
			t.Fatalf("chunk %d: Content-Range %q", i, cr)
		}
		start, _ := strconv.ParseInt(m[1], 10, 64)
		end, _ := strconv.ParseInt(m[2], 10, 64)
		last := i == len(u.Chunks)-1
		switch {
		case start != next, end-start+1 > max:
			t.Errorf("chunk %d is %q after %d bytes; chunks %q", i, cr, next, u.Chunks)
		case !last && (m[3] != "-1" || end-start+1 < cloudinary.MinChunkBytes):
			t.Errorf("chunk %d of %d is %q", i, len(u.Chunks), cr)
		case last && (m[3] != strconv.FormatInt(n, 10) || end != n-1):
			t.Errorf("last chunk is %q, want it to end the %d bytes", cr, n)
		}
		next = end + 1
	}
}

// A chunk whose file goes on past it is sent as its bytes arrive: the fake sees the first
// chunk's bytes while the rest of that chunk is still to come. The file is stored byte for byte.
func TestChunkedUploadStreamsChunks(t *testing.T) {
	fake := cloudinarytest.New(t)
	c := newClockedClient(t, fake, &testClock{now: time.Now()})
	t.Parallel()
	file := patterned(cloudinary.MaxRequestBytes + 12345) // too large for one request
	pr, pw := io.Pipe()
	go func() {
		if _, err := pw.Write(file[:1<<20]); err != nil {
			return
		}
		select {
		case <-fake.FirstBytes: // the first chunk is on its way before it has arrived whole
		case <-time.After(30 * time.Second):
			pw.CloseWithError(errors.New("the fake saw no byte of the first chunk before the chunk was whole"))
			return
		}
		_, _ = pw.Write(file[1<<20:])
		_ = pw.Close()
	}()
	// A bound as a form gives it: the request's length, a little more than the file.
	if _, err := c.Upload(t.Context(), pr, store.Params{Size: int64(len(file)) + 300}); err != nil {
		t.Fatal(err)
	}
	ups := fake.Uploads()
	sum := sha256.Sum256(file)
	if len(ups) != 1 || ups[0].SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("fake stored %d uploads; want one of the file's bytes", len(ups))
	}
	checkChunks(t, ups[0], int64(len(file)), cloudinary.MinChunkBytes)
}

// A file that ends sooner than its bound said, within a chunk sent as it arrived, or where that
// chunk ends: the attempt is cut off and the chunk goes again as the last. One whose attempts
// fail in a way that may pass is retried from the buffer.
func TestChunkedUploadStreamedChunkEndsTheFile(t *testing.T) {
	fake := cloudinarytest.New(t)
	c := newClockedClient(t, fake, &testClock{now: time.Now()})
	t.Parallel()
	for _, tc := range []struct {
		name      string
		n         int
		behaviour cloudinarytest.Behaviour
	}{
		{"ends_within_the_chunk", 3*cloudinary.MinChunkBytes/2 + 7, cloudinarytest.Behaviour{}},
		{"ends_where_the_chunk_ends", 2 * cloudinary.MinChunkBytes, cloudinarytest.Behaviour{}},
		{"first_attempt_fails", 2*cloudinary.MinChunkBytes + 3, cloudinarytest.Behaviour{Status: 500, Body: `{"error":{"message":"General Error"}}`, FailTimes: 1}},
		{"first_attempt_reset", 2*cloudinary.MinChunkBytes + 3, cloudinarytest.Behaviour{Reset: true, FailTimes: 1}},
	} {
		fake.SetBehaviour(tc.behaviour)
		before, requests := len(fake.Uploads()), fake.RequestCount()
		file := patterned(tc.n)
		if _, err := c.Upload(t.Context(), bytes.NewReader(file), store.Params{Size: cloudinary.MaxRequestBytes + 1}); err != nil {
			t.Fatalf("%s: %v (%d requests)", tc.name, err, fake.RequestCount())
		}
		ups := fake.Uploads()
		sum := sha256.Sum256(file)
		if len(ups) != before+1 || ups[before].SHA256 != hex.EncodeToString(sum[:]) {
			t.Fatalf("%s: fake stored %d uploads; want one more, of the file's bytes", tc.name, len(ups)-before)
		}
		checkChunks(t, ups[before], int64(len(file)), cloudinary.MinChunkBytes)
		// An attempt cut off before its first piece never reached the fake; a failed one did.
		if got, chunks := fake.RequestCount()-requests, len(ups[before].Chunks); got != chunks+1 && (tc.behaviour.FailTimes > 0 || got != chunks) {
			t.Errorf("%s: %d requests for %d chunks; want one more at most: the attempt cut off or failed", tc.name, got, chunks)
		}
	}
}

// A file that breaks off while a chunk streams fails the upload with the file's error; the
// attempt under way is cut off and nothing is stored.
func TestChunkedUploadStreamBrokenFile(t *testing.T) {
	fake := cloudinarytest.New(t)
	c := newClockedClient(t, fake, &testClock{now: time.Now()})
	t.Parallel()
	broken := errors.New("client went away")
	// The file breaks off once the fake has seen the chunk's first bytes: before that, the
	// attempt may not have reached the fake at all, and nothing there would be aborted.
	file := io.MultiReader(bytes.NewReader(patterned(3<<20)), &failingReader{err: broken, after: fake.FirstBytes})
	_, err := c.Upload(t.Context(), file, store.Params{Size: cloudinary.MaxRequestBytes + 1})
	if !errors.Is(err, broken) {
		t.Errorf("Upload: %v; want the file's error", err)
	}
	within(t, fake.Aborted, "aborted request at the fake") // the attempt under way is cut off
	if n := len(fake.Uploads()); n != 0 {
		t.Errorf("fake stored %d uploads, want none", n)
	}
}

// failingReader fails every Read with err, once after has received (nil: at once), or after 30s.
type failingReader struct {
	err   error
	after <-chan struct{}
}

func (r *failingReader) Read([]byte) (int, error) {
	if r.after != nil {
		select {
		case <-r.after:
		case <-time.After(30 * time.Second):
		}
		r.after = nil
	}
	return 0, r.err
}
