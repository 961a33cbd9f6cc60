package imageguard

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"
)

// HEIF (ISO/IEC 23008-12) and AVIF (AV1 Image File Format) are ISO base media files: an ftyp
// box, a meta box that describes the items (iinf: each item's type; iloc: where its bytes are;
// iprp: its properties, among them ispe, the size; idat: small items' bytes held in the meta
// box itself), then mdat, the items' bytes. The image may be a grid of tiles (item type
// "grid", its description giving the output size) or an overlay ("iovl"). EXIF is an item of
// type "Exif" (a 4-byte offset to the TIFF header, then usually "Exif\0\0" and the TIFF
// structure; ISO 23008-12 Annex A), XMP an item of type "mime" and content type
// application/rdf+xml. Their bytes are usually in mdat, after the meta box.
//
// The guard holds everything up to the end of the meta box (at most MaxMetadataBytes), reads
// the sizes there, and, with StripGPS or StripAll, walks the top-level boxes that follow as
// they stream, holding only the extents of the EXIF and XMP items as they pass and rewriting
// them in place: nothing moves, so every offset of iloc stays valid.

// heifBrands are the major brands that gabriel-vasile/mimetype names image/heic, image/heif,
// their -sequence forms, and image/avif: the files the type policy admits as images.
var heifBrands = map[string]string{
	"heic": "heif", "heix": "heif", "hevc": "heif", "hevx": "heif",
	"mif1": "heif", "heim": "heif", "heis": "heif", "avic": "heif",
	"msf1": "heif", "hevm": "heif", "hevs": "heif", "avcs": "heif",
	"avif": "avif", "avis": "avif",
}

// errSequence refuses an image sequence, in every mode: its frames are not counted (against
// MaxFrames), and its tracks can carry a location (udta) the guard does not walk.
func errSequence() error {
	return malformed("HEIF", "an image sequence (moov box): the guard does not count its frames or walk its tracks")
}

func isHEIF(head []byte) bool {
	return len(head) >= 12 && string(head[4:8]) == "ftyp" && heifBrands[string(head[8:12])] != ""
}

// xmpUUID is the usertype of the uuid box in which the XMP specification (part 3) puts XMP in
// an ISO base media file; canonUUID that of Canon's box (HIF and CR3 files), whose CMT1-CMT4
// boxes hold IFD0, the Exif IFD, the maker notes and the GPS IFD as TIFF structures.
const (
	xmpUUID   = "\xbe\x7a\xcf\xcb\x97\xa9\x42\xe8\x9c\x71\x99\x94\x91\xe3\xaf\xac"
	canonUUID = "\x85\xc0\xb6\x87\x82\x0f\x11\xe0\x81\x11\xf4\xce\x46\x2b\x6a\x48"
)

type heifItem struct {
	id          uint32
	described   bool   // an infe box was found for it
	typ         string // infe item_type; "" for infe versions 0 and 1
	contentType string
	encoding    string
	method      int    // iloc construction method: 0 file offsets, 1 idat, 2 another item
	dataRef     uint16 // 0: this file
	located     bool
	extents     []heifExtent
	props       []int // indexes into ipco, from 0
}

type heifExtent struct{ off, n uint64 }

func (it *heifItem) isExif() bool { return it.typ == "Exif" }

// derived says whether the item is an image made of others, whose description gives its size:
// a grid of tiles or an overlay (ISO 23008-12 §6.6.2.3, §6.6.2.4).
func (it *heifItem) derived() bool { return it.typ == "grid" || it.typ == "iovl" }

// checkDerived reads the output size of a grid's or an overlay's description and checks it.
func checkDerived(f string, it *heifItem, b []byte, opts Options) error {
	r := &isoReader{b: b}
	r.u8() // version
	wide := r.u8()&1 != 0
	if it.typ == "grid" {
		r.bytes(2) // rows_minus_one, columns_minus_one
	} else {
		r.bytes(8) // canvas_fill_value, four 16-bit channels
	}
	n := 2
	if wide {
		n = 4
	}
	w, h := int64(r.uint(n)), int64(r.uint(n))
	if r.short {
		return malformed(f, "the %s item %d's description is cut short", it.typ, it.id)
	}
	return opts.checkSize(f, w, h)
}

