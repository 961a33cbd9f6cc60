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
// until the last chunk, whose answer is the upload result. Each chunk is read whole into a
// pooled buffer first, so a failed attempt is retried from the buffer.
func (c *Client) uploadChunked(ctx context.Context, file io.Reader, p store.Params) (json.RawMessage, error) {
	buf := c.buffers.get()
	defer c.buffers.put(buf)
	var id [16]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails (Go 1.24+)
	uploadID := hex.EncodeToString(id[:])

	size := int(c.opts.ChunkSize)
	var start int64
	carried := 0 // the byte read ahead to learn that more follows, now first in buf
	for {
		n, err := io.ReadFull(file, buf[carried:size+1])
		n += carried
		last := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
		if err != nil && !last {
			return nil, err
		}
		if last && n == 0 {
			return nil, ErrEmptyFile // only when the file ended exactly where a chunk did, which read-ahead rules out
		}
		chunk := buf[:min(n, size)]
		end := start + int64(len(chunk)) - 1
		total := "-1"
		if last {
			total = fmt.Sprint(end + 1)
		}
		headers := chunkHeaders{uploadID: uploadID, contentRange: fmt.Sprintf("bytes %d-%d/%s", start, end, total)}
		result, err := c.sendChunk(ctx, chunk, headers, p)
		if err != nil || last {
			return result, err
		}
		buf[0] = buf[size] // the read-ahead byte starts the next chunk
		carried = 1
		start = end + 1
	}
}

// sendChunk sends one chunk, retrying failures that may pass (5xx, resets, stalls) with backoff.
func (c *Client) sendChunk(ctx context.Context, chunk []byte, h chunkHeaders, p store.Params) (json.RawMessage, error) {
	for retry := 0; ; retry++ {
		result, err := c.sendChunkOnce(ctx, chunk, h, p)
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
func (c *Client) sendChunkOnce(ctx context.Context, chunk []byte, h chunkHeaders, p store.Params) (json.RawMessage, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(c.opts.StallTimeout, func() { cancel(ErrStalled) })
	defer stall.Stop()
	body := &chunkReader{data: chunk, progress: func() { stall.Reset(c.opts.StallTimeout) }}
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

// chunkReader is one attempt's view of a chunk buffer. The transport writes it from its own
// goroutine, which may outlive the attempt by a moment: detach cuts it off, and waits for a
// write under way, so that the buffer can be refilled.
type chunkReader struct {
	mu       sync.Mutex // held for each piece read or written
	data     []byte     // nil once detached
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
	if r.off >= len(r.data) {
		return 0, io.EOF
	}
	n, err := use(r.data[r.off:min(len(r.data), r.off+max)])
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

// bufferPool keeps up to max buffers of one size for reuse. The buffers in use are bounded by
// the caller (the server's UPLOAD_MEMORY: each upload reserves its own); kept ones would not be.
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
