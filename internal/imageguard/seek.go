package imageguard

import (
	"cmp"
	"slices"
)

// offsetWalk streams a file whose parts are found by their offsets from its start (TIFF's
// IFDs, ICO's images) rather than one after the other: it visits them in increasing order,
// reading what each one needs, and passes the bytes between them through by length. A part
// that lies before what has already gone out cannot be read any more and is refused; so the
// walk moves only forward, and cannot loop.
//
// While Guard walks the head (eager), it visits the parts whose bytes it already holds; the
// first part further on is met as the file streams, like a GIF's later frames.
type offsetWalk struct {
	format string
	src    *source
	pos    int64 // the file's bytes given out so far, counted from its start
	todo   []visit
	frames frameCount
}

type visit struct {
	off  int64
	what string // for messages: "IFD", "image"
	read func(w *chunkWalker) error
}

// add plans a visit at off; a part before pos is malformed.
func (o *offsetWalk) add(v visit) error {
	if v.off < o.pos {
		return malformed(o.format, "%s at offset %d, before offset %d where the walk has come", v.what, v.off, o.pos)
	}
	i, _ := slices.BinarySearchFunc(o.todo, v.off, func(a visit, off int64) int { return cmp.Compare(a.off, off) })
	o.todo = slices.Insert(o.todo, i, v)
	return nil
}

func (o *offsetWalk) next(w *chunkWalker) error {
	if len(o.todo) == 0 {
		w.tail, w.image = true, true
		return nil
	}
	v := o.todo[0]
	if v.off < o.pos {
		return malformed(o.format, "%s at offset %d overlaps what comes before it", v.what, v.off)
	}
	if gap := v.off - o.pos; gap > 0 {
		if !w.image && gap > int64(len(o.src.unread())) {
			w.image = true // further than the head: the rest is checked as it streams
		}
		w.pass = gap
		o.pos = v.off
		return nil
	}
	o.todo = o.todo[1:]
	return v.read(w)
}

// take reads n bytes at pos, to be given out next.
func (o *offsetWalk) take(w *chunkWalker, n int, what string) ([]byte, error) {
	b := make([]byte, n)
	if err := w.readFull(b, what); err != nil {
		return nil, err
	}
	w.out = append(w.out, b...)
	o.pos += int64(n)
	return b, nil
}

// start walks what the head holds and returns the Result: the prefix walked, then a walker
// over the rest.
func (o *offsetWalk) start(format string) (Result, error) {
	head := o.src.win[:o.src.pos:o.src.pos]
	cw := &chunkWalker{src: o.src, format: o.format, next: o.next}
	prefix, err := cw.eager(o.src)
	if err != nil {
		return Result{}, err
	}
	res := Result{Removed: "none", Format: format}
	if cw.tail && cw.pass == 0 && len(cw.out) == 0 {
		// Every part was in the head: the rest goes on through rest itself.
		res.Prefix, res.Rest = slices.Concat(head, prefix, o.src.unread()), o.src.r
		return res, nil
	}
	res.Prefix, res.Rest, res.Wrapped = append(head, prefix...), cw, true
	return res, nil
}
