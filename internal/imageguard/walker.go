package imageguard

import (
	"errors"
	"fmt"
	"io"
)

// Read lets the walker read the source as a stream: first what win holds past pos, then r
// (through held, the rest of r's last piece, when r hands out pieces: pieces.go). While
// bounded, reads of r count towards limit.
func (s *source) Read(p []byte) (int, error) {
	if u := s.unread(); len(u) > 0 {
		n := copy(p, u)
		s.pos += n
		return n, nil
	}
	if s.piecing && len(s.held) == 0 && s.heldErr == nil {
		s.held, s.heldErr = s.pieces.NextPiece(s.wait)
	}
	if len(s.held) > 0 || s.heldErr != nil {
		n := copy(p, s.held)
		s.held = s.held[n:]
		if len(s.held) > 0 {
			return n, nil
		}
		return n, s.heldErr
	}
	if s.bounded {
		room := s.limit - s.extra
		if room <= 0 {
			return 0, fmt.Errorf("%w: more than %d bytes before the image data", ErrMetadataTooLarge, s.limit)
		}
		p = p[:min(len(p), room)]
	}
	n, err := s.r.Read(p)
	if s.bounded {
		s.extra += n
	}
	return n, err
}

// chunkWalker streams a file made of length-prefixed chunks (PNG, RIFF): it gives out what
// next decided for each chunk (out), then passes pass bytes of src through unchanged. After
// the last chunk (tail) it passes everything through.
type chunkWalker struct {
	src    *source
	format string
	out    []byte
	pass   int64
	tail   bool
	image  bool // the image data has begun
	err    error
	hdr    [8]byte                    // the chunk header being given out: out may point into it until consumed
	next   func(w *chunkWalker) error // reads the next chunk: sets out, pass, tail, image
	state  any                        // next's own state, for Snapshot (snapshot.go): a *pngState or *webpState, else nil
	// For NextPiece (pieces.go): the chunk being passed goes out as pieces of src's; the
	// buffer that gathers short chunks, and whether it was filled last time (then it grows).
	direct bool
	gather []byte
	full   bool // the last gather filled it
}

// step walks the next chunk.
func (w *chunkWalker) step() {
	w.err = w.next(w)
	w.direct = w.pass >= directPass
}

func (w *chunkWalker) Read(p []byte) (int, error) {
	for {
		switch {
		case len(p) == 0:
			return 0, nil
		case len(w.out) > 0:
			n := copy(p, w.out)
			w.out = w.out[n:]
			return n, nil
		case w.pass > 0:
			n, err := w.src.Read(p[:min(int64(len(p)), w.pass)])
			w.pass -= int64(n)
			if err == io.EOF {
				if w.pass > 0 {
					w.err = malformed(w.format, "the file ends inside a chunk")
					return n, w.err
				}
				err = nil
			}
			if n > 0 || err != nil {
				return n, err
			}
		case w.tail:
			return w.src.Read(p)
		case w.err != nil:
			return 0, w.err
		default:
			w.step()
		}
	}
}

// readFull reads len(b) bytes of the chunk being walked.
func (w *chunkWalker) readFull(b []byte, what string) error {
	_, err := readAtLeast(w.src, b, len(b))
	if errors.Is(err, errTruncated) {
		return malformed(w.format, "the file ends inside %s", what)
	}
	return err
}

// eager walks the chunks before the image data, from a bounded source, and returns them:
// they become Result.Prefix, and the walker goes on from the first image chunk.
func (w *chunkWalker) eager(s *source) ([]byte, error) {
	var prefix []byte
	for !w.image {
		if w.tail {
			return nil, malformed(w.format, "no image data")
		}
		if err := w.next(w); err != nil {
			return nil, err
		}
		prefix = append(prefix, w.out...)
		w.out = nil
		if w.image {
			break
		}
		for w.pass > 0 { // a chunk passed on before the image data: it counts towards the window
			if w.pass > int64(s.limit-s.extra+len(s.unread())) {
				return nil, fmt.Errorf("%w: more than %d bytes before the image data", ErrMetadataTooLarge, s.limit)
			}
			b := make([]byte, min(w.pass, 32<<10))
			if err := w.readFull(b, "a chunk"); err != nil {
				return nil, err
			}
			prefix = append(prefix, b...)
			w.pass -= int64(len(b))
		}
	}
	s.bounded = false
	return prefix, nil
}
