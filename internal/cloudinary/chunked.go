package cloudinary

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"cloudinary-upload-api/internal/store"
)

// sleep waits for d, or less when ctx ends first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// uploadChunked sends file with Cloudinary's chunked upload protocol: one X-Unique-Upload-Id,
// each chunk a separately signed request with Content-Range "bytes START-END/TOTAL", TOTAL -1
// until the last chunk, whose answer is the upload result. Each chunk is kept whole, in a buffer
// that grows a block at a time as the chunk's bytes arrive (each block reserved through
// p.Memory first), so that a failed attempt is retried from the buffer. The next chunk reuses
// the blocks (a fresh 1 MiB block per piece of every chunk cost twice the CPU of the whole
// upload in the benchmark's S4); they, and their memory, are given back when the upload ends.
//
// A chunk that is surely not the last (p.Size bounds the file well past its end) goes upstream
// as its bytes arrive (streamChunk; streamLength picks the lengths): receiving and sending
// overlap, and the bytes are sent while they are still in the processor's cache. The last chunk
// is read whole first, since its Content-Range (its end, and the total) is known only then.
func (c *Client) uploadChunked(ctx context.Context, file io.Reader, p store.Params) (json.RawMessage, error) {
	buf := &chunkBuffer{pool: c.buffers, mem: p.Memory}
	defer buf.reset()
	uploadID := NewUploadID()

	size := int(c.opts.ChunkSize)
	var start int64
	for {
		n := size // the length of this chunk, unless it is the last
		if l := streamLength(start, size, p.Size); l > 0 {
			n = l
			result, last, err := c.streamChunk(ctx, file, buf, uploadID, start, n, p)
			if err != nil || last {
				return result, err
			}
		} else {
			err := buf.fill(ctx, file, size+1, nil) // one byte more, to learn whether more follows
			last := err == io.EOF                   // unwrapped, as io.Reader returns it; a body cut short is no last chunk
			if err != nil && !last {
				return nil, err
			}
			if last && buf.n == 0 {
				return nil, ErrEmptyFile // only when the file ended exactly where a chunk did, which read-ahead rules out
			}
			buf.seal()
			n = min(buf.n, size)
			total := int64(-1)
			if last {
				total = start + int64(n)
			}
			result, err := c.sendChunk(ctx, buf, n, chunkHeaders{uploadID, contentRange(start, n, total)}, p)
			if err != nil || last {
				return result, err
			}
		}
		ahead := buf.at(n) // the read-ahead byte starts the next chunk
		buf.rewind()
		if err := buf.put(ctx, ahead); err != nil {
			return nil, err
		}
		start += int64(n)
	}
}

// streamLength is the length of the chunk at start to stream (0: none), for chunks of size and
// a file of at most bound bytes (−1: unknown). A streamed chunk must not be the last (its
// Content-Range ends in /-1), so the file is taken to reach streamSlack short of bound; and it
// must hold MinChunkBytes, as every chunk but the last. The lengths are planned so that the
// last chunk, which is read whole before it is sent, is small: the chunk before it takes what
// is left but the slack, and the chunk before that leaves it at least MinChunkBytes.
func streamLength(start int64, size int, bound int64) int {
	if bound < 0 {
		return 0
	}
	left := bound - streamSlack - start // what surely follows start, if the bound is nearly the file's size
	switch {
	case left < MinChunkBytes:
		return 0 // the rest is the last chunk
	case left <= int64(size):
		return int(left)
	case left-int64(size) < MinChunkBytes && left-MinChunkBytes >= MinChunkBytes:
		return int(left - MinChunkBytes) // so that the next chunk can be streamed
	}
	return size
}

// streamSlack is how far p.Size must reach past a chunk's end for the chunk to be streamed: a
// form's file is followed by at least its closing delimiter, and seldom by much more. A file
// that ends sooner after all costs that chunk sent twice (see streamChunk), never a wrong upload.
const streamSlack = 64 << 10

// streamPieceBytes is the least a streamed chunk's attempt sends at once (less only at the end
// of a block or of the chunk): each piece is a write and a wake-up.
const streamPieceBytes = 256 << 10

// errChunkWasLast cancels a streamed attempt whose chunk turned out to be the file's last.
var errChunkWasLast = errors.New("the file ended within the chunk")

// errAttemptOver stops filling a streamed chunk whose attempts have failed.
var errAttemptOver = errors.New("the chunk's attempts are over")

