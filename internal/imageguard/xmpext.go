package imageguard

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"slices"
)

// ExtendedXMP (XMP Specification Part 3 §1.1.3.1): XMP too large for one JPEG APP1 segment
// continues in APP1 segments that start with xmpExtension, then the 32-character GUID of
// the extension, its full length and the offset of this portion (4 bytes each, big-endian),
// then the portion. A reader joins the portions of one GUID by their offsets, so a tag such
// as exif:GPSLatitude can be cut in two, and no one segment shows "GPS".

const xmpExtension = "http://ns.adobe.com/xmp/extension/\x00"

// extSegment is an ExtendedXMP segment kept in a JPEG's output so far: out[at:at+n].
type extSegment struct {
	at, n   int
	payload []byte // after xmpExtension
}

// dropExtendedXMP removes from out the ExtendedXMP segments of every extension that carries
// GPS once its portions are joined, or whose portions cannot be joined exactly (a portion
// cut short, full lengths that differ, portions that overlap or leave a gap): what a reader
// would make of those cannot be checked. It reports whether anything was removed.
func dropExtendedXMP(out []byte, segs []extSegment) ([]byte, bool) {
	byGUID := map[string][]extSegment{}
	var guids []string
	for _, s := range segs {
		g := ""
		if len(s.payload) >= 32 {
			g = string(s.payload[:32])
		}
		if byGUID[g] == nil {
			guids = append(guids, g)
		}
		byGUID[g] = append(byGUID[g], s)
	}
	var drop []extSegment
	for _, g := range guids {
		if extensionHasGPS(byGUID[g]) {
			drop = append(drop, byGUID[g]...)
		}
	}
	if len(drop) == 0 {
		return out, false
	}
	slices.SortFunc(drop, func(a, b extSegment) int { return cmp.Compare(a.at, b.at) })
	kept := make([]byte, 0, len(out))
	from := 0
	for _, s := range drop {
		kept = append(kept, out[from:s.at]...)
		from = s.at + s.n
	}
	return append(kept, out[from:]...), true
}

// extensionHasGPS joins the portions of one extension and says whether the result may carry
// GPS: it mentions GPS, or the portions cannot be joined exactly.
func extensionHasGPS(segs []extSegment) bool {
	type portion struct {
		off  uint32
		data []byte
	}
	var parts []portion
	var full uint32
	for i, s := range segs {
		if len(s.payload) < 40 {
			return true
		}
		n := binary.BigEndian.Uint32(s.payload[32:])
		if i > 0 && n != full {
			return true
		}
		full = n
		parts = append(parts, portion{binary.BigEndian.Uint32(s.payload[36:]), s.payload[40:]})
	}
	slices.SortStableFunc(parts, func(a, b portion) int { return cmp.Compare(a.off, b.off) })
	var joined []byte
	for _, p := range parts {
		if uint64(p.off) != uint64(len(joined)) {
			return true // a gap or an overlap
		}
		joined = append(joined, p.data...)
	}
	return uint64(len(joined)) != uint64(full) || bytes.Contains(joined, []byte("GPS"))
}
