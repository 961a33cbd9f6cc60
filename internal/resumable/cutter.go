package resumable

import (
	"context"
	"encoding/json"
	"errors"
	"io"

	"cloudinary-upload-api/internal/store"
)

// ErrEmpty is the Cutter's error for a stream with no bytes at all.
var ErrEmpty = errors.New("resumable: the file is empty")

// SendFunc sends bytes [offset, offset+len(chunk)) of the stored file; total is the file's size
// when this chunk is the last, else -1. The last chunk's answer is the upload's result.
type SendFunc func(ctx context.Context, offset int64, chunk []byte, total int64) (json.RawMessage, error)

// Cutter cuts a stream into chunks of Size bytes, sent in order with Send, the last one shorter
// and carrying the total. It holds one chunk and one byte more (to know whether a chunk is the
// last), reserved through Memory a block at a time as they arrive.
type Cutter struct {
	Size   int
	Send   SendFunc
	Memory store.Memory // nil: not counted
	// Sent is told after each chunk the store has taken, with the stored bytes so far.
	Sent func(stored int64) error

	buf      []byte
	n        int   // bytes in buf
	reserved int64 // of Memory
}

// BlockBytes is the step in which a Cutter reserves its buffer.
const BlockBytes = 1 << 20

// Upload sends what r yields, from the stored file's offset start, until r ends; it returns the
// store's answer to the last chunk.
func (c *Cutter) Upload(ctx context.Context, r io.Reader, start int64) (json.RawMessage, error) {
	if c.buf == nil {
		c.buf = make([]byte, c.Size+1)
	}
	defer c.release()
	for {
		last, err := c.fill(ctx, r)
		if err != nil {
			return nil, err
		}
		if last && c.n == 0 {
			if start == 0 {
				return nil, ErrEmpty
			}
			return nil, errors.New("resumable: the stream ended where a chunk did") // read-ahead rules it out
		}
		n := min(c.n, c.Size)
		total := int64(-1)
		if last {
			total = start + int64(n)
		}
		result, err := c.Send(ctx, start, c.buf[:n], total)
		if err != nil {
			return nil, err
		}
		start += int64(n)
		if last {
			return result, nil
		}
		if c.Sent != nil {
			if err := c.Sent(start); err != nil {
				return nil, err
			}
		}
		c.n = copy(c.buf, c.buf[n:c.n]) // the byte read ahead starts the next chunk
	}
}

// fill reads until the buffer holds a chunk and one byte more, or r ends (last).
func (c *Cutter) fill(ctx context.Context, r io.Reader) (last bool, err error) {
	for c.n < len(c.buf) {
		if err := c.reserve(ctx, int64(min((c.n/BlockBytes+1)*BlockBytes, len(c.buf)))); err != nil {
			return false, err
		}
		end := min(len(c.buf), int(c.reserved))
		m, err := r.Read(c.buf[c.n:end])
		c.n += m
		if err == io.EOF { // unwrapped, as io.Reader says: a stream cut short is no end
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
	return false, nil
}

// reserve makes sure that the first upTo bytes of the buffer are reserved.
func (c *Cutter) reserve(ctx context.Context, upTo int64) error {
	if c.Memory == nil {
		c.reserved = int64(len(c.buf))
		return nil
	}
	if upTo <= c.reserved {
		return nil
	}
	if err := c.Memory.Grow(ctx, upTo-c.reserved); err != nil {
		return err
	}
	c.reserved = upTo
	return nil
}

func (c *Cutter) release() {
	if c.Memory != nil && c.reserved > 0 {
		c.Memory.Shrink()
		c.reserved = 0
	}
	c.buf = nil
}
