package upload

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"cloudinary-upload-api/internal/admission"
)

// Deadliner sets the read deadline of the connection (or HTTP/2 stream) a request body comes
// from: http.ResponseController satisfies it. Its error says deadlines are unsupported there.
type Deadliner interface {
	SetReadDeadline(t time.Time) error
}

// ErrIdle: nothing of the request body arrived within its idle timeout.
var ErrIdle = errors.New("request body idle")

// BodyTooLargeError: the request body passed the bound its way in set (RequestBody.Limit).
type BodyTooLargeError struct{ Limit int64 }

func (e *BodyTooLargeError) Error() string {
	return fmt.Sprintf("request body is larger than %d bytes", e.Limit)
}

// RequestBody is a request's body as every way in reads it, the one layer between the
// connection and the reader of the request (the form reader, or the pipeline itself): it
// counts the bytes once (for the logs, the pace and the bound), bounds the whole body
// (Limit), moves the read deadline before each read (the idle timeout, or sooner when the
// minimum data rate's next bytes are due: Idle, Pace), watches whether the body was read at all
// and whether it arrived whole, and stops (Interrupt) a read blocked on the client. Its mutex
// guards its state only: it is never held while the connection is read.
//
// The pace's clock runs only while a Read waits on the client, so the time the server spends
// sending upstream (while the client, held back by TCP, cannot send) is never held against it.
//
// Once the body has arrived whole, no read deadline is set any more: the HTTP server reads on
// in the background to notice the client leaving, and a deadline would end that read.
type RequestBody struct {
	src io.ReadCloser
	dl  Deadliner // nil: no deadlines
	now func() time.Time

	// Set by Limit, Idle and Pace before the body is read.
	limit  int64 // bytes the body may have; negative: no bound
	idle   time.Duration
	pace   *admission.Pace // nil: no minimum rate
	waited time.Duration   // the pace's clock: time spent in reads of the client

	n atomic.Int64 // bytes read: the logs read it from another goroutine

	mu          sync.Mutex
	started     bool          // a Read was called: a client that sent Expect: 100-continue has been told to go on
	ended       bool          // the body's end has been read
	interrupted bool          // Interrupt was called: reads fail with ErrStopped
	reading     bool          // a read of src is under way
	readDone    chan struct{} // closed when that read ends (made by Whole)
	noDeadlines bool
}

// NewRequestBody watches src, whose read deadlines dl sets (nil: none), on the clock now.
func NewRequestBody(src io.ReadCloser, dl Deadliner, now func() time.Time) *RequestBody {
	return &RequestBody{src: src, dl: dl, now: now, limit: -1}
}

// Limit bounds the body at n bytes: a read past it fails with *BodyTooLargeError.
func (b *RequestBody) Limit(n int64) { b.limit = n }

// Idle sets the idle timeout: each read must bring something within d (0: no timeout).
func (b *RequestBody) Idle(d time.Duration) { b.idle = d }

// Pace sets the minimum data rate; its clock starts with the next read. A rule that is Off
// asks for nothing.
func (b *RequestBody) Pace(rate admission.Rule) {
	if !rate.Off() {
		b.pace = admission.NewPace(rate)
	}
}

// Bytes is how many bytes of the body have been read.
func (b *RequestBody) Bytes() int64 { return b.n.Load() }

func (b *RequestBody) Read(p []byte) (int, error) {
	if b.limit >= 0 {
		if room := b.limit + 1 - b.n.Load(); int64(len(p)) > room {
			p = p[:max(room, 0)] // one byte past the bound is enough to know
		}
	}
	deadline, slow := b.deadline()
	if err := b.begin(true); err != nil {
		return 0, err
	}
	start := b.now()
	n, err := b.src.Read(p)
	if b.pace != nil {
		b.waited += b.now().Sub(start)
		b.pace.Add(b.waited, n)
	}
	interrupted := b.end(n, err)
	if err != nil && !interrupted && !deadline.IsZero() && errors.Is(err, os.ErrDeadlineExceeded) {
		if slow {
			err = fmt.Errorf("%w: %w", admission.ErrTooSlow, err)
		} else {
			err = fmt.Errorf("%w: no bytes for %s: %w", ErrIdle, b.idle, err)
		}
	}
	if b.limit >= 0 && b.n.Load() > b.limit {
		return n - int(b.n.Load()-b.limit), &BodyTooLargeError{Limit: b.limit}
	}
	return n, err
}

