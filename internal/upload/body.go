package upload

import (
	"errors"
	"io"
	"sync"
	"time"
)

// Pieces is a body that hands out pieces of its own buffer, each valid until the next call, so
// that what arrived from the client goes to the store without a copy in between (the fast
// path: formstream.Part, and the image guard's walker when its source is one). It calls
// beforeWait before it waits on its source, so that a writer holding small writes can let go
// of them first.
type Pieces interface {
	NextPiece(beforeWait func() error) ([]byte, error)
}

// Buffered is a body that says how many bytes it can give without waiting on its source.
type Buffered interface {
	Buffered() int
}

// Flusher is a writer that may hold back small writes until Flush (internal/cloudinary's
// request writer does): the body flushes it before it waits on the client.
type Flusher interface {
	Flush() error
}

// Waker wakes a read of File.Body that is blocked on its source (the HTTP layer sets a past
// read deadline), so that the upload can stop; Resume lets later reads wait again.
type Waker interface {
	Interrupt()
	Resume()
}

// source is File.Body as the pipeline reads it: it counts the bytes taken from it (so that a
// caller can learn how far the client's bytes and the stored bytes stand apart) and marks its
// failures as the source's (ReadError). piecesSource is the same for a body with pieces, so
// that the guard, which hands back its source when it has nothing to change, keeps them.
type source struct {
	r io.Reader
	n int64
}

func (s *source) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.n += int64(n)
	if err != nil && !errors.Is(err, io.EOF) {
		err = &ReadError{Err: err}
	}
	return n, err
}

type piecesSource struct{ *source }

func (s piecesSource) NextPiece(beforeWait func() error) ([]byte, error) {
	p, err := s.r.(Pieces).NextPiece(beforeWait)
	s.n += int64(len(p))
	if err != nil && !errors.Is(err, io.EOF) {
		err = &ReadError{Err: err}
	}
	return p, err
}

func newSource(r io.Reader) (*source, io.Reader) {
	s := &source{r: r}
	if _, ok := r.(Pieces); ok {
		return s, piecesSource{s}
	}
	return s, s
}

// body is the file as the store reads it: capped, timed, counted against File.Spend, and
// stoppable. It is the only reader a store sees, and a store may read it from a goroutine of
// its own (a transport writing the request); one read or write is under way at a time.
//
// The fast path is its contract: when the file (after the guard) is a Pieces, WriteTo writes
// each piece straight to the store's writer, no copy in between (HandsOutPieces says so).
type body struct {
	head     []byte    // the bytes read to sniff the type (or the guard's prefix), given out before file's
	file     io.Reader // the rest
	pieces   Pieces    // file, when it hands out pieces
	more     func() bool
	limit    int64 // bytes the file may have, counting offset
	offset   int64 // bytes of the file stored before this body's (a resumed upload)
	spend    func(n int) error
	watchdog *time.Timer // nil when the store times its own requests
	timeout  time.Duration
	copies   *Buffers // for WriteTo when the file hands out no pieces
	bound    int64    // the most the file may have (-1: unknown): the copy buffer's size class

	n   int64 // bytes given out
	err error // the first failure other than EOF

	mu       sync.Mutex // guards busy, stopped, waiter; never held while reading or writing
	busy     bool
	stopped  bool
	stopping bool          // stop has begun: a failure of the read it interrupts is not the client's
	waiter   chan struct{} // stop waits on it for the read or write under way
}

// enter begins one read or write of the file; it fails once the body is stopped.
func (b *body) enter() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return ErrStopped
	}
	b.busy = true
	return b.err
}

func (b *body) leave() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.busy = false
	if b.waiter != nil {
		close(b.waiter)
		b.waiter = nil
	}
}

func (b *body) Read(p []byte) (int, error) {
	if err := b.enter(); err != nil {
		b.leave()
		return 0, err
	}
	defer b.leave()
	if room := b.limit + 1 - b.offset - b.n; int64(len(p)) > room {
		p = p[:room] // one byte past the limit is enough to know
	}
	b.clientReads(true)
	n, err := b.read(p)
	// Fill p from what has already arrived, so the store moves large pieces, but never wait on
	// the client for more once something is in hand: streaming must not stall.
	for err == nil && n > 0 && n < len(p) && b.more != nil && b.more() {
		var m int
		m, err = b.read(p[n:])
		if m == 0 && err == nil {
			break
		}
		n += m
	}
	b.clientReads(false)
	if over := b.count(n, err); over > 0 {
		return n - over, b.err
	}
	return n, err
}