// streamChunk sends the chunk at start, of size bytes, as its bytes arrive: its attempts (the
// chunked path's own sendChunk, with its retries) read the buffer while this goroutine fills it.
// Each attempt's last byte waits for the byte after the chunk, so that no attempt can complete
// before the chunk is known not to be the last. When the file ends within the chunk after all,
// the attempt under way is cancelled (Cloudinary drops a chunk whose body breaks off) and what
// arrived goes as the last chunk. last says whether it was; the buffer holds the chunk and the
// byte after it when not.
func (c *Client) streamChunk(ctx context.Context, file io.Reader, buf *chunkBuffer, uploadID string, start int64, size int, p store.Params) (json.RawMessage, bool, error) {
	attemptCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var result json.RawMessage
	var sendErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		result, sendErr = c.sendChunk(attemptCtx, buf, size, chunkHeaders{uploadID, contentRange(start, size, -1)}, p)
	}()
	err := buf.fill(ctx, file, size+1, done)
	switch {
	case err == nil: // the chunk, and more after it: the attempts can finish
		<-done
		return nil, false, sendErr
	case errors.Is(err, errAttemptOver): // the attempts failed: none can succeed before the chunk is whole
		if sendErr == nil {
			sendErr = err
		}
		return nil, false, sendErr
	case err != io.EOF: // the file broke off
		cancel(err)
		<-done
		return nil, false, err
	}
	cancel(errChunkWasLast)
	<-done
	if buf.n == 0 {
		return nil, true, ErrEmptyFile // only when the file ended exactly where a chunk did, which read-ahead rules out
	}
	buf.seal()
	result, err = c.sendChunk(ctx, buf, buf.n, chunkHeaders{uploadID, contentRange(start, buf.n, start+int64(buf.n))}, p)
	return result, true, err
}

// NewUploadID returns a fresh id for one chunked upload (X-Unique-Upload-Id): 32 hex digits.
func NewUploadID() string {
	var id [16]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(id[:])
}

// contentRange is a chunk's Content-Range: "bytes START-END/TOTAL", TOTAL -1 until the last chunk.
func contentRange(start int64, n int, total int64) string {
	return fmt.Sprintf("bytes %d-%d/%d", start, start+int64(n)-1, total)
}

// ErrChunkRange is a chunk that SendChunk cannot send: empty, or whose total is not where it ends.
var ErrChunkRange = errors.New("chunk: empty, or total is not its end")

// SendChunk sends bytes [offset, offset+len(chunk)) of the chunked upload uploadID, signed
// afresh (now), retried as the chunked path retries (the same code). total is the file's size
// when this chunk is the last (offset+len(chunk) == total), else -1. The last chunk's answer is
// the upload result; the others answer nil. p is the same for every chunk of one upload. Every
// chunk but the last must hold at least MinChunkBytes (Cloudinary refuses it otherwise), and
// none more than MaxRequestBytes.
//
// Cloudinary keeps the chunks of an upload that is never finished for a while, then drops them:
// there is nothing to abort.
func (c *Client) SendChunk(ctx context.Context, uploadID string, offset int64, chunk []byte, total int64, p store.Params) (json.RawMessage, error) {
	if len(chunk) == 0 || offset < 0 || total != -1 && total != offset+int64(len(chunk)) {
		return nil, fmt.Errorf("%w: %d bytes at %d of %d", ErrChunkRange, len(chunk), offset, total)
	}
	result, err := c.sendChunk(ctx, chunkBufferOf(chunk), len(chunk), chunkHeaders{uploadID, contentRange(offset, len(chunk), total)}, p)
	if err != nil || total == -1 {
		return nil, err
	}
	return result, nil
}

// ChunkBlockBytes is the step in which a chunk buffer grows, and its memory is reserved.
const ChunkBlockBytes = chunkPieceBytes

// ChunkBufferBytes is the most one upload's chunk buffer holds for chunks of chunkSize: the
// chunk and the byte read ahead, in whole blocks.
func ChunkBufferBytes(chunkSize int64) int64 {
	return (chunkSize + 1 + ChunkBlockBytes - 1) / ChunkBlockBytes * ChunkBlockBytes
}

// chunkBuffer holds one chunk in blocks of ChunkBlockBytes, taken (and reserved) as it fills.
// One goroutine fills it (fill, put, rewind, seal); the attempts at sending the chunk read it
// meanwhile (piece), waiting for bytes that have not arrived. Bytes below n never change until
// rewind, which comes only once no attempt reads.
type chunkBuffer struct {
	pool *bufferPool
	mem  store.Memory // nil: nothing to reserve

	mu     sync.Mutex
	blocks [][]byte      // appended under mu; read by the filler without it
	n      int           // bytes held; written under mu, read by the filler without it
	sealed bool          // the chunk's extent is settled: every byte held may be sent
	wake   chan struct{} // closed when n reaches wakeAt, or on seal; nil: no one waits
	wakeAt int
}