func (it *heifItem) isXMP() bool {
	return (it.typ == "mime" || it.typ == "") && (it.contentType == "application/rdf+xml" || it.contentType == "application/xmp+xml")
}

type heifMeta struct {
	primary    uint32
	hasPrimary bool
	items      map[uint32]*heifItem
	ids        []uint32 // in iinf/iloc order
	props      []isoBox
	idat       []byte
	idatAt     int      // offset of idat's payload in the file
	other      []isoBox // ilst, keys, xml, bxml: metadata boxes of the meta box itself
	extents    int      // in all items
	tooMany    bool     // more than maxHEIFItems items or maxHEIFExtents extents
}

// Bounds on what a meta box may describe, so that 1 MiB of it cannot cost much more: an
// iPhone's photo has about a hundred items, each in one extent.
const (
	maxHEIFItems   = 1 << 14
	maxHEIFExtents = 1 << 16
)

// item gives the item id, described or not yet. Past maxHEIFItems it gives a stand-in and
// sets tooMany, for parseHEIFMeta to refuse the file.
func (m *heifMeta) item(id uint32) *heifItem {
	it := m.items[id]
	if it == nil {
		if len(m.items) >= maxHEIFItems {
			m.tooMany = true
			return &heifItem{}
		}
		it = &heifItem{id: id}
		m.items[id] = it
		m.ids = append(m.ids, id)
	}
	return it
}

func guardHEIF(s *source, opts Options) (Result, error) {
	const f = "HEIF"
	format := heifBrands[string(s.win[8:12])]
	var meta *heifMeta
	var xmpBoxes, canonBoxes []isoBox // top-level uuid boxes of XMP, of Canon's, before meta
	for meta == nil {
		start := s.pos
		h, err := s.take(8)
		if err != nil {
			return Result{}, truncation(f, err, "the boxes before the meta box")
		}
		size, typ, hdr := uint64(binary.BigEndian.Uint32(h)), string(h[4:8]), 8
		if size == 1 {
			l, err := s.take(8)
			if err != nil {
				return Result{}, truncation(f, err, "a box header")
			}
			size, hdr = binary.BigEndian.Uint64(l), 16
		}
		switch {
		case start == 0 && typ != "ftyp":
			return Result{}, malformed(f, "the first box is not ftyp")
		case typ == "mdat":
			return Result{}, malformed(f, "the media data (mdat) comes before the meta box: the image's size and metadata cannot be read before its data passes")
		case typ == "moov":
			return Result{}, errSequence()
		case size == 0:
			return Result{}, malformed(f, "box %q runs to the end of the file before the meta box", printable(typ))
		case size < uint64(hdr):
			return Result{}, malformed(f, "box %q of %d bytes", printable(typ), size)
		case size-uint64(hdr) > uint64(s.limit+len(s.win)):
			return Result{}, fmt.Errorf("%w: HEIF box %q of %d bytes before the end of the meta box (at most %d)",
				ErrMetadataTooLarge, printable(typ), size, s.limit)
		}
		payload, err := s.take(int(size) - hdr)
		if err != nil {
			return Result{}, truncation(f, err, "box "+printable(typ))
		}
		switch typ {
		case "meta":
			if meta, err = parseHEIFMeta(f, payload, s.pos-len(payload)); err != nil {
				return Result{}, err
			}
		case "uuid":
			bx := isoBox{typ: typ, payload: payload[min(16, len(payload)):], at: s.pos - len(payload) + 16, hdr: hdr + 16}
			switch {
			case len(payload) < 16:
			case string(payload[:16]) == xmpUUID:
				xmpBoxes = append(xmpBoxes, bx)
			case string(payload[:16]) == canonUUID:
				canonBoxes = append(canonBoxes, bx)
			}
		}
	}
	w, h, err := meta.size(f, opts)
	if err != nil {
		return Result{}, err
	}
	res := Result{Removed: removed(opts), Format: format, Width: w, Height: h}
	end := uint64(s.pos)
	prefix := slices.Clone(s.win[:s.pos])
	zones, err := meta.plan(f, prefix, end, opts)
	if err != nil {
		return Result{}, err
	}
	if opts.Strip == StripOff {
		xmpBoxes, canonBoxes = nil, nil
	}
	for _, bx := range xmpBoxes { // XMP in a uuid box (XMP Specification Part 3 §1.2.7)
		if opts.Strip == StripAll || bytes.Contains(bx.payload, []byte("GPS")) {
			copy(prefix[bx.at-bx.hdr+4:], "free")
		}
	}
	for _, bx := range canonBoxes { // the GPS IFD (CMT4) goes; with StripAll the others too
		boxes, err := isoChildren(f, bx.payload, bx.at)
		if err != nil {
			return Result{}, err
		}
		for _, c := range boxes {
			if c.typ == "CMT4" || opts.Strip == StripAll && (c.typ == "CMT1" || c.typ == "CMT2" || c.typ == "CMT3") {
				copy(prefix[c.at-c.hdr+4:], "free")
			}
		}
	}
	// Prefix is the window's copy: what was read past the meta box moves to an array of its
	// own, so that the window's can go. What the guard holds is then the prefix and one item's
	// bytes at a time, each at most the window: twice the window, as the server's memory
	// budget counts it.
	s.win, s.pos = slices.Clone(s.unread()), 0
	s.bounded = false
	res.Prefix = prefix
	res.Rest = &heifWalker{src: s, abs: end, zones: zones, opts: opts}
	res.Wrapped = true
	return res, nil
}

