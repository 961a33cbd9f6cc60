// Package imageguard checks and rewrites an image's bytes on their way to storage: it refuses
// images whose header claims more pixels than allowed, and removes metadata (GPS, or all of it)
// from JPEG, PNG, WebP, HEIC and AVIF files. It never decodes or re-encodes pixels, and it
// never holds more than a bounded window of the file: the segments or chunks before the image
// data.
//
// # Contract
//
// The caller has already read the file's first bytes (head, any length, usually the few KiB
// used to sniff its type) and holds rest, a reader of everything after them. Guard returns
// Result.Prefix, the bytes to send first, and Result.Rest, the reader of what follows:
//
//   - JPEG, BMP and PSD in every mode, and a still PNG or WebP with StripOff: Rest is rest
//     itself, untouched, so a caller that type-asserts rest for a faster path (pieces of its
//     own buffer) keeps it. A PNG or an extended WebP is walked up to its image data first,
//     even with StripOff, for the sizes of its frames (APNG's fcTL, the VP8/VP8L bitstream).
//     For JPEG, only the segments before the first SOS (start of scan) are walked: the Exif
//     standard puts APP1 right after SOI, and the image size (SOFn) must come before SOS. What
//     follows the first SOS (the entropy-coded data, later scans, a trailer after EOI such as
//     an MPF secondary image or a motion-photo video) is passed on as it is. With StripOff the
//     walk ends at the frame header (SOFn).
//   - PNG and WebP with StripGPS or StripAll: Rest wraps rest (Result.Wrapped). It keeps walking chunk by chunk,
//     passing image data through by length without holding it, because text chunks, eXIf, and
//     WebP's EXIF and XMP chunks may come after the image data. Such a chunk is held whole
//     (at most Options.MaxMetadataBytes) and rewritten. A structure problem found there comes
//     out of Rest.Read as an error (Is ErrMalformed) after the Prefix and some bytes were given
//     out: the caller must then abandon the upload, never store what it sent.
//   - GIF, an animated PNG or WebP (also with StripOff), TIFF and ICO: Rest wraps rest, to
//     check every frame's (page's, image's) size and position against the limits as the file
//     streams, and count them (frames.go): some decoders size their buffers by the frames, not
//     the canvas. TIFF and ICO are walked by offsets (seek.go). GIF, TIFF and ICO pass
//     unchanged, Removed "none".
//   - HEIF (HEIC, AVIF; heif.go), in every mode: everything up to the end of the meta box is
//     held (the sizes are read there), then Rest wraps rest, to walk the boxes to the end
//     (refusing an image sequence, whose frames are not counted) and, with StripGPS or
//     StripAll, rewrite the Exif and XMP items in place as they pass.
//   - Any other format (SVG, JPEG XL...): Prefix is head, Rest is rest, Removed "none",
//     Format "", no pixel limit: the server admits such a type only when ALLOWED_TYPES names
//     it (Checks lists the types Guard measures).
//
// When rest hands out pieces of its own buffer (a method NextPiece(beforeWait func() error)
// ([]byte, error), as the server's multipart reader has), a Rest that wraps it has that method
// too (pieces.go): the image data comes out as pieces of rest's buffer, no longer than the
// chunk being walked, the rest from the guard's own buffers, the same bytes as Read gives.
// Either way a caller that type-asserts Result.Rest for NextPiece keeps its fast path.
//
// A walk of a PNG or WebP can stop and go on in another process (a resumable upload):
// Result.Rest's Snapshot gives its state where nothing is held back, and Resume goes on from
// it over the bytes that follow (snapshot.go).
//
// A file with nothing to remove comes out byte for byte.
//
// # Modes
//
//   - StripGPS: the GPS IFD is removed from every EXIF block (JPEG APP1, PNG eXIf, WebP EXIF):
//     the pointer tag 0x8825 is dropped from the IFD that holds it (the entries after it move up
//     by one, inside the same IFD, so no other offset changes) and the GPS IFD with its values
//     is overwritten with zeros. Nothing moves, so every offset in the block stays valid. XMP
//     can carry GPS too (exif:GPSLatitude): an XMP packet that contains the letters "GPS" is
//     removed whole (JPEG ExtendedXMP once its portions are joined: xmpext.go), as are PNG
//     text chunks whose keyword mentions GPS and ImageMagick's "Raw profile type
//     exif/APP1/xmp" chunks. Nothing else changes.
//   - StripAll: EXIF, XMP, IPTC/Photoshop (APP13), comments (COM), and the other APPn segments
//     except APP0 (JFIF), APP2 ICC_PROFILE and APP14 (Adobe, needed to decode colours) are
//     removed from JPEG; tEXt, zTXt, iTXt, eXIf and tIME from PNG; EXIF and XMP from WebP. The
//     ICC profile stays. When the original EXIF had an Orientation, a minimal EXIF with only
//     that tag is written back, so the photo does not turn on its side.
//   - StripOff: nothing is removed; the pixel limits still apply.
//
// WebP: the RIFF size and the VP8X flags are in the first bytes, sent before any EXIF or XMP
// chunk (usually after the image data) is seen. So WebP chunks are overwritten in place, never
// removed: an EXIF chunk keeps its size (GPS zeroed; with StripAll the minimal EXIF followed
// by zeros), and a chunk removed whole is renamed JUNK (a chunk readers ignore, by the
// container spec's rule for unknown chunks) with its payload zeroed. With StripAll the VP8X
// XMP flag is cleared in the head; the EXIF flag is left (a minimal EXIF may follow; readers
// treat the flags as hints).
//
// HEIF (HEIC, AVIF): iloc gives the items' absolute offsets, sent with the meta box before the
// items pass, so the Exif and XMP items are overwritten in place too: the GPS IFD zeroed as
// above; an XMP item removed whole becomes an empty packet padded with spaces; with StripAll
// the Exif item keeps its header and gets the minimal EXIF (or an empty one) followed by
// zeros. What cannot be followed exactly (see heif.go) is refused with StripGPS and StripAll.
//
// # Errors
//
// Errors are this package's values, for the caller to turn into answers: ErrMalformed (a file
// of a format Guard knows that cannot be walked exactly, or whose size cannot be read; the
// message names the problem), ErrTooManyPixels (as a *SizeError with the image's or a frame's
// size), ErrTooManyFrames (as a *FramesError: past MaxFrames or MaxAnimationPixels), and
// ErrMetadataTooLarge (the segments before the image data, one metadata chunk, or all of
// them together exceed Options.MaxMetadataBytes). An error reading rest is returned wrapped,
// so errors.As finds the reader's own error. With StripGPS or StripAll, a JPEG, PNG, WebP or
// HEIF that cannot be walked exactly is refused: never a half-stripped file. With StripOff only
// what leads to the sizes is walked (a JPEG up to its SOFn, a PNG up to its first IDAT, a
// simple WebP's first chunk, an extended one's up to its image), and refused only when that is
// broken. A GIF, an animation, a TIFF and an ICO are walked to their end in every mode.
package imageguard

