package cloudinary_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"cloudinary-upload-api/internal/cloudinary"
	"cloudinary-upload-api/internal/cloudinary/cloudinarytest"
	"cloudinary-upload-api/internal/store"
)

// testClock is a clock that a test moves on, shared by a Client (signing) and the fake (judging
// a signature stale).
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newClockedClient is a Client for fake that signs by clock and retries at once. Call it before
// t.Parallel: the SDK's config parsing, which New uses, is unsafe for concurrent use.
func newClockedClient(t *testing.T, fake *cloudinarytest.Server, clock *testClock) *cloudinary.Client {
	t.Helper()
	creds, err := cloudinary.ParseURL(fake.CloudinaryURL())
	if err != nil {
		t.Fatal(err)
	}
	c, err := cloudinary.New(creds, cloudinary.Options{ChunkSize: cloudinary.MinChunkBytes, StallTimeout: time.Minute,
		Backoff: func(int) time.Duration { return 0 }, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// patterned is n bytes that differ from offset to offset, so a misplaced chunk changes the hash.
func patterned(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/4093)
	}
	return b
}

// A resumable upload sends its chunks one call at a time, hours apart: each chunk is its own
// signed request (the fake refuses a signature over an hour old), with the upload's id and its
// Content-Range; the chunks before the last answer nil, the last the upload result, and the
// asset is the file's bytes.
func TestSendChunkResumedHoursLater(t *testing.T) {
	fake := cloudinarytest.New(t)
	clock := &testClock{now: time.Now()}
	fake.SetClock(clock.Now)
	c := newClockedClient(t, fake, clock)
	t.Parallel()

	file := patterned(2*cloudinary.MinChunkBytes + 1000)
	id := cloudinary.NewUploadID()
	p := store.Params{PublicID: "resumed", Tags: []string{"a", "b"}}
	cuts := []int{0, cloudinary.MinChunkBytes, 2 * cloudinary.MinChunkBytes, len(file)}
	var result json.RawMessage
	for i := range len(cuts) - 1 {
		total := int64(-1)
		if i == len(cuts)-2 {
			total = int64(len(file))
		}
		got, err := c.SendChunk(t.Context(), id, int64(cuts[i]), file[cuts[i]:cuts[i+1]], total, p)
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		if total == -1 && got != nil {
			t.Errorf("chunk %d answered %s; want nil before the last", i, got)
		}
		result = got
		clock.advance(2 * time.Hour) // an hour's signature would be stale by the next chunk
	}

	var answer struct {
		PublicID string `json:"public_id"`
		Bytes    int64  `json:"bytes"`
	}
	if err := json.Unmarshal(result, &answer); err != nil || answer.PublicID != "resumed" || answer.Bytes != int64(len(file)) {
		t.Fatalf("last chunk answered %s (%v); want the upload result of public id resumed, %d bytes", result, err, len(file))
	}
	ups := fake.Uploads()
	if len(ups) != 1 {
		t.Fatalf("fake accepted %d uploads, want 1", len(ups))
	}
	sum := sha256.Sum256(file)
	want := []string{
		fmt.Sprintf("bytes 0-%d/-1", cuts[1]-1),
		fmt.Sprintf("bytes %d-%d/-1", cuts[1], cuts[2]-1),
		fmt.Sprintf("bytes %d-%d/%d", cuts[2], len(file)-1, len(file)),
	}
	if u := ups[0]; u.SHA256 != hex.EncodeToString(sum[:]) || !slices.Equal(u.Chunks, want) || u.Header.Get("X-Unique-Upload-Id") != id ||
		!slices.Equal(u.Tags(), p.Tags) {
		t.Errorf("fake got %d bytes in chunks %q, upload id %q, tags %q; want the file's bytes in %q under %q, tags %q",
			u.Bytes, u.Chunks, u.Header.Get("X-Unique-Upload-Id"), u.Tags(), want, id, p.Tags)
	}
	if ts := ups[0].Params.Get("timestamp"); ts != fmt.Sprint(clock.Now().Add(-2*time.Hour).Unix()) {
		t.Errorf("last chunk signed at %s; want when it was sent, %d", ts, clock.Now().Add(-2*time.Hour).Unix())
	}
}

// A chunk whose attempt fails in a way that may pass is retried by the chunked path's own code;
// one that Cloudinary refuses is not, and the refusal is of kind Refused.
func TestSendChunkRetriesAndRefusals(t *testing.T) {
	fake := cloudinarytest.New(t)
	c := newClockedClient(t, fake, &testClock{now: time.Now()})
	t.Parallel()
	id := cloudinary.NewUploadID()
	chunk := patterned(cloudinary.MinChunkBytes)

	fake.SetBehaviour(cloudinarytest.Behaviour{Status: 500, Body: `{"error":{"message":"General Error"}}`, FailTimes: 2})
	if got, err := c.SendChunk(t.Context(), id, 0, chunk, -1, store.Params{}); err != nil || got != nil {
		t.Fatalf("first chunk after two 500s: %s, %v; want nil, nil", got, err)
	}
	if n := fake.RequestCount(); n != 3 {
		t.Errorf("fake saw %d requests, want 3 (two failed attempts and the one that passed)", n)
	}
	fake.SetBehaviour(cloudinarytest.Behaviour{})

	// Not where the upload ends: Cloudinary's 400, not retried.
	_, err := c.SendChunk(t.Context(), id, 1, chunk[:10], 11, store.Params{})
	var rejected *cloudinary.RejectedError
	if !errors.As(err, &rejected) || store.KindOf(err) != store.Refused || fake.RequestCount() != 4 {
		t.Errorf("chunk at a wrong offset: %v (kind %v) after %d requests; want one refusal of kind refused", err, store.KindOf(err), fake.RequestCount())
	}
	// The upload goes on from where it is.
	got, err := c.SendChunk(t.Context(), id, int64(len(chunk)), chunk[:10], int64(len(chunk)+10), store.Params{})
	if err != nil || got == nil {
		t.Fatalf("last chunk: %s, %v", got, err)
	}

	for _, tc := range []struct {
		offset, total int64
		chunk         []byte
	}{{0, -1, nil}, {0, 5, chunk[:10]}, {-1, -1, chunk}} {
		if _, err := c.SendChunk(context.Background(), id, tc.offset, tc.chunk, tc.total, store.Params{}); !errors.Is(err, cloudinary.ErrChunkRange) {
			t.Errorf("%d bytes at %d of %d: %v; want ErrChunkRange", len(tc.chunk), tc.offset, tc.total, err)
		}
	}
	if n := fake.RequestCount(); n != 5 {
		t.Errorf("fake saw %d requests, want 5: chunks that cannot be sent are not", n)
	}
}

func TestNewUploadID(t *testing.T) {
	t.Parallel()
	shape := regexp.MustCompile(`^[0-9a-f]{32}$`)
	seen := map[string]bool{}
	for range 100 {
		id := cloudinary.NewUploadID()
		if !shape.MatchString(id) || seen[id] {
			t.Fatalf("%q: want 32 hex digits, new each time", id)
		}
		seen[id] = true
	}
}

// A file that fits one request (its size or a bound known) is sent in one and holds nothing; any
// other goes in chunks and holds a chunk buffer, which the server reserves.
func TestHoldsAndChunkDecision(t *testing.T) {
	fake := cloudinarytest.New(t)
	c := newClockedClient(t, fake, &testClock{now: time.Now()})
	t.Parallel()
	for _, tc := range []struct {
		size int64
		want int64
	}{
		{0, 0}, {1000, 0}, {cloudinary.MaxRequestBytes, 0},
		{cloudinary.MaxRequestBytes + 1, cloudinary.ChunkBufferBytes(cloudinary.MinChunkBytes)},
		{-1, cloudinary.ChunkBufferBytes(cloudinary.MinChunkBytes)},
	} {
		if got := store.Holds(c, tc.size); got != tc.want {
			t.Errorf("Holds(%d) = %d, want %d", tc.size, got, tc.want)
		}
	}
	file := patterned(1000)
	for _, size := range []int64{int64(len(file)), -1} {
		if _, err := c.Upload(t.Context(), bytes.NewReader(file), store.Params{Size: size}); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
	}
	ups := fake.Uploads()
	if len(ups) != 2 || ups[0].Chunks != nil || len(ups[1].Chunks) != 1 {
		t.Errorf("uploads %+v; want one in one request, then one in one chunk", ups)
	}
}