// parseHEIFMeta reads the meta box's payload; at is its offset in the file.
func parseHEIFMeta(f string, b []byte, at int) (*heifMeta, error) {
	if len(b) < 4 {
		return nil, malformed(f, "meta box of %d bytes", len(b))
	}
	boxes, err := isoChildren(f, b[4:], at+4)
	if err != nil {
		return nil, err
	}
	m := &heifMeta{items: map[uint32]*heifItem{}}
	seen := map[string]bool{}
	for _, bx := range boxes {
		switch bx.typ {
		case "hdlr", "pitm", "iinf", "iloc", "iprp", "idat":
			if seen[bx.typ] {
				return nil, malformed(f, "two %s boxes in the meta box", bx.typ)
			}
			seen[bx.typ] = true
		}
		r := &isoReader{b: bx.payload}
		switch bx.typ {
		case "hdlr":
			r.bytes(8) // version, flags, pre_defined
			if h := string(r.bytes(4)); h != "pict" && !r.short {
				return nil, malformed(f, "the meta box's handler is %q, not pict", printable(h))
			}
		case "pitm":
			if r.u8() == 0 {
				r.bytes(3)
				m.primary = uint32(r.u16())
			} else {
				r.bytes(3)
				m.primary = r.u32()
			}
			m.hasPrimary = true
		case "iinf":
			err = m.parseIinf(f, r, bx.at)
		case "iloc":
			err = m.parseIloc(f, r)
		case "iprp":
			err = m.parseIprp(f, bx)
		case "idat":
			m.idat, m.idatAt = bx.payload, bx.at
		case "ilst", "keys", "xml ", "bxml":
			m.other = append(m.other, bx)
		}
		if err != nil {
			return nil, err
		}
		if m.tooMany {
			return nil, malformed(f, "more than %d items or %d extents", maxHEIFItems, maxHEIFExtents)
		}
		if r.short {
			return nil, malformed(f, "%s box cut short", bx.typ)
		}
	}
	if !seen["hdlr"] {
		return nil, malformed(f, "the meta box has no handler (hdlr)")
	}
	return m, nil
}

