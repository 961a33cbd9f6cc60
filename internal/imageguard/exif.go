package imageguard

import (
	"encoding/binary"
	"errors"
	"slices"
)

// An EXIF block is a TIFF structure (TIFF 6.0 §2, Exif 2.32 §4.6): an 8-byte header (byte order,
// 42, offset of IFD0), then IFDs of 12-byte entries, each a tag, a type, a count and a value
// of at most 4 bytes or the offset of the value. IFD0 may point to the Exif IFD (0x8769) and
// the GPS IFD (0x8825); the Exif IFD to the Interoperability IFD (0xA005); IFD0's next-IFD
// offset to IFD1 (the thumbnail's).

const (
	tagOrientation = 0x0112
	tagExifIFD     = 0x8769
	tagGPSIFD      = 0x8825
	tagInteropIFD  = 0xA005
	tagSubIFDs     = 0x014A

	maxIFDEntries = 1000 // real IFDs have dozens; 65,535 is a bomb or garbage
	maxIFDs       = 64
)

var typeSizes = [...]int{1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}

// exifBlock is a TIFF structure walked once: where its IFDs are and which entries point to GPS.
type exifBlock struct {
	b           []byte
	bo          binary.ByteOrder
	format      string // for errors
	ifds        []uint32
	orientation uint16 // from IFD0, 0 when absent
	gpsParents  []uint32
	gpsIFDs     []uint32
}

func parseExif(b []byte, format string) (*exifBlock, error) {
	e := &exifBlock{b: b, format: format}
	if len(b) < 8 {
		return nil, malformed(format, "EXIF block of %d bytes", len(b))
	}
	switch string(b[:4]) {
	case "II*\x00":
		e.bo = binary.LittleEndian
	case "MM\x00*":
		e.bo = binary.BigEndian
	default:
		return nil, malformed(format, "EXIF block without a TIFF header")
	}
	type todo struct {
		off   uint32
		chain bool // IFD0, IFD1...: follow the next-IFD offset
		gps   bool
	}
	queue := []todo{{off: e.bo.Uint32(b[4:8]), chain: true}}
	seen := map[uint32]bool{}
	first := true
	for len(queue) > 0 {
		t := queue[0]
		queue = queue[1:]
		if seen[t.off] {
			return nil, malformed(format, "EXIF IFD offsets loop (IFD at %d reached twice)", t.off)
		}
		seen[t.off] = true
		if len(seen) > maxIFDs {
			return nil, malformed(format, "EXIF block with more than %d IFDs", maxIFDs)
		}
		n, err := e.entries(t.off)
		partial := false
		if err != nil && !t.gps && errors.As(err, new(*pastEnd)) {
			// Cameras and editors leave IFDs that run past the block (a thumbnail's IFD1 cut
			// off, say). Readers read what fits, so that is what is walked for GPS pointers;
			// nothing past the end can hold one.
			n, partial, err = max(0, (len(b)-int(t.off)-2)/12), true, nil
			if uint64(t.off)+2 > uint64(len(b)) {
				n = 0
			}
		}
		if err != nil {
			return nil, err
		}
		e.ifds = append(e.ifds, t.off)
		if t.gps {
			e.gpsIFDs = append(e.gpsIFDs, t.off)
			if err := e.checkValues(t.off, n); err != nil {
				return nil, err
			}
			continue // a GPS IFD points nowhere a reader follows
		}
		for i := range n {
			ent := e.b[int(t.off)+2+12*i:]
			tag, typ, count := e.bo.Uint16(ent), e.bo.Uint16(ent[2:]), e.bo.Uint32(ent[4:])
			switch tag {
			case tagOrientation:
				if first && typ == 3 && count == 1 {
					e.orientation = e.bo.Uint16(ent[8:])
				}
			case tagExifIFD, tagGPSIFD, tagInteropIFD, tagSubIFDs:
				offs, err := e.pointers(tag, typ, count, ent[8:12])
				if err != nil {
					return nil, err
				}
				if tag == tagGPSIFD {
					if partial {
						return nil, malformed(format, "EXIF GPS pointer in an IFD that runs past the end of the block")
					}
					e.gpsParents = append(e.gpsParents, t.off)
				}
				for _, o := range offs {
					queue = append(queue, todo{off: o, gps: tag == tagGPSIFD})
				}
			}
		}
		if t.chain && !partial {
			if next := e.bo.Uint32(b[int(t.off)+2+12*n:]); next != 0 {
				queue = append(queue, todo{off: next, chain: true})
			}
		}
		first = false
	}
	return e, nil
}

// entries checks that the IFD at off lies inside the block and returns its entry count.
func (e *exifBlock) entries(off uint32) (int, error) {
	if uint64(off)+2 > uint64(len(e.b)) {
		return 0, &pastEnd{malformed(e.format, "EXIF IFD offset %d past the end of the %d-byte block", off, len(e.b))}
	}
	n := int(e.bo.Uint16(e.b[off:]))
	if n > maxIFDEntries {
		return 0, malformed(e.format, "EXIF IFD with %d entries (at most %d)", n, maxIFDEntries)
	}
	if int(off)+2+12*n+4 > len(e.b) {
		return 0, &pastEnd{malformed(e.format, "EXIF IFD of %d entries runs past the end of the block", n)}
	}
	return n, nil
}

// pastEnd marks an IFD that does not fit in its block: an error for a GPS IFD, which must be
// overwritten whole, and read as far as it goes for the others.
type pastEnd struct{ error }

func (p *pastEnd) Unwrap() error { return p.error }

