package imageguard

import (
	"io"
	"math"
)

// Pieces: a caller's reader may hand out pieces of its own buffer rather than copy into the
// caller's (the server's multipart reader does: its pieces go straight to the upstream
// connection). When rest does, a Rest that walks it does too, so that the image data passes
// through without a copy: pieces of rest's buffer, each no longer than the chunk (PNG chunk,
// RIFF chunk, the bytes up to a TIFF's or ICO's next part, a HEIF box or the part of it up to
// a metadata item) the walk has come to, with what the guard holds or rewrites (chunk headers,
// metadata chunks) given out from its own buffers. Runs of short chunks (GIF's sub-blocks of at
// most 255 bytes, a PNG whose encoder cut its image data into IDATs of 8 KiB, as libpng does)
// are gathered into a buffer of the guard's own instead, up to gatherBytes: one piece each
// would cost more than the copy. Either way the bytes are those Read gives, in the same order.

// pieceSource is a reader that hands out pieces of its own buffer, each valid until its next
// call; it calls beforeWait (when not nil) before it waits on its own source, and returns its
// error as it is. formstream.Part is one.
type pieceSource interface {
	NextPiece(beforeWait func() error) ([]byte, error)
}

const (
	// directPass is the shortest run of bytes passed as they are that goes out as pieces of
	// the source's buffer; shorter ones are gathered.
	directPass = 64 << 10
	// gatherBytes is the size the buffer that gathers short chunks grows to (from 4 KiB) once
	// it was filled.
	gatherBytes = 64 << 10
)

// piecesOf gives a walker over s the NextPiece method when s's reader hands out pieces.
func (s *source) piecesOf(rest io.Reader) io.Reader {
	ps, ok := s.r.(pieceSource)
	if !ok {
		return rest
	}
	s.pieces = ps
	switch w := rest.(type) {
	case *chunkWalker:
		w.direct = w.pass >= directPass
		return &chunkPieces{w}
	case *heifWalker:
		return &heifPieces{w}
	}
	return rest
}

// during makes reads of r go through its pieces, waiting with beforeWait, until the function
// it returns is called.
func (s *source) during(beforeWait func() error) func() {
	s.piecing, s.wait = true, beforeWait
	return func() { s.piecing, s.wait = false, nil }
}

// piece gives out the next bytes after pos as they are, at most n (n > 0): what the window
// holds, else a piece of r's buffer. r's error comes with the last bytes of its last piece.
func (s *source) piece(n int64) ([]byte, error) {
	if u := s.unread(); len(u) > 0 {
		k := int(min(int64(len(u)), n))
		s.pos += k
		return u[:k:k], nil
	}
	if len(s.held) == 0 && s.heldErr == nil {
		s.held, s.heldErr = s.pieces.NextPiece(s.wait)
	}
	k := int(min(int64(len(s.held)), n))
	b := s.held[:k:k]
	s.held = s.held[k:]
	if len(s.held) > 0 {
		return b, nil
	}
	return b, s.heldErr
}

// holds says whether a read of n bytes can be answered without waiting on r's source.
func (s *source) holds(n int) bool {
	return len(s.unread())+len(s.held) >= n || s.heldErr != nil
}

// headerBytes is more than the walkers read to decide what becomes of a chunk they pass: a
// PNG chunk header with an fcTL's data, a RIFF chunk header with an ANMF frame's header or the
// start of a bitstream, a GIF block's header.
const headerBytes = 64

// chunkPieces is a chunkWalker over a source that hands out pieces.
type chunkPieces struct{ *chunkWalker }

// NextPiece returns the next bytes of the walk, valid until the next call on the walker: see
// pieceSource. It returns io.EOF at the end, and the walk's errors as Read does.
func (w *chunkPieces) NextPiece(beforeWait func() error) ([]byte, error) {
	defer w.src.during(beforeWait)()
	for {
		switch {
		case len(w.out) > 0 && (w.direct || len(w.out) >= directPass):
			b := w.out
			w.out = nil
			return b, nil
		case len(w.out) > 0, w.pass > 0 && !w.direct:
			return w.gathered()
		case w.pass > 0:
			b, err := w.src.piece(w.pass)
			w.pass -= int64(len(b))
			if err == io.EOF {
				if w.pass > 0 {
					w.err = malformed(w.format, "the file ends inside a chunk")
					return b, w.err
				}
				err = nil
			}
			if len(b) > 0 || err != nil {
				return b, err
			}
		case w.tail:
			return w.src.piece(math.MaxInt64)
		case w.err != nil:
			return nil, w.err
		default:
			w.step()
		}
	}
}

// gathered reads into the walker's own buffer what comes next, as long as it is held bytes or
// short chunks that the source holds already: it stops before a chunk that goes out as pieces
// (direct), before the tail, and before a read that would wait on the source: the next chunk's
// header is read only when the source holds headerBytes. (A metadata chunk held whole may still
// make it wait with what it gathered, as Read's caller waits with what it read.)
func (w *chunkWalker) gathered() ([]byte, error) {
	switch {
	case w.gather == nil:
		w.gather = make([]byte, 4<<10) // most files need no more: an IEND, a few text chunks
	case w.full && len(w.gather) < gatherBytes: // a run of short chunks: all of it next time
		w.gather = make([]byte, gatherBytes)
	}
	n := 0
	defer func() { w.full = n == len(w.gather) }()
	for n < len(w.gather) {
		if n > 0 {
			var more bool
			switch {
			case len(w.out) > 0:
				more = len(w.out) < directPass
			case w.pass > 0:
				more = !w.direct && w.src.holds(1)
			default:
				more = !w.tail && w.err == nil && w.src.holds(headerBytes)
			}
			if !more {
				break
			}
		}
		m, err := w.Read(w.gather[n:])
		n += m
		if err != nil {
			return w.gather[:n], err
		}
	}
	return w.gather[:n], nil
}

// heifPieces is a heifWalker over a source that hands out pieces.
type heifPieces struct{ *heifWalker }

// NextPiece is chunkPieces' for HEIF: boxes are long, so nothing is gathered.
func (w *heifPieces) NextPiece(beforeWait func() error) ([]byte, error) {
	defer w.src.during(beforeWait)()
	for {
		if len(w.out) > 0 {
			b := w.out
			w.out = nil
			return b, nil
		}
		lim, err := w.advance()
		if err != nil {
			return nil, err
		}
		if lim == 0 {
			continue // out was set
		}
		b, err := w.src.piece(int64(min(lim, math.MaxInt64)))
		if err = w.passed(len(b), err); len(b) > 0 || err != nil {
			return b, err
		}
	}
}
