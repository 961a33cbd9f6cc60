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
// until the last chunk, whose answer is the upload result. Each chunk is read whole first, into
// a buffer that grows a block at a time as the chunk's bytes arrive (each block reserved
// through p.Memory first), so a failed attempt is retried from the buffer. The next chunk reuses
// the blocks (a fresh 1 MiB block per piece of every chunk cost twice the CPU of the whole
// upload in the benchmark's S4); they, and their memory, are given back when the upload ends.
func (c *Client) uploadChunked(ctx context.Context, file io.Reader, p store.Params) (json.RawMessage, error) {
	buf := &chunkBuffer{pool: c.buffers, mem: p.Memory}
	defer buf.reset()
	uploadID := NewUploadID()

	size := int(c.opts.ChunkSize)
	var start int64
	for {
		err := buf.fill(ctx, file, size+1) // one byte more, to learn whether more follows
		last := err == io.EOF              // unwrapped, as io.Reader returns it; a body cut short is no last chunk
		if err != nil && !last {
			return nil, err
		}
		if last && buf.n == 0 {
			return nil, ErrEmptyFile // only when the file ended exactly where a chunk did, which read-ahead rules out
		}
		n := min(buf.n, size)
		total := int64(-1)
		if last {
			total = start + int64(n)
		}
		result, err := c.sendChunk(ctx, buf, n, chunkHeaders{uploadID, contentRange(start, n, total)}, p)
		if err != nil || last {
			return result, err
		}
		ahead := buf.at(size) // the read-ahead byte starts the next chunk
		buf.rewind()
		if err := buf.put(ctx, ahead); err != nil {
			return nil, err
		}
		start += int64(n)
	}
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
type chunkBuffer struct {
	blocks [][]byte
	n      int // bytes held
	pool   *bufferPool
	mem    store.Memory // nil: nothing to reserve
}

// grow adds a block, once its memory is reserved.
func (b *chunkBuffer) grow(ctx context.Context) error {
	if b.mem != nil {
		if err := b.mem.Grow(ctx, ChunkBlockBytes); err != nil {
			return err
		}
	}
	b.blocks = append(b.blocks, b.pool.get())
	return nil
}

// fill reads file until the buffer holds want bytes; it returns io.EOF when the file ends first.
func (b *chunkBuffer) fill(ctx context.Context, file io.Reader, want int) error {
	for b.n < want {
		blk, off := b.n/ChunkBlockBytes, b.n%ChunkBlockBytes
		if blk == len(b.blocks) {
			if err := b.grow(ctx); err != nil {
				return err
			}
		}
		m, err := file.Read(b.blocks[blk][off:min(ChunkBlockBytes, off+want-b.n)])
		b.n += m
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
	b.n++
	return nil
}

// at is the byte at offset i, which the buffer holds.
func (b *chunkBuffer) at(i int) byte { return b.blocks[i/ChunkBlockBytes][i%ChunkBlockBytes] }

// piece is up to max bytes from offset off, within its block and the first n bytes.
func (b *chunkBuffer) piece(off, n, max int) []byte {
	blk, o := off/ChunkBlockBytes, off%ChunkBlockBytes
	return b.blocks[blk][o : o+min(ChunkBlockBytes-o, n-off, max)]
}

// chunkBufferOf is a read-only view of chunk as a chunk buffer, without a copy: its blocks are
// chunk's pieces (the last may be short). It has no pool nor memory: never reset it.
func chunkBufferOf(chunk []byte) *chunkBuffer {
	b := &chunkBuffer{n: len(chunk)}
	for off := 0; off < len(chunk); off += ChunkBlockBytes {
		b.blocks = append(b.blocks, chunk[off:min(off+ChunkBlockBytes, len(chunk))])
	}
	return b
}

// rewind empties the buffer for the next chunk, keeping its blocks and their memory.
func (b *chunkBuffer) rewind() { b.n = 0 }

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

// sendChunkOnce makes one attempt, cancelled when it stalls.
func (c *Client) sendChunkOnce(ctx context.Context, chunk *chunkBuffer, n int, h chunkHeaders, p store.Params) (json.RawMessage, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(c.opts.StallTimeout, func() { cancel(ErrStalled) })
	defer stall.Stop()
	body := &chunkReader{data: chunk, size: n, progress: func() { stall.Reset(c.opts.StallTimeout) }}
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
	progress func()
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

// next hands use the next piece of at most max bytes, under mu.
func (r *chunkReader) next(use func([]byte) (int, error), max int) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.data == nil {
		return 0, errChunkDetached
	}
	if r.off >= r.size {
		return 0, io.EOF
	}
	n, err := use(r.data.piece(r.off, r.size, max))
	r.off += n
	if n > 0 {
		r.progress()
	}
	return n, err
}

func (r *chunkReader) detach() {
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
