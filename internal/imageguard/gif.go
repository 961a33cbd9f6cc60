package imageguard

import (
	"encoding/binary"
	"errors"
)

// GIF (GIF89a §17-27): the 6-byte signature; the logical screen descriptor (canvas width and
// height, a packed byte, two more); an optional global colour table; then blocks: extensions
// (0x21, a label, data sub-blocks), images (0x2C, a 9-byte descriptor with the frame's
// position and size, an optional local colour table, the LZW code size, data sub-blocks), and
// the trailer (0x3B). Sub-blocks are a length byte and that many bytes; length 0 ends them.
// GIF carries no EXIF: nothing is removed. Every frame is checked against the limits as well
// as the canvas, since some decoders size their buffers by the frames, and the frames are
// counted (frames.go); so a GIF is walked to its end, passing its data sub-blocks through.

func guardGIF(s *source, opts Options) (Result, error) {
	const f = "GIF"
	b, err := s.take(13)
	if err != nil {
		return Result{}, truncation(f, err, "the logical screen descriptor")
	}
	w, h := int64(binary.LittleEndian.Uint16(b[6:])), int64(binary.LittleEndian.Uint16(b[8:]))
	if err := opts.checkSize(f, w, h); err != nil {
		return Result{}, err
	}
	g := &gifState{opts: opts}
	if b[10]&0x80 != 0 {
		g.table = 3 << (b[10]&7 + 1)
	}
	cw := &chunkWalker{src: s, format: f, next: g.next}
	prefix, err := cw.eager(s)
	if err != nil {
		return Result{}, err
	}
	return Result{Prefix: append(b[:13:13], prefix...), Rest: cw, Wrapped: true, Removed: "none", Format: "gif", Width: w, Height: h}, nil
}

type gifState struct {
	opts       Options
	table      int64 // a colour table to pass before the next block
	subBlocks  bool  // inside data sub-blocks
	afterImage bool  // the next step after a local colour table is the code size
	seenImage  bool
	frames     frameCount
}

func (g *gifState) next(w *chunkWalker) error {
	const f = "GIF"
	if g.table > 0 {
		w.pass, g.table = g.table, 0
		w.out = nil
		return nil
	}
	if g.afterImage {
		g.afterImage, g.subBlocks = false, true
		b := w.hdr[:1]
		if err := w.readFull(b, "an image"); err != nil {
			return err
		}
		w.out = b
		return nil
	}
	b := w.hdr[:1]
	if _, err := readAtLeast(w.src, b, 1); err != nil {
		switch {
		case !errors.Is(err, errTruncated):
			return err
		case g.subBlocks || !g.seenImage:
			return malformed(f, "the file ends inside the block list")
		}
		w.tail = true // the trailer is missing after the last frame, as in many GIFs: decoders stop there too
		return nil
	}
	w.out = b
	if g.subBlocks {
		if n := b[0]; n == 0 {
			g.subBlocks = false
		} else {
			w.pass = int64(n)
		}
		return nil
	}
	switch b[0] {
	case 0x21: // extension: its label, then sub-blocks
		lb := w.hdr[:2]
		if err := w.readFull(lb[1:], "an extension"); err != nil {
			return err
		}
		w.out = lb
		g.subBlocks = true
	case 0x2C:
		d := w.hdr[:8]
		d[0] = 0x2C
		rest := make([]byte, 9)
		if err := w.readFull(rest, "an image descriptor"); err != nil {
			return err
		}
		left, top := int64(binary.LittleEndian.Uint16(rest)), int64(binary.LittleEndian.Uint16(rest[2:]))
		fw, fh := int64(binary.LittleEndian.Uint16(rest[4:])), int64(binary.LittleEndian.Uint16(rest[6:]))
		if err := g.opts.checkSize(f, max(fw, left+fw), max(fh, top+fh)); err != nil {
			return err
		}
		if err := g.frames.add(g.opts, fw*fh); err != nil {
			return err
		}
		w.out = append(d[:1:1], rest...)
		if rest[8]&0x80 != 0 {
			g.table = 3 << (rest[8]&7 + 1)
		}
		g.afterImage, g.seenImage = true, true
		w.image = true
	case 0x3B:
		w.tail = true
	default:
		return malformed(f, "block introducer 0x%02X", b[0])
	}
	return nil
}