import (
	"errors"
	"fmt"
	"io"
)

// Mode says which metadata Guard removes.
type Mode string

// The modes of STRIP_METADATA.
const (
	StripGPS Mode = "gps"
	StripAll Mode = "all"
	StripOff Mode = "off"
)

// ParseMode reads a mode's name: gps, all or off.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case StripGPS, StripAll, StripOff:
		return m, nil
	}
	return "", fmt.Errorf("imageguard: unknown mode %q (want gps, all or off)", s)
}

// The defaults of Options' zero fields.
const (
	DefaultMaxPixels        = 50_000_000
	DefaultMaxDimension     = 20_000
	DefaultMaxMetadataBytes = 1 << 20
)

// Options are the rules Guard applies. A zero field takes its default; Strip "" is StripGPS.
type Options struct {
	Strip        Mode
	MaxPixels    int64 // width × height, at most
	MaxDimension int64 // width and height, each at most
	// MaxMetadataBytes bounds what Guard holds: the bytes before the image data (JPEG: up to
	// SOS; PNG: up to the first IDAT; WebP: up to the image chunk), and the metadata chunks
	// met after it, each one and all together.
	MaxMetadataBytes int
	// MaxFrames and MaxAnimationPixels bound an image of several frames (see frames.go): how
	// many, and their pixels added up.
	MaxFrames          int64
	MaxAnimationPixels int64
}

