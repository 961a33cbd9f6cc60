package resumable

import (
	"errors"
	"io"
	"sync"
)

// ErrFeedClosed is what Write returns once the reading side has ended without an error of its own.
var ErrFeedClosed = errors.New("resumable: the upload's stream has ended")

// Feed carries the bytes of one request after another into one stream, which a single reader (the
// pipeline of the upload) reads as if it were one request's body. Like io.Pipe, Write returns once
// the reader has taken every byte (or has failed: then its error); unlike io.Pipe, Settle waits
// until the reader is back waiting for more, or done, so that a request can answer knowing that
// what it carried has gone as far as it can go (a chunk that filled up has been sent).
type Feed struct {
	mu      sync.Mutex
	changed *sync.Cond
	pending []byte // what the current Write offers, not yet taken
	waiting bool   // the reader waits for bytes
	closed  bool   // no more bytes will come: the reader gets io.EOF
	err     error  // the reader's end: Write and Settle return it (ErrFeedClosed when it ended well)
}

// NewFeed returns an empty Feed.
func NewFeed() *Feed {
	f := &Feed{}
	f.changed = sync.NewCond(&f.mu)
	return f
}

// Read is the reader's side: it waits for a Write, or for Close.
func (f *Feed) Read(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.pending) == 0 && !f.closed && f.err == nil {
		f.waiting = true
		f.changed.Broadcast()
		f.changed.Wait()
	}
	f.waiting = false
	switch {
	case f.err != nil:
		return 0, io.ErrClosedPipe
	case len(f.pending) == 0:
		return 0, io.EOF
	}
	n := copy(p, f.pending)
	f.pending = f.pending[n:]
	if len(f.pending) == 0 {
		f.changed.Broadcast()
	}
	return n, nil
}

// Write offers b to the reader and returns once it has taken all of it, or how much it took
// before it ended.
func (f *Feed) Write(b []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, f.err
	}
	if f.closed {
		return 0, io.ErrClosedPipe
	}
	f.pending = b
	f.changed.Broadcast()
	for len(f.pending) > 0 && f.err == nil {
		f.changed.Wait()
	}
	n := len(b) - len(f.pending)
	f.pending = nil
	if n < len(b) {
		return n, f.err
	}
	return n, nil
}

// Settle waits until the reader waits for more bytes, or has ended (its error, or
// ErrFeedClosed); nil when it waits.
func (f *Feed) Settle() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for !f.waiting && f.err == nil {
		f.changed.Wait()
	}
	return f.err
}

// Close tells the reader that no more bytes follow.
func (f *Feed) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	f.changed.Broadcast()
}

// End is the reader's: it has stopped reading, for err (nil: it ended well). A Write waiting,
// and every later one, returns err.
func (f *Feed) End(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return
	}
	if err == nil {
		err = ErrFeedClosed
	}
	f.err = err
	f.changed.Broadcast()
}