func (m *heifMeta) parseIinf(f string, r *isoReader, at int) error {
	if r.u8() == 0 {
		r.bytes(3)
		r.u16() // entry_count: the boxes that follow are what counts
	} else {
		r.bytes(3)
		r.u32()
	}
	if r.short {
		return nil
	}
	boxes, err := isoChildren(f, r.b[r.p:], at+r.p)
	if err != nil {
		return err
	}
	r.p = len(r.b)
	for _, bx := range boxes {
		if bx.typ != "infe" {
			continue
		}
		e := &isoReader{b: bx.payload}
		v := e.u8()
		e.bytes(3)
		var it *heifItem
		switch {
		case v >= 2:
			id := uint32(0)
			if v == 2 {
				id = uint32(e.u16())
			} else {
				id = e.u32()
			}
			e.u16() // item_protection_index
			it = m.item(id)
			it.typ = string(e.bytes(4))
			e.str() // item_name
			if it.typ == "mime" {
				it.contentType = e.str()
				if e.p < len(e.b) {
					it.encoding = e.str()
				}
			}
		default:
			it = m.item(uint32(e.u16()))
			e.u16()
			e.str()
			it.contentType = e.str()
			if e.p < len(e.b) {
				it.encoding = e.str()
			}
		}
		if e.short {
			return malformed(f, "infe box cut short")
		}
		if it.described {
			return malformed(f, "item %d described twice in iinf", it.id)
		}
		it.described = true
	}
	return nil
}

func (m *heifMeta) parseIloc(f string, r *isoReader) error {
	v := r.u8()
	r.bytes(3)
	if v > 2 {
		return malformed(f, "iloc version %d", v)
	}
	sizes := r.u16()
	offSize, lenSize, baseSize, idxSize := int(sizes>>12), int(sizes>>8&15), int(sizes>>4&15), int(sizes&15)
	if v == 0 {
		idxSize = 0
	}
	for _, n := range []int{offSize, lenSize, baseSize, idxSize} {
		if n != 0 && n != 4 && n != 8 {
			return malformed(f, "iloc field size %d", n)
		}
	}
	count := uint32(0)
	if v < 2 {
		count = uint32(r.u16())
	} else {
		count = r.u32()
	}
	for range count {
		if r.short {
			return nil
		}
		id := uint32(0)
		if v < 2 {
			id = uint32(r.u16())
		} else {
			id = r.u32()
		}
		it := m.item(id)
		if it.located {
			return malformed(f, "item %d located twice in iloc", id)
		}
		it.located = true
		if v >= 1 {
			it.method = int(r.u16() & 15)
		}
		it.dataRef = r.u16()
		base := r.uint(baseSize)
		n := r.u16()
		if m.extents += int(n); m.extents > maxHEIFExtents {
			m.tooMany = true
			return nil
		}
		for range n {
			r.uint(idxSize)
			off, length := r.uint(offSize), r.uint(lenSize)
			abs, ok := addOffset(base, off)
			if !ok || length > 1<<62 {
				return malformed(f, "item %d has an extent past any file's end", id)
			}
			it.extents = append(it.extents, heifExtent{abs, length})
		}
	}
	return nil
}

func (m *heifMeta) parseIprp(f string, bx isoBox) error {
	boxes, err := isoChildren(f, bx.payload, bx.at)
	if err != nil {
		return err
	}
	for _, c := range boxes {
		switch c.typ {
		case "ipco":
			if m.props != nil {
				return malformed(f, "two ipco boxes")
			}
			if m.props, err = isoChildren(f, c.payload, c.at); err != nil {
				return err
			}
			if m.props == nil {
				m.props = []isoBox{}
			}
		case "ipma":
			r := &isoReader{b: c.payload}
			v := r.u8()
			flags := r.bytes(3)
			n := r.u32()
			for range n {
				if r.short {
					break
				}
				id := uint32(0)
				if v < 1 {
					id = uint32(r.u16())
				} else {
					id = r.u32()
				}
				it := m.item(id)
				k := r.u8()
				for range k {
					if flags[2]&1 != 0 {
						it.props = append(it.props, int(r.u16()&0x7fff)-1)
					} else {
						it.props = append(it.props, int(r.u8()&0x7f)-1)
					}
				}
			}
			if r.short {
				return malformed(f, "ipma box cut short")
			}
		}
	}
	return nil
}