// pointers reads the IFD offsets of a pointer tag.
func (e *exifBlock) pointers(tag, typ uint16, count uint32, field []byte) ([]uint32, error) {
	if typ != 4 && typ != 13 || count == 0 || count > maxIFDs || tag != tagSubIFDs && count != 1 {
		return nil, malformed(e.format, "EXIF pointer tag 0x%04X of type %d and count %d", tag, typ, count)
	}
	if count == 1 {
		return []uint32{e.bo.Uint32(field)}, nil
	}
	at := uint64(e.bo.Uint32(field))
	if at+4*uint64(count) > uint64(len(e.b)) {
		return nil, malformed(e.format, "EXIF SubIFDs offsets past the end of the block")
	}
	offs := make([]uint32, count)
	for i := range offs {
		offs[i] = e.bo.Uint32(e.b[at+4*uint64(i):])
	}
	return offs, nil
}

// checkValues makes sure every value of the IFD at off that lies outside it is inside the block,
// so that it can be overwritten.
func (e *exifBlock) checkValues(off uint32, n int) error {
	for i := range n {
		if _, _, err := e.valueRange(off, i); err != nil {
			return err
		}
	}
	return nil
}

// valueRange gives where entry i's value lies when it is not inside the entry (size > 4).
func (e *exifBlock) valueRange(off uint32, i int) (start, end int, err error) {
	ent := e.b[int(off)+2+12*i:]
	typ, count := e.bo.Uint16(ent[2:]), e.bo.Uint32(ent[4:])
	if int(typ) >= len(typeSizes) || typeSizes[typ] == 0 {
		return 0, 0, nil // unknown type: readers skip it, nothing out of line to find
	}
	size := uint64(typeSizes[typ]) * uint64(count)
	if size <= 4 {
		return 0, 0, nil
	}
	at := uint64(e.bo.Uint32(ent[8:]))
	if at+size > uint64(len(e.b)) {
		return 0, 0, malformed(e.format, "EXIF GPS value past the end of the block")
	}
	return int(at), int(at + size), nil
}

// stripGPS removes every GPS IFD from the block, in place, and reports whether there was one.
// The pointer entries go first (their IFDs are read before anything is zeroed), then the GPS
// IFDs and their values are zeroed; a second walk checks that no GPS pointer is left.
func (e *exifBlock) stripGPS() (bool, error) {
	if len(e.gpsIFDs) == 0 {
		return false, nil
	}
	type zone struct{ start, end int }
	var zones []zone
	for _, off := range e.gpsIFDs {
		n := int(e.bo.Uint16(e.b[off:]))
		for i := range n {
			s, t, err := e.valueRange(off, i)
			if err != nil {
				return false, err
			}
			if t > s {
				zones = append(zones, zone{s, t})
			}
		}
		zones = append(zones, zone{int(off), int(off) + 2 + 12*n + 4})
	}
	for _, off := range slices.Compact(slices.Sorted(slices.Values(e.gpsParents))) {
		e.dropTag(off, tagGPSIFD)
	}
	for _, z := range zones {
		clear(e.b[z.start:z.end])
	}
	again, err := parseExif(e.b, e.format)
	if err != nil {
		return false, err
	}
	if len(again.gpsIFDs) > 0 {
		return false, malformed(e.format, "EXIF GPS pointer left after removal (overlapping IFDs)")
	}
	return true, nil
}

// dropTag removes the entries with tag from the IFD at off: the later entries and the next-IFD
// offset move up, and the freed bytes at the end of the IFD become zeros.
func (e *exifBlock) dropTag(off uint32, tag uint16) {
	n := int(e.bo.Uint16(e.b[off:]))
	ifd := e.b[int(off)+2 : int(off)+2+12*n+4]
	kept := make([]byte, 0, len(ifd))
	for i := range n {
		if ent := ifd[12*i : 12*i+12]; e.bo.Uint16(ent) != tag {
			kept = append(kept, ent...)
		}
	}
	left := len(kept) / 12
	kept = append(kept, ifd[12*n:]...) // the next-IFD offset
	copy(ifd, kept)
	clear(ifd[len(kept):])
	e.bo.PutUint16(e.b[off:], uint16(left))
}

// minimalExif is a TIFF structure with only IFD0's Orientation, in the byte order of bo.
func minimalExif(bo binary.ByteOrder, orientation uint16) []byte {
	b := make([]byte, 26)
	if bo == binary.LittleEndian {
		copy(b, "II*\x00")
	} else {
		copy(b, "MM\x00*")
	}
	bo.PutUint32(b[4:], 8)
	bo.PutUint16(b[8:], 1)
	bo.PutUint16(b[10:], tagOrientation)
	bo.PutUint16(b[12:], 3) // SHORT
	bo.PutUint32(b[14:], 1)
	bo.PutUint16(b[18:], orientation)
	return b // next-IFD offset 0
}

// rewriteExif applies mode to an EXIF block. It returns the new block, or nil to drop it;
// changed is false when the block goes on as it was. The input is never modified.
func rewriteExif(b []byte, mode Mode, format string) (out []byte, changed bool, err error) {
	e, err := parseExif(slices.Clone(b), format)
	if err != nil && mode == StripAll {
		return nil, true, nil // dropped whole: nothing of it is kept, so its structure does not matter
	}
	if err != nil {
		return nil, false, err
	}
	switch mode {
	case StripGPS:
		removed, err := e.stripGPS()
		if err != nil || !removed {
			return b, false, err
		}
		return e.b, true, nil
	case StripAll:
		if e.orientation >= 1 && e.orientation <= 8 {
			return minimalExif(e.bo, e.orientation), true, nil
		}
		return nil, true, nil
	}
	return b, false, nil
}
