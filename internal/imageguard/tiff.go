package imageguard

import "encoding/binary"

// TIFF (TIFF 6.0 §2): "II" (little-endian) or "MM" (big-endian), 42, and the offset of the
// first IFD (image file directory). An IFD is a count of 12-byte entries (tag, type, count, a
// value or the offset of one), then the offset of the next IFD, 0 after the last. Each IFD is
// a page (an image) with its own ImageWidth (256) and ImageLength (257), SHORT or LONG. IFDs
// may lie anywhere, often after their image data; the pages are walked in the order of their
// offsets as the file streams, each one's size checked, and they count as frames; so are the
// IFDs a SubIFDs entry (330) points to (a DNG keeps its raw image there). A file
// whose next IFD lies before what has been walked (already sent on) is refused: writers put
// it further on. Nothing is removed: TIFF's metadata passes unchanged.

func guardTIFF(s *source, opts Options) (Result, error) {
	const f = "TIFF"
	b, err := s.take(8)
	if err != nil {
		return Result{}, truncation(f, err, "the header")
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if b[0] == 'M' {
		bo = binary.BigEndian
	}
	o := &offsetWalk{format: f, src: s, pos: 8}
	var firstW, firstH int64 // the first page's, when it is in the head
	var ifd func(w *chunkWalker) error
	var subIFDs func(typ uint16, count, value uint32) error
	ifd = func(w *chunkWalker) error {
		c, err := o.take(w, 2, "an IFD")
		if err != nil {
			return err
		}
		n := int(bo.Uint16(c))
		if n == 0 {
			return malformed(f, "an IFD with no entries")
		}
		if 12*n > opts.MaxMetadataBytes {
			return fmtTooLarge(f, "IFD", int64(12*n), opts.MaxMetadataBytes)
		}
		e, err := o.take(w, 12*n+4, "an IFD")
		if err != nil {
			return err
		}
		var width, height int64 = -1, -1
		for i := 0; i < n; i++ {
			en := e[12*i : 12*i+12]
			tag, typ, count := bo.Uint16(en), bo.Uint16(en[2:]), bo.Uint32(en[4:])
			if tag == 330 { // SubIFDs: a DNG's raw image, reduced-resolution copies
				if err := subIFDs(typ, count, bo.Uint32(en[8:])); err != nil {
					return err
				}
				continue
			}
			if tag != 256 && tag != 257 {
				continue
			}
			var v int64
			switch {
			case count != 1:
				return malformed(f, "tag %d with %d values", tag, count)
			case typ == 3: // SHORT
				v = int64(bo.Uint16(en[8:]))
			case typ == 4: // LONG
				v = int64(bo.Uint32(en[8:]))
			default:
				return malformed(f, "tag %d of type %d (want SHORT or LONG)", tag, typ)
			}
			if tag == 256 {
				width = v
			} else {
				height = v
			}
		}
		if width < 0 || height < 0 {
			return malformed(f, "an IFD without ImageWidth and ImageLength")
		}
		if err := opts.checkSize(f, width, height); err != nil {
			return err
		}
		if err := o.frames.add(opts, width*height); err != nil {
			return err
		}
		if o.frames.n == 1 {
			firstW, firstH = width, height
		}
		if nextOff := int64(bo.Uint32(e[12*n:])); nextOff != 0 {
			return o.add(visit{off: nextOff, what: "the next IFD", read: ifd})
		}
		return nil
	}
	// subIFDs plans the visits of the IFDs a SubIFDs entry points to: its one value is the
	// offset of one, or the offset of an array of count offsets.
	subIFDs = func(typ uint16, count, value uint32) error {
		if typ != 4 && typ != 13 { // LONG or IFD
			return malformed(f, "SubIFDs of type %d", typ)
		}
		if count == 1 {
			return o.add(visit{off: int64(value), what: "a SubIFD", read: ifd})
		}
		if int64(count) > opts.MaxFrames {
			return opts.declared(int64(count))
		}
		return o.add(visit{off: int64(value), what: "the SubIFDs' offsets", read: func(w *chunkWalker) error {
			offs, err := o.take(w, 4*int(count), "the SubIFDs' offsets")
			if err != nil {
				return err
			}
			for i := range int(count) {
				if err := o.add(visit{off: int64(bo.Uint32(offs[4*i:])), what: "a SubIFD", read: ifd}); err != nil {
					return err
				}
			}
			return nil
		}})
	}
	first := int64(bo.Uint32(b[4:]))
	if first < 8 {
		return Result{}, malformed(f, "the first IFD at offset %d, inside the header", first)
	}
	if err := o.add(visit{off: first, what: "the first IFD", read: ifd}); err != nil {
		return Result{}, err
	}
	res, err := o.start("tiff")
	res.Width, res.Height = firstW, firstH
	return res, err
}