// size checks every ispe (the primary image's, its tiles', thumbnails', auxiliary images')
// and a grid's output size against the limits, and returns the primary image's size.
func (m *heifMeta) size(f string, opts Options) (int64, int64, error) {
	for _, p := range m.props {
		if p.typ != "ispe" {
			continue
		}
		r := &isoReader{b: p.payload}
		r.u32()
		w, h := int64(r.u32()), int64(r.u32())
		if r.short {
			return 0, 0, malformed(f, "ispe box cut short")
		}
		if err := opts.checkSize(f, w, h); err != nil {
			return 0, 0, err
		}
	}
	if !m.hasPrimary {
		return 0, 0, malformed(f, "no primary item (pitm)")
	}
	prim := m.items[m.primary]
	if prim == nil {
		return 0, 0, malformed(f, "the primary item %d is not described", m.primary)
	}
	var w, h int64
	for _, i := range prim.props {
		if i >= 0 && i < len(m.props) && m.props[i].typ == "ispe" {
			r := &isoReader{b: m.props[i].payload}
			r.u32()
			w, h = int64(r.u32()), int64(r.u32())
		}
	}
	if w == 0 || h == 0 {
		return 0, 0, malformed(f, "the primary item has no size (ispe)")
	}
	for _, id := range m.ids { // grids and overlays whose description is in idat
		it := m.items[id]
		if !it.derived() || !it.located {
			continue
		}
		switch {
		case it.method == 1:
			b, ok := m.idatBytes(it)
			if !ok {
				return 0, 0, malformed(f, "the %s item %d runs past idat", it.typ, it.id)
			}
			if err := checkDerived(f, it, b, opts); err != nil {
				return 0, 0, err
			}
		case it.method != 0 || it.dataRef != 0:
			return 0, 0, malformed(f, "the %s item %d is not in this file's mdat or idat: its size cannot be read", it.typ, it.id)
		}
	}
	return w, h, nil
}

// idatBytes gives an item's bytes held in idat.
func (m *heifMeta) idatBytes(it *heifItem) ([]byte, bool) {
	var b []byte
	for _, e := range it.extents {
		if e.n == 0 || e.off > uint64(len(m.idat)) || e.n > uint64(len(m.idat))-e.off {
			return nil, false
		}
		b = append(b, m.idat[e.off:e.off+e.n]...)
	}
	return b, true
}

// heifZone is one metadata item's span of the file after the meta box: held whole as it passes.
type heifZone struct {
	lo, hi uint64
	item   *heifItem // an Exif or XMP item, rewritten; or a grid or overlay, whose size is checked
}