func (b *body) read(p []byte) (int, error) {
	if len(b.head) > 0 {
		n := copy(p, b.head)
		b.head = b.head[n:]
		return n, nil
	}
	return b.file.Read(p)
}

// clientReads stops the watchdog while the client is read: a slow client is not a slow store.
func (b *body) clientReads(reading bool) {
	switch {
	case b.watchdog == nil:
	case reading:
		b.watchdog.Stop()
	default:
		b.watchdog.Reset(b.timeout)
	}
}

// count adds n bytes read with err, and returns how many of them are past the limit, or, when
// File.Spend refuses them, all n: the upload stops without them.
func (b *body) count(n int, err error) int {
	b.n += int64(n)
	if b.offset+b.n > b.limit {
		b.err = &TooLargeError{Limit: b.limit}
		return int(b.offset + b.n - b.limit)
	}
	if b.spend != nil && n > 0 {
		if serr := b.spend(n); serr != nil {
			b.err = serr
			return n
		}
	}
	if err != nil && !errors.Is(err, io.EOF) && !b.isStopping() {
		b.err = err
	}
	return 0
}

func (b *body) isStopping() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stopping
}

// WriteTo moves the file in large pieces: straight from the source's buffer when the file
// hands out pieces, else through a pooled buffer rather than io.Copy's 32 KiB.
func (b *body) WriteTo(w io.Writer) (int64, error) {
	if b.pieces == nil {
		bp := b.copies.Get(b.bound)
		defer b.copies.Put(bp)
		// What w holds back must not wait on the client: once nothing more has arrived, the
		// next read may wait, so w lets go of what it gathered (as writePiece's beforeWait does).
		flush := func() error {
			if f, ok := w.(Flusher); ok && (b.more == nil || !b.more()) {
				return f.Flush()
			}
			return nil
		}
		return copyPieces(w, b.Read, *bp, flush)
	}
	var total int64
	for {
		n, err := b.writePiece(w)
		total += int64(n)
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// writePiece writes the next piece of the file to w. The piece is the source's buffer, which
// must not be reused before the write is over: stop waits for it.
func (b *body) writePiece(w io.Writer) (int, error) {
	if err := b.enter(); err != nil {
		b.leave()
		return 0, err
	}
	defer b.leave()
	var piece []byte
	var err error
	if len(b.head) > 0 {
		piece, b.head = b.head, nil
	} else {
		piece, err = b.pieces.NextPiece(func() error {
			// What w holds back must not wait on the client; and the watchdog runs while
			// the store takes it, stopping only once the client is being waited on.
			if f, ok := w.(Flusher); ok {
				if err := f.Flush(); err != nil {
					return err
				}
			}
			b.clientReads(true)
			return nil
		})
		b.clientReads(false)
	}
	if b.count(len(piece), err) > 0 {
		return 0, b.err
	}
	if len(piece) > 0 {
		if n, werr := w.Write(piece); werr != nil {
			return n, werr
		}
	}
	return len(piece), err
}

// stop ends the store's use of the body and returns the body's failure, if any. The store may
// still read from a goroutine of its own, waiting on a slow client after the upload failed:
// waker wakes it (nil: stop waits for it). A read or write that ends after stop fails.
func (b *body) stop(waker Waker) error {
	b.mu.Lock()
	b.stopping = true
	var wait chan struct{}
	if b.busy {
		wait = make(chan struct{})
		b.waiter = wait
	}
	b.stopped = true
	b.mu.Unlock()
	if wait != nil {
		if waker != nil {
			waker.Interrupt()
		}
		<-wait
		if waker != nil {
			waker.Resume()
		}
	}
	if b.watchdog != nil {
		b.watchdog.Stop()
	}
	return b.err
}

// copyPieces writes what read yields into w, one piece of buf at a time, calling afterWrite
// after each write. Unlike io.CopyBuffer it never hands off to a WriterTo or ReaderFrom, so the
// WriteTo methods that call it choose the piece size.
func copyPieces(w io.Writer, read func([]byte) (int, error), buf []byte, afterWrite func() error) (int64, error) {
	var total int64
	for {
		n, err := read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
			if err := afterWrite(); err != nil {
				return total, err
			}
		}
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// HandsOutPieces says whether file, a body the pipeline gave a store, goes to the store's
// writer as pieces of its source's own buffer (the fast path) when the store copies it.
func HandsOutPieces(file io.Reader) bool {
	b, ok := file.(*body)
	return ok && b.pieces != nil
}