func (o Options) withDefaults() Options {
	if o.Strip == "" {
		o.Strip = StripGPS
	}
	if o.MaxPixels <= 0 {
		o.MaxPixels = DefaultMaxPixels
	}
	if o.MaxDimension <= 0 {
		o.MaxDimension = DefaultMaxDimension
	}
	if o.MaxMetadataBytes <= 0 {
		o.MaxMetadataBytes = DefaultMaxMetadataBytes
	}
	if o.MaxFrames <= 0 {
		o.MaxFrames = DefaultMaxFrames
	}
	if o.MaxAnimationPixels <= 0 {
		o.MaxAnimationPixels = DefaultMaxAnimationPixels
	}
	return o
}

// Result is what Guard gives back: send Prefix, then read Rest to its end.
type Result struct {
	Prefix []byte
	Rest   io.Reader
	// Removed is the policy the file went through: "gps" or "all" for a JPEG, PNG, WebP or HEIF
	// walked with that mode (whether or not it had such metadata), "none" otherwise.
	Removed string
	// Wrapped is true when Rest is not the reader given to Guard but a walker over it, whose
	// Read may fail with this package's errors.
	Wrapped bool
	Format  string // "jpeg", "png", "webp", "gif", "bmp", "tiff", "psd", "ico", "heif", "avif", or "" for a format Guard does not know
	Width   int64  // from the header; 0 for an unknown format, or a TIFF or ICO whose first image is past the head
	Height  int64
}

// The errors Guard returns; test with errors.Is.
var (
	ErrMalformed        = errors.New("malformed image")
	ErrTooManyPixels    = errors.New("image has too many pixels")
	ErrMetadataTooLarge = errors.New("image metadata too large")
)

// MalformedError names what is wrong with an image's structure. It Is ErrMalformed.
type MalformedError struct {
	Format string // "JPEG", "PNG", "WebP", "GIF", "BMP", "TIFF", "PSD", "ICO"
	Detail string
}

func (e *MalformedError) Error() string { return "malformed " + e.Format + ": " + e.Detail }

// Is reports whether target is ErrMalformed.
func (e *MalformedError) Is(target error) bool { return target == ErrMalformed }

func malformed(format, detail string, args ...any) error {
	return &MalformedError{Format: format, Detail: fmt.Sprintf(detail, args...)}
}

// SizeError is an image past the pixel limits. It Is ErrTooManyPixels.
type SizeError struct {
	Width, Height int64
	MaxPixels     int64
	MaxDimension  int64
}

func (e *SizeError) Error() string {
	return fmt.Sprintf("image is %d × %d pixels; the limits are %d pixels in all and %d on a side",
		e.Width, e.Height, e.MaxPixels, e.MaxDimension)
}

// Is reports whether target is ErrTooManyPixels.
func (e *SizeError) Is(target error) bool { return target == ErrTooManyPixels }

func (o Options) checkSize(format string, w, h int64) error {
	if w <= 0 || h <= 0 {
		return malformed(format, "the header gives a size of %d × %d", w, h)
	}
	if w > o.MaxDimension || h > o.MaxDimension || w*h > o.MaxPixels { // w, h < 2^32: no overflow
		return &SizeError{Width: w, Height: h, MaxPixels: o.MaxPixels, MaxDimension: o.MaxDimension}
	}
	return nil
}

// Guard checks the image that starts with head and continues in rest, and returns what to
// send instead. See the package comment for the contract.
func Guard(head []byte, rest io.Reader, opts Options) (Result, error) {
	opts = opts.withDefaults()
	src := &source{win: head[:len(head):len(head)], r: rest, limit: opts.MaxMetadataBytes, bounded: true}
	res, err := guardFormat(head, src, opts)
	if err == nil && res.Wrapped {
		res.Rest = src.piecesOf(res.Rest)
	}
	return res, err
}

