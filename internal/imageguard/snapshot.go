package imageguard

import (
	"encoding/binary"
	"errors"
	"io"
	"math"
)

// Snapshots: a resumable upload may go on in another process, after the first has stopped
// between two of the client's requests. The walk of a PNG or WebP being stripped (or animated)
// can then go on from where it stopped: Rest's Snapshot gives its state when nothing is held
// back, that is when every byte Rest has read from its source has been given out (passed on,
// or rewritten, or removed: not a chunk header half read, nor a metadata chunk held, nor bytes
// read ahead); Resume builds, from that state and a reader of the source's bytes that follow
// those, a reader that gives out what Rest would have given. The state is small (tens of
// bytes): the walk's position in the chunk list and what it counts, never file bytes.

// ErrBadSnapshot is a state that Snapshot did not make (or that was cut or changed).
var ErrBadSnapshot = errors.New("imageguard: not a snapshot of a walk")

const (
	snapshotMagic   = 'g'
	snapshotVersion = 1
	snapshotPNG     = 1
	snapshotWebP    = 2
)

// The flags of a snapshot.
const (
	snapTail = 1 << iota
	snapImage
	snapAnimated
	snapSeen // PNG: past the first IDAT; WebP: an ANMF frame was met
)

// Snapshot returns the walk's state, when it is a PNG's or a WebP's and nothing is held back
// (see above); ok is false otherwise (another format, or in the middle of a chunk header or a
// metadata chunk: a few bytes further it is true again, but for a tail after the walk's end
// that never is). The state stays valid whatever Rest does next.
func (w *chunkWalker) Snapshot() (state []byte, ok bool) {
	s := w.src
	if w.err != nil || len(w.out) > 0 || s.bounded || len(s.unread()) > 0 || len(s.held) > 0 || s.heldErr != nil {
		return nil, false
	}
	var flags byte
	if w.tail {
		flags |= snapTail
	}
	if w.image {
		flags |= snapImage
	}
	var format byte
	var counts []int64
	switch st := w.state.(type) {
	case *pngState:
		format = snapshotPNG
		if st.animated {
			flags |= snapAnimated
		}
		if st.image {
			flags |= snapSeen
		}
		counts = []int64{st.meta, st.frames.n, st.frames.pixels}
	case *webpState:
		format = snapshotWebP
		if st.animated {
			flags |= snapAnimated
		}
		if st.anmf {
			flags |= snapSeen
		}
		counts = []int64{st.meta, st.frames.n, st.frames.pixels, st.left, st.inFrame}
	default:
		return nil, false
	}
	b := []byte{snapshotMagic, snapshotVersion, format, flags}
	b = binary.AppendUvarint(b, uint64(w.pass))
	for _, c := range counts {
		b = binary.AppendUvarint(b, uint64(c))
	}
	return b, true
}

// Resume goes on with the walk whose state Snapshot gave, reading rest: the bytes of the file
// that follow those the walk had read. What it returns gives out what Rest would have given
// from there (its errors are Rest's); it hands out pieces when rest does, and has Snapshot in
// turn. opts are the rules from here on (the server's own: if they changed, the new limits
// apply, to counts that carry over). A state not from Snapshot is ErrBadSnapshot.
func Resume(state []byte, rest io.Reader, opts Options) (io.Reader, error) {
	opts = opts.withDefaults()
	if len(state) < 4 || state[0] != snapshotMagic || state[1] != snapshotVersion {
		return nil, ErrBadSnapshot
	}
	format, flags := state[2], state[3]
	if flags&^(snapTail|snapImage|snapAnimated|snapSeen) != 0 {
		return nil, ErrBadSnapshot
	}
	n := 4
	if format == snapshotWebP {
		n = 6
	} else if format != snapshotPNG {
		return nil, ErrBadSnapshot
	}
	vals := make([]int64, n)
	b := state[4:]
	for i := range vals {
		v, k := binary.Uvarint(b)
		if k <= 0 || v > math.MaxInt64 {
			return nil, ErrBadSnapshot
		}
		vals[i], b = int64(v), b[k:]
	}
	if len(b) > 0 {
		return nil, ErrBadSnapshot
	}
	src := &source{r: rest, limit: opts.MaxMetadataBytes}
	w := &chunkWalker{src: src, pass: vals[0], tail: flags&snapTail != 0, image: flags&snapImage != 0}
	frames := frameCount{n: vals[2], pixels: vals[3]}
	animated, seen := flags&snapAnimated != 0, flags&snapSeen != 0
	switch format {
	case snapshotPNG:
		st := &pngState{opts: opts, meta: vals[1], animated: animated, image: seen, frames: frames}
		w.format, w.next, w.state = "PNG", st.next, st
	case snapshotWebP:
		st := &webpState{opts: opts, meta: vals[1], animated: animated, anmf: seen, frames: frames, left: vals[4], inFrame: vals[5]}
		w.format, w.next, w.state = "WebP", st.next, st
	}
	return src.piecesOf(w), nil
}