// chunkBufferOf is a sealed, read-only view of chunk as a chunk buffer, without a copy: its
// blocks are chunk's pieces (the last may be short). It has no pool nor memory: never reset it.
func chunkBufferOf(chunk []byte) *chunkBuffer {
	b := &chunkBuffer{n: len(chunk), sealed: true}
	for off := 0; off < len(chunk); off += ChunkBlockBytes {
		b.blocks = append(b.blocks, chunk[off:min(off+ChunkBlockBytes, len(chunk))])
	}
	return b
}

// grow adds a block, once its memory is reserved.
func (b *chunkBuffer) grow(ctx context.Context) error {
	if b.mem != nil {
		if err := b.mem.Grow(ctx, ChunkBlockBytes); err != nil {
			return err
		}
	}
	blk := b.pool.get()
	b.mu.Lock()
	b.blocks = append(b.blocks, blk)
	b.mu.Unlock()
	return nil
}

// added counts m more bytes held, and wakes a reader waiting for them.
func (b *chunkBuffer) added(m int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n += m
	if b.wake != nil && b.n >= b.wakeAt {
		close(b.wake)
		b.wake = nil
	}
}

// fill reads file until the buffer holds want bytes; it returns io.EOF when the file ends
// first, and errAttemptOver when stop is closed first.
func (b *chunkBuffer) fill(ctx context.Context, file io.Reader, want int, stop <-chan struct{}) error {
	for b.n < want {
		select {
		case <-stop: // nil: never
			return errAttemptOver
		default:
		}
		blk, off := b.n/ChunkBlockBytes, b.n%ChunkBlockBytes
		if blk == len(b.blocks) {
			if err := b.grow(ctx); err != nil {
				return err
			}
		}
		m, err := file.Read(b.blocks[blk][off:min(ChunkBlockBytes, off+want-b.n)])
		if m > 0 {
			b.added(m)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// put appends one byte.
func (b *chunkBuffer) put(ctx context.Context, c byte) error {
	if b.n/ChunkBlockBytes == len(b.blocks) {
		if err := b.grow(ctx); err != nil {
			return err
		}
	}
	b.blocks[b.n/ChunkBlockBytes][b.n%ChunkBlockBytes] = c
	b.added(1)
	return nil
}

// seal settles the chunk's extent: every byte held may be sent, and no more will come.
func (b *chunkBuffer) seal() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sealed = true
	if b.wake != nil {
		close(b.wake)
		b.wake = nil
	}
}

// at is the byte at offset i, which the buffer holds.
func (b *chunkBuffer) at(i int) byte { return b.blocks[i/ChunkBlockBytes][i%ChunkBlockBytes] }

// piece is up to max bytes from offset off of a chunk of size bytes, within one block. Until the
// buffer is sealed, a chunk's last byte is held back until the byte after it has arrived, and a
// piece is at least streamPieceBytes (or what is left of the chunk): when that much has not
// arrived, piece returns nil and a channel closed once it may have.
func (b *chunkBuffer) piece(off, size, max int) ([]byte, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ready := min(b.n, size) // the bytes of the chunk that may go
	if !b.sealed && b.n <= size {
		ready = min(b.n, size-1)
	}
	want := min(max, streamPieceBytes, size-off)
	if ready-off < want && !(b.sealed && ready > off) {
		if b.wake == nil {
			b.wake = make(chan struct{})
		}
		b.wakeAt = off + want
		if b.wakeAt == size {
			b.wakeAt = size + 1 // the chunk's last byte waits for the next
		}
		return nil, b.wake
	}
	blk, o := off/ChunkBlockBytes, off%ChunkBlockBytes
	return b.blocks[blk][o : o+min(ChunkBlockBytes-o, ready-off, max)], nil
}

// rewind empties the buffer for the next chunk, keeping its blocks and their memory.
func (b *chunkBuffer) rewind() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n, b.sealed = 0, false
}

// reset gives every block back, and its memory.
func (b *chunkBuffer) reset() {
	for _, blk := range b.blocks {
		b.pool.put(blk)
	}
	b.blocks, b.n = nil, 0
	if b.mem != nil {
		b.mem.Shrink()
	}
}

// sendChunk sends one chunk, retrying failures that may pass (5xx, resets, stalls) with backoff.
// The buffer may still be filling: the attempts wait for its bytes.
func (c *Client) sendChunk(ctx context.Context, chunk *chunkBuffer, n int, h chunkHeaders, p store.Params) (json.RawMessage, error) {
	for retry := 0; ; retry++ {
		result, err := c.sendChunkOnce(ctx, chunk, n, h, p)
		if err == nil || ctx.Err() != nil || retry == ChunkRetries || !retryable(err) {
			if err != nil && retry > 0 {
				err = fmt.Errorf("chunk %s after %d retries: %w", h.contentRange, retry, err)
			}
			return result, err
		}
		if c.opts.Retrying != nil {
			c.opts.Retrying(ctx, h.contentRange, retry+1, err)
		}
		if err := c.opts.Wait(ctx, c.opts.Backoff(retry)); err != nil {
			return nil, err
		}
	}
}

// sendChunkOnce makes one attempt, cancelled when it stalls: when it makes no progress for
// StallTimeout, not counting the time it waits for the file's bytes.
func (c *Client) sendChunkOnce(ctx context.Context, chunk *chunkBuffer, n int, h chunkHeaders, p store.Params) (json.RawMessage, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(c.opts.StallTimeout, func() { cancel(ErrStalled) })
	defer stall.Stop()
	body := &chunkReader{data: chunk, size: n, stop: make(chan struct{}),
		progress: func() { stall.Reset(c.opts.StallTimeout) },
		waiting: func(w bool) {
			if w {
				stall.Stop()
			} else {
				stall.Reset(c.opts.StallTimeout)
			}
		}}
	// A transport whose request is cancelled waits for its body's writer to return before
	// RoundTrip does: one waiting for the file's bytes must give up then, not at detach, which
	// comes only after RoundTrip returns.
	stopWaiting := context.AfterFunc(ctx, body.giveUp)
	defer stopWaiting()
	result, err := c.send(ctx, body, p, &h)
	stalled := errors.Is(context.Cause(ctx), ErrStalled)
	cancel(nil)   // a transport still writing the chunk gives up,
	body.detach() // so this waits for no one but a write about to fail; then the buffer is ours
	if err != nil && stalled {
		return nil, fmt.Errorf("%w: %w: %w", ErrTimeout, ErrStalled, err)
	}
	return result, err
}

// retryable says whether another attempt at a chunk may succeed.
func retryable(err error) bool {
	return errors.Is(err, ErrFailed) || errors.Is(err, ErrUnreachable) || errors.Is(err, ErrStalled)
}

// chunkReader is one attempt's view of the first size bytes of a chunk buffer. The transport
// writes it from its own goroutine, which may outlive the attempt by a moment: detach cuts it
// off, and waits for a write under way, so that the buffer can be refilled.
type chunkReader struct {
	mu       sync.Mutex   // held for each piece read or written
	data     *chunkBuffer // nil once detached
	size     int
	off      int
	stop     chan struct{} // closed by detach: a reader waiting for the file's bytes gives up
	progress func()
	waiting  func(bool) // told when the reader starts (true) and stops waiting for the file's bytes
	once     sync.Once
}

var errChunkDetached = errors.New("chunk attempt is over")

func (r *chunkReader) Read(p []byte) (int, error) {
	return r.next(func(piece []byte) (int, error) { return copy(p, piece), nil }, len(p))
}

// WriteTo writes the chunk straight from its buffer, in pieces, so that progress is seen.
func (r *chunkReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		n, err := r.next(w.Write, chunkPieceBytes)
		total += int64(n)
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// next hands use the next piece of at most max bytes, under mu, waiting (without mu) for the
// piece's bytes to arrive.
func (r *chunkReader) next(use func([]byte) (int, error), max int) (int, error) {
	for {
		r.mu.Lock()
		if r.data == nil {
			r.mu.Unlock()
			return 0, errChunkDetached
		}
		if r.off >= r.size {
			r.mu.Unlock()
			return 0, io.EOF
		}
		piece, wait := r.data.piece(r.off, r.size, max)
		if piece != nil {
			n, err := use(piece)
			r.off += n
			if n > 0 {
				r.progress()
			}
			r.mu.Unlock()
			return n, err
		}
		r.mu.Unlock()
		r.waiting(true)
		select {
		case <-wait:
			r.waiting(false)
		case <-r.stop:
			return 0, errChunkDetached
		}
	}
}

// giveUp wakes a reader waiting for the file's bytes, which then ends with errChunkDetached.
func (r *chunkReader) giveUp() { r.once.Do(func() { close(r.stop) }) }

func (r *chunkReader) detach() {
	r.giveUp()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.data = nil
}

// bufferPool keeps up to max buffers of one size (chunk blocks) for reuse. The buffers in use
// are bounded by the caller (the server's UPLOAD_MEMORY: each upload reserves its own); kept
// ones would not be.
type bufferPool struct {
	free chan []byte
	size int
}

func newBufferPool(max, size int) *bufferPool {
	return &bufferPool{free: make(chan []byte, max), size: size}
}

func (p *bufferPool) get() []byte {
	select {
	case b := <-p.free:
		return b
	default:
		return make([]byte, p.size)
	}
}

func (p *bufferPool) put(b []byte) {
	select {
	case p.free <- b:
	default: // the pool is full: let the collector have it
	}
}