// deadline moves the read deadline for the next read, unless the body has ended or it has no
// timers; slow says the pace, not the idle timeout, set it.
func (b *RequestBody) deadline() (deadline time.Time, slow bool) {
	b.mu.Lock()
	skip := b.ended || b.noDeadlines || b.dl == nil || b.idle <= 0 && b.pace == nil
	b.mu.Unlock()
	if skip {
		return time.Time{}, false
	}
	now := b.now()
	if b.idle > 0 {
		deadline = now.Add(b.idle)
	}
	if b.pace != nil {
		if d := b.pace.Deadline(b.waited); d != admission.Never {
			if due := now.Add(d - b.waited); deadline.IsZero() || due.Before(deadline) {
				deadline, slow = due, true // a trickle is cut even when every read brings a byte
			}
		}
	}
	if deadline.IsZero() {
		return deadline, false
	}
	if b.dl.SetReadDeadline(deadline) != nil {
		b.mu.Lock()
		b.noDeadlines = true // unsupported (tests' recorders): reads just wait
		b.mu.Unlock()
		return time.Time{}, false
	}
	return deadline, slow
}

// begin marks a read of src under way; stoppable reads fail once Interrupt was called (checked
// after the deadline moved, so Interrupt's past deadline is never lost).
func (b *RequestBody) begin(stoppable bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.started = true
	if b.ended {
		return io.EOF
	}
	if stoppable && b.interrupted {
		return ErrStopped
	}
	b.reading = true
	return nil
}

// end counts a read's n bytes and notes the body's end; it says whether Interrupt came.
func (b *RequestBody) end(n int, err error) bool {
	b.n.Add(int64(n))
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reading = false
	if errors.Is(err, io.EOF) {
		b.ended = true
	}
	if b.readDone != nil {
		close(b.readDone)
		b.readDone = nil
	}
	return b.interrupted
}

func (b *RequestBody) Close() error { return b.src.Close() }

// Started says whether anything of the body was asked for. A nil body was not.
func (b *RequestBody) Started() bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.started
}

// Ended says whether the body has been read to its end, without waiting. A nil body has not.
func (b *RequestBody) Ended() bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ended
}

// Whole is Ended after waiting for a read under way: the HTTP server starts its background
// read (which may cancel the request's context) inside the read that ends the body, before
// that read returns.
func (b *RequestBody) Whole() bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	if !b.reading {
		defer b.mu.Unlock()
		return b.ended
	}
	if b.readDone == nil {
		b.readDone = make(chan struct{})
	}
	done := b.readDone
	b.mu.Unlock()
	<-done
	return b.Ended()
}

// Interrupt wakes a read blocked on the client (Waker): the upload is over, and later reads
// fail with ErrStopped. Rest still reads what is left.
func (b *RequestBody) Interrupt() {
	b.mu.Lock()
	b.interrupted = true
	skip := b.ended || b.noDeadlines || b.dl == nil
	b.mu.Unlock()
	if !skip {
		_ = b.dl.SetReadDeadline(b.now())
	}
}

// Resume clears the read deadline, so that the server can read what is left of the body.
func (b *RequestBody) Resume() {
	b.mu.Lock()
	skip := b.ended || b.noDeadlines || b.dl == nil
	b.mu.Unlock()
	if !skip {
		_ = b.dl.SetReadDeadline(time.Time{})
	}
}

// Rest reads what is left of the body past its bound, timers and interruption (to drain it
// after an early answer), still counted and watched.
func (b *RequestBody) Rest() io.Reader { return restReader{b} }

type restReader struct{ b *RequestBody }

func (r restReader) Read(p []byte) (int, error) {
	if err := r.b.begin(false); err != nil {
		return 0, err
	}
	n, err := r.b.src.Read(p)
	r.b.end(n, err)
	return n, err
}