// plan finds the EXIF and XMP items (with StripGPS or StripAll) and the grids and overlays
// whose description is in mdat. The metadata items in idat are rewritten at once in prefix
// (the file up to the end of the meta box, end bytes), and so are the meta box's own metadata
// boxes; the others become zones, sorted, for the walker. What cannot be followed exactly is
// refused.
func (m *heifMeta) plan(f string, prefix []byte, end uint64, opts Options) ([]heifZone, error) {
	strip := opts.Strip != StripOff
	var zones, inIdat []heifZone
	for _, id := range m.ids {
		it := m.items[id]
		metadata := it.isExif() || it.isXMP()
		if !(metadata && strip || it.derived() && it.method == 0) || !it.located || len(it.extents) == 0 {
			continue
		}
		what := it.typ
		if it.isXMP() {
			what = "XMP"
		}
		switch {
		case it.isXMP() && it.encoding != "":
			return nil, malformed(f, "the XMP item is %s-encoded: the guard cannot read it for GPS", printable(it.encoding))
		case it.dataRef != 0:
			return nil, malformed(f, "the %s item is in another file (data reference %d)", what, it.dataRef)
		case it.method > 1:
			return nil, malformed(f, "the %s item is built from another item (construction method %d)", what, it.method)
		}
		sorted := slices.SortedFunc(slices.Values(it.extents), func(a, b heifExtent) int { return cmpUint(a.off, b.off) })
		for i, e := range sorted {
			if e.n == 0 {
				return nil, malformed(f, "the %s item has an extent that runs to the end", what)
			}
			if i > 0 && e.off < sorted[i-1].off+sorted[i-1].n {
				return nil, malformed(f, "the %s item's extents overlap", what)
			}
		}
		lo, hi := sorted[0].off, sorted[len(sorted)-1].off+sorted[len(sorted)-1].n
		if hi-lo > uint64(opts.MaxMetadataBytes) {
			return nil, fmt.Errorf("%w: HEIF %s item of %d bytes (at most %d)", ErrMetadataTooLarge, printable(what), hi-lo, opts.MaxMetadataBytes)
		}
		z := heifZone{lo: lo, hi: hi, item: it}
		if it.method == 1 {
			if hi > uint64(len(m.idat)) {
				return nil, malformed(f, "the %s item runs past idat", what)
			}
			inIdat = append(inIdat, z)
			continue
		}
		if lo < end {
			return nil, malformed(f, "the %s item lies before the end of the meta box", what)
		}
		zones = append(zones, z)
	}
	for _, list := range [][]heifZone{zones, inIdat} {
		slices.SortFunc(list, func(a, b heifZone) int { return cmpUint(a.lo, b.lo) })
		for i := 1; i < len(list); i++ {
			if list[i].lo < list[i-1].hi {
				return nil, malformed(f, "items %d and %d overlap", list[i-1].item.id, list[i].item.id)
			}
		}
	}
	for _, z := range inIdat {
		at := uint64(m.idatAt)
		if err := rewriteItem(f, z.item, prefix[at+z.lo:at+z.hi], z.lo, opts.Strip); err != nil {
			return nil, err
		}
	}
	if strip {
		m.stripBoxes(prefix, opts.Strip)
	}
	return zones, nil
}