// guardFormat walks the head of a file of the format it starts with.
func guardFormat(head []byte, src *source, opts Options) (Result, error) {
	switch {
	case hasPrefix(head, "\xff\xd8\xff"):
		return guardJPEG(src, opts)
	case hasPrefix(head, pngSignature):
		return guardPNG(src, opts)
	case len(head) >= 12 && string(head[:4]) == "RIFF" && string(head[8:12]) == "WEBP":
		return guardWebP(src, opts)
	case hasPrefix(head, "GIF87a"), hasPrefix(head, "GIF89a"):
		return guardGIF(src, opts)
	case isHEIF(head): // ISOBMFF: HEIC, HEIF, AVIF (heif.go); before ICO, which an ftyp of 256 bytes would match
		return guardHEIF(src, opts)
	// Formats measured but never rewritten (Removed "none"), each in its own file.
	case isBMP(head):
		return guardBMP(src, opts)
	case hasPrefix(head, "II*\x00"), hasPrefix(head, "MM\x00*"):
		return guardTIFF(src, opts)
	case hasPrefix(head, "8BPS"):
		return guardPSD(src, opts)
	case hasPrefix(head, "\x00\x00\x01\x00"), hasPrefix(head, "\x00\x00\x02\x00"):
		return guardICO(src, opts)
	}
	return Result{Prefix: head, Rest: src.r, Removed: "none"}, nil
}

func hasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }

// source is the file as Guard walks it: win holds what has been read (head first, then more
// from r, up to limit bytes past head), pos is how far the walk has gone.
type source struct {
	win     []byte
	pos     int
	r       io.Reader
	limit   int // bytes Guard may read from r into win
	extra   int // bytes read from r so far
	bounded bool

	// When r hands out pieces (pieces.go): what is left of the last one, and r's error that
	// came with it; and, while Rest's NextPiece runs, its beforeWait.
	pieces  pieceSource
	held    []byte
	heldErr error
	piecing bool
	wait    func() error
}

// errTruncated marks the end of the file where the structure says more must follow.
var errTruncated = errors.New("truncated")

// take returns the next n bytes. The slice stays valid: win only grows into new arrays.
func (s *source) take(n int) ([]byte, error) {
	if err := s.fill(n); err != nil {
		return nil, err
	}
	b := s.win[s.pos : s.pos+n : s.pos+n]
	s.pos += n
	return b, nil
}

// fill makes sure n unread bytes are in win.
func (s *source) fill(n int) error {
	for len(s.win)-s.pos < n {
		need := n - (len(s.win) - s.pos)
		if s.extra+need > s.limit {
			return fmt.Errorf("%w: more than %d bytes before the image data", ErrMetadataTooLarge, s.limit)
		}
		chunk := max(need, 32<<10)
		chunk = min(chunk, s.limit-s.extra)
		if cap(s.win)-len(s.win) < chunk { // grow by doubling: slices given out keep the old array
			// Never past what limit allows, so the arrays held add up to at most twice the
			// window (what the server's memory budget counts for it).
			most := len(s.win) - s.extra + s.limit
			grown := make([]byte, len(s.win), min(max(2*cap(s.win), len(s.win)+chunk), most))
			copy(grown, s.win)
			s.win = grown
		}
		// Bytes past len(s.win) belong to no slice given out (they are all capped at their length).
		m, err := readAtLeast(s.r, s.win[len(s.win):len(s.win)+chunk], need)
		s.win = s.win[:len(s.win)+m]
		s.extra += m
		if err != nil {
			return err
		}
	}
	return nil
}

// unread is what has been read into win past pos.
func (s *source) unread() []byte { return s.win[s.pos:] }

// truncation turns errTruncated into the format's own error.
func truncation(format string, err error, what string) error {
	if errors.Is(err, errTruncated) {
		return malformed(format, "the file ends inside %s", what)
	}
	return err
}

// readAtLeast reads at least min bytes into b. Unlike io.ReadAtLeast it keeps the reader's own
// errors apart from the file's end: io.EOF where more must follow is errTruncated (the image is
// cut short), while a reader's io.ErrUnexpectedEOF (a request body that ended before its part
// did) is the reader's, returned wrapped.
func readAtLeast(r io.Reader, b []byte, min int) (int, error) {
	n := 0
	for n < min {
		m, err := r.Read(b[n:])
		n += m
		switch {
		case n >= min:
			return n, nil
		case err == io.EOF:
			return n, errTruncated
		case err != nil:
			return n, fmt.Errorf("imageguard: reading the file: %w", err)
		}
	}
	return n, nil
}
