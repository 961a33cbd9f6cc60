package upload

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"

	"cloudinary-upload-api/internal/store"
)

// blockedSource blocks each Read until it is woken, as a connection waits on a silent client;
// Interrupt wakes it, as a past read deadline does.
type blockedSource struct {
	first   []byte
	started chan struct{}
	wake    chan struct{}
	woken   bool
	resumed bool
}

func (s *blockedSource) Read(p []byte) (int, error) {
	if len(s.first) > 0 {
		n := copy(p, s.first)
		s.first = s.first[n:]
		return n, nil
	}
	close(s.started)
	<-s.wake
	return 0, errors.New("read deadline passed")
}

func (s *blockedSource) Interrupt() {
	s.woken = true
	close(s.wake)
}

func (s *blockedSource) Resume() { s.resumed = true }

// failingStore reads the file's first bytes in a goroutine of its own (as a transport writes a
// request body), then fails while that goroutine still waits on the client.
type failingStore struct{ blocked chan struct{} }

func (s *failingStore) Upload(_ context.Context, file io.Reader, _ store.Params) (json.RawMessage, error) {
	go func() { _, _ = io.Copy(io.Discard, file) }()
	<-s.blocked // the copy waits on the client
	return nil, errors.New("store gone")
}

// A store that fails while its own goroutine waits on the client: Upload wakes that read through
// the Waker, waits for it to end, and returns the store's error, not the interrupted read's.
func TestUploadStopWakesABlockedRead(t *testing.T) {
	t.Parallel()
	// A JPEG is guarded within its head; what follows its end passes as it is.
	src := &blockedSource{first: append(encodedJPEG(t), make([]byte, 2*SniffLen)...), started: make(chan struct{}), wake: make(chan struct{})}
	s := &failingStore{blocked: src.started}
	done := make(chan error, 1)
	go func() {
		_, err := New(testRules(), s).Upload(t.Context(), File{Body: src, Size: -1, Waker: src})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || err.Error() != "store gone" {
			t.Fatalf("%v, want the store's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Upload did not return: the blocked read was not woken")
	}
	if !src.woken || !src.resumed {
		t.Fatalf("woken %v, resumed %v; want both", src.woken, src.resumed)
	}
}