// stripBoxes removes the meta box's own metadata boxes, which exiftool reads too: ilst and
// keys (QuickTime metadata, which can hold com.apple.quicktime.location.ISO6709 or ©xyz), xml
// and bxml (XML, binary XML). A box removed is renamed free, which readers skip at any level.
func (m *heifMeta) stripBoxes(prefix []byte, mode Mode) {
	location := false
	for _, bx := range m.other {
		low := bytes.ToLower(bx.payload)
		if (bx.typ == "ilst" || bx.typ == "keys") &&
			(bytes.Contains(low, []byte("location")) || bytes.Contains(low, []byte("gps")) || bytes.Contains(bx.payload, []byte("\xa9xyz"))) {
			location = true
		}
	}
	for _, bx := range m.other {
		switch {
		case mode == StripAll, bx.typ == "bxml",
			(bx.typ == "ilst" || bx.typ == "keys") && location,
			bytes.Contains(bx.payload, []byte("GPS")):
			copy(prefix[bx.at-bx.hdr+4:], "free")
		}
	}
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// rewriteItem applies mode to an item whose extents lie in span, which starts at offset lo:
// the extents are joined, rewritten, and put back in place.
func rewriteItem(f string, it *heifItem, span []byte, lo uint64, mode Mode) error {
	data := gather(it, span, lo)
	var err error
	if it.isExif() {
		err = rewriteHEIFExif(f, data, mode)
	} else if mode == StripAll || bytes.Contains(data, []byte("GPS")) {
		blankXMP(data)
	}
	if err != nil {
		return err
	}
	for _, e := range it.extents {
		copy(span[e.off-lo:], data[:e.n])
		data = data[e.n:]
	}
	return nil
}

// gather joins an item's extents, which lie in span, which starts at offset lo. An item in one
// extent, as they all are in practice, is span's own bytes, not a copy.
func gather(it *heifItem, span []byte, lo uint64) []byte {
	if len(it.extents) == 1 {
		e := it.extents[0]
		return span[e.off-lo : e.off-lo+e.n]
	}
	var data []byte
	for _, e := range it.extents {
		data = append(data, span[e.off-lo:e.off-lo+e.n]...)
	}
	return data
}

// emptyXMP is an XMP packet with nothing in it; blankXMP writes it over a packet, padded
// with spaces (which XML allows after the root element).
const emptyXMP = `<x:xmpmeta xmlns:x="adobe:ns:meta/"/>`

func blankXMP(b []byte) {
	for i := range b {
		b[i] = ' '
	}
	if len(b) >= len(emptyXMP) {
		copy(b, emptyXMP)
	}
}

// rewriteHEIFExif rewrites an Exif item in place: a 4-byte offset to the TIFF header, then
// the TIFF structure. With StripGPS the GPS IFD goes as in a JPEG; with StripAll the TIFF
// structure is replaced by one with only the Orientation (or no tag at all), then zeros.
func rewriteHEIFExif(f string, data []byte, mode Mode) error {
	var tiff []byte
	if len(data) >= 4 {
		if n := uint64(binary.BigEndian.Uint32(data)); n <= uint64(len(data)-4) {
			tiff = data[4+n:]
		}
	}
	if bytes.HasPrefix(tiff, []byte("Exif\x00\x00")) { // an offset of 0 before JPEG's APP1 header
		tiff = tiff[6:]
	}
	if tiff == nil {
		if mode == StripAll {
			clear(data)
			return nil
		}
		return malformed(f, "the Exif item's TIFF header offset lies past its end")
	}
	out, changed, err := rewriteExif(tiff, mode, f)
	if err != nil || !changed {
		return err
	}
	if out == nil { // StripAll without an orientation
		out = []byte("MM\x00*\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00")
	}
	clear(tiff)
	if len(out) <= len(tiff) {
		copy(tiff, out)
	}
	return nil
}

// heifWalker streams the top-level boxes after the meta box: it passes them through and holds
// each zone whole as it passes: a metadata item's extents, rewritten in place, or a grid's or
// overlay's description, whose size is checked. It refuses an image sequence (moov) in every
// mode; with StripGPS or StripAll, also a second meta box, and it renames an XMP or Canon uuid
// box free, which readers skip.
type heifWalker struct {
	src    *source
	abs    uint64 // offset in the file of the next byte of src
	zones  []heifZone
	opts   Options
	inBox  bool // abs is inside a box's payload
	toEnd  bool // that box runs to the end of the file
	boxEnd uint64
	mdat   bool // that box is mdat
	out    []byte
	hdr    [32]byte
	done   bool
	err    error
}

func (w *heifWalker) Read(p []byte) (int, error) {
	for len(p) > 0 {
		if len(w.out) > 0 {
			n := copy(p, w.out)
			w.out = w.out[n:]
			return n, nil
		}
		lim, err := w.advance()
		if err != nil {
			return 0, err
		}
		if lim == 0 {
			continue // out was set
		}
		n, err := w.src.Read(p[:min(uint64(len(p)), lim)])
		if err = w.passed(n, err); n > 0 || err != nil {
			return n, err
		}
	}
	return 0, nil
}

// advance walks to what goes out next: it sets out, or returns how many bytes of src may pass
// as they are now (math.MaxUint64 in a box that runs to the end of the file), or the error
// that ends the walk (io.EOF at the end of the file).
func (w *heifWalker) advance() (uint64, error) {
	for len(w.out) == 0 {
		switch {
		case w.err != nil:
			return 0, w.err
		case w.done:
			return 0, io.EOF
		case len(w.zones) > 0 && w.abs == w.zones[0].lo:
			w.err = w.zone()
		case !w.inBox:
			w.err = w.box()
		default:
			lim := uint64(math.MaxUint64)
			if !w.toEnd {
				lim = w.boxEnd - w.abs
			}
			if len(w.zones) > 0 {
				lim = min(lim, w.zones[0].lo-w.abs)
			}
			return lim, nil
		}
	}
	return 0, nil
}

// passed counts n bytes passed as they are, which src gave with err, and returns the error to
// give with them.
func (w *heifWalker) passed(n int, err error) error {
	const f = "HEIF"
	w.abs += uint64(n)
	if !w.toEnd && w.abs == w.boxEnd {
		w.inBox = false
	}
	if err != io.EOF {
		return err
	}
	switch {
	case w.toEnd && len(w.zones) == 0:
		w.done = true
	case len(w.zones) > 0:
		w.err = malformed(f, "the file ends before its metadata item at offset %d", w.zones[0].lo)
	case w.inBox:
		w.err = malformed(f, "the file ends inside a box")
	}
	return w.err
}

// box reads the next top-level box's header.
func (w *heifWalker) box() error {
	const f = "HEIF"
	n, err := readAtLeast(w.src, w.hdr[:8], 8)
	if n == 0 && err == errTruncated {
		if len(w.zones) > 0 {
			return malformed(f, "the file ends before its metadata item at offset %d", w.zones[0].lo)
		}
		w.done = true
		return nil
	}
	if err != nil {
		return truncation(f, err, "a box header")
	}
	have := 8
	more := func(k int) error {
		_, err := readAtLeast(w.src, w.hdr[have:have+k], k)
		have += k
		return truncation(f, err, "a box header")
	}
	size, typ, hdr := uint64(binary.BigEndian.Uint32(w.hdr[:])), string(w.hdr[4:8]), 8
	if size == 1 {
		if err := more(8); err != nil {
			return err
		}
		size, hdr = binary.BigEndian.Uint64(w.hdr[8:]), 16
	}
	if size != 0 && size < uint64(hdr) {
		return malformed(f, "box %q of %d bytes", printable(typ), size)
	}
	strip := w.opts.Strip != StripOff
	switch {
	case typ == "meta" && strip:
		return malformed(f, "a second meta box")
	case typ == "moov":
		return errSequence()
	case typ == "uuid" && strip && (size == 0 || size >= uint64(hdr)+16):
		if err := more(16); err != nil {
			return err
		}
		if u := string(w.hdr[hdr : hdr+16]); u == xmpUUID || u == canonUUID { // seen too late to be read: removed whole
			copy(w.hdr[4:], "free")
		}
	}
	start := w.abs
	w.out = w.hdr[:have]
	w.abs += uint64(have)
	w.toEnd, w.mdat = size == 0, typ == "mdat"
	if !w.toEnd {
		end, ok := addOffset(start, size)
		if !ok || end < w.abs {
			return malformed(f, "box %q of %d bytes", printable(typ), size)
		}
		w.boxEnd = end
	}
	w.inBox = w.toEnd || w.abs < w.boxEnd
	if len(w.zones) > 0 && w.zones[0].lo < w.abs {
		return malformed(f, "a metadata item overlaps a box header at offset %d", w.zones[0].lo)
	}
	return nil
}

// zone holds the next metadata item's span as it passes, and rewrites it.
func (w *heifWalker) zone() error {
	const f = "HEIF"
	z := w.zones[0]
	if !w.inBox || !w.mdat || !w.toEnd && z.hi > w.boxEnd {
		return malformed(f, "a metadata item at offset %d is not inside the media data (mdat)", z.lo)
	}
	buf := make([]byte, z.hi-z.lo)
	if _, err := readAtLeast(w.src, buf, len(buf)); err != nil {
		return truncation(f, err, "a metadata item")
	}
	var err error
	if z.item.derived() {
		err = checkDerived(f, z.item, gather(z.item, buf, z.lo), w.opts)
	} else {
		err = rewriteItem(f, z.item, buf, z.lo, w.opts.Strip)
	}
	if err != nil {
		return err
	}
	w.out = buf
	w.abs = z.hi
	w.zones = w.zones[1:]
	if !w.toEnd && w.abs == w.boxEnd {
		w.inBox = false
	}
	return nil
}
