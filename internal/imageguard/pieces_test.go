package imageguard

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/iotest"
	"unsafe"
)

// feeder hands out a file in pieces of a buffer of its own, as the server's multipart reader
// does, of lengths from 1 to max chosen by a seeded generator. Before it refills the buffer it
// overwrites what it gave out last, so that a piece kept past the next call comes out as wrong
// bytes. It also reads (for Guard's own reads before it returns), and counts its calls.
type feeder struct {
	b      []byte
	buf    []byte
	last   int
	rng    *rand.Rand
	max    int
	calls  int // NextPiece calls
	waited int // of which came with a beforeWait, called first
	fed    int // bytes given out, by Read or NextPiece
	fetch  func()
}

func newFeeder(b []byte, max int, seed uint64) *feeder {
	return &feeder{b: b, buf: make([]byte, max), rng: rand.New(rand.NewPCG(seed, 7)), max: max}
}

func (f *feeder) NextPiece(beforeWait func() error) ([]byte, error) {
	f.calls++
	if f.fetch != nil {
		f.fetch()
	}
	if beforeWait != nil {
		if err := beforeWait(); err != nil {
			return nil, err
		}
		f.waited++
	}
	for i := range f.buf[:f.last] {
		f.buf[i] = 0xEE
	}
	if len(f.b) == 0 {
		return nil, io.EOF
	}
	n := min(len(f.b), 1+f.rng.IntN(f.max))
	piece := f.buf[:n]
	copy(piece, f.b)
	f.b, f.last = f.b[n:], n
	f.fed += n
	if len(f.b) == 0 {
		return piece, io.EOF
	}
	return piece, nil
}

func (f *feeder) Read(p []byte) (int, error) {
	if len(f.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 1+f.rng.IntN(f.max))], f.b)
	f.b = f.b[n:]
	f.fed += n
	return n, nil
}

// inBuf says whether p lies in the feeder's buffer.
func (f *feeder) inBuf(p []byte) bool {
	if len(p) == 0 {
		return false
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(f.buf)))
	at := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
	return at >= lo && at+uintptr(len(p)) <= lo+uintptr(len(f.buf))
}

// throughRead runs Guard on b as the server does (head of headLen bytes) and reads Rest to its
// end with Read, in odd small reads.
func throughRead(b []byte, headLen int, opts Options) ([]byte, error) {
	res, err := Guard(slices.Clone(b[:headLen]), iotest.HalfReader(bytes.NewReader(b[headLen:])), opts)
	if err != nil {
		return nil, err
	}
	rest, err := io.ReadAll(res.Rest)
	return append(slices.Clone(res.Prefix), rest...), err
}

// piece is one piece Rest gave out: where it starts in the output, and whether it is the
// feeder's own bytes.
type piece struct {
	at, n  int
	source bool
}

// throughPieces does what throughRead does with a feeder of pieces of at most max bytes, and
// reads Rest with NextPiece (with mixed, with Read every third call). It copies each piece
// before the next call, as the server writes it before its next.
func throughPieces(t testing.TB, b []byte, headLen int, opts Options, max int, mixed bool) ([]byte, []piece, error) {
	f := newFeeder(b[headLen:], max, uint64(len(b)*31+max))
	res, err := Guard(slices.Clone(b[:headLen]), f, opts)
	if err != nil {
		return nil, nil, err
	}
	if f.calls != 0 {
		t.Fatalf("Guard called NextPiece %d times before it returned", f.calls)
	}
	out := slices.Clone(res.Prefix)
	var pieces []piece
	ps, ok := res.Rest.(pieceSource)
	if !ok {
		t.Fatalf("%s (Wrapped %v): Rest %T has no NextPiece over a source that has", res.Format, res.Wrapped, res.Rest)
	}
	waits := 0
	buf := make([]byte, 1+max/3)
	for i := 0; ; i++ {
		var p []byte
		var err error
		if mixed && i%3 == 2 {
			var n int
			n, err = res.Rest.Read(buf)
			p = buf[:n]
		} else {
			p, err = ps.NextPiece(func() error { waits++; return nil })
			pieces = append(pieces, piece{at: len(out), n: len(p), source: f.inBuf(p)})
		}
		out = append(out, p...)
		if err == io.EOF {
			err = nil
			break
		}
		if err != nil {
			return out, pieces, err
		}
	}
	if f.waited != f.calls || waits != f.calls {
		t.Fatalf("the feeder was called %d times, %d of them with a beforeWait; NextPiece's beforeWait was called %d times", f.calls, f.waited, waits)
	}
	return out, pieces, nil
}

// noiseOf makes pseudo-random bytes from rng, n at a time: image data that compresses to nothing.
func noiseOf(rng *rand.Rand) func(n int) []byte {
	return func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
}

// pieceFiles are files larger than the seeds, with image data longer than a piece.
func pieceFiles(t testing.TB) map[string][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	noise := noiseOf(rng)
	cs := pngChunks(t, photoPNG(t, 16, 16, false))
	gpsExif := chunk("eXIf", photoExif(binary.LittleEndian, true))
	pngWith := func(idats ...[]byte) []byte {
		out := []byte(pngSignature)
		for _, c := range cs[:len(cs)-1] {
			out = append(out, c...)
		}
		for _, d := range idats {
			out = append(out, d...)
		}
		return append(out, cs[len(cs)-1]...)
	}
	var small [][]byte
	for i := range 120 {
		small = append(small, chunk("IDAT", noise(8<<10)))
		if i == 60 {
			small = append(small, chunk("tEXt", []byte("GPSPosition\x0048 N, 2 E")))
		}
	}
	big := noise(1 << 20)
	vp8lBig := append(vp8l(64, 48, colorOf(1, 2, 3)), noise(300<<10)...)
	exif := exifItem(photoExif(binary.BigEndian, true))
	return map[string][]byte{
		"png-1MiB-IDAT-eXIf-after": pngWith(chunk("IDAT", big), gpsExif, chunk("tEXt", []byte("Comment\x00hi"))),
		"png-8KiB-IDATs":           pngWith(small...),
		"png-trailing-bytes":       append(pngWith(chunk("IDAT", big[:200<<10])), noise(100<<10)...),
		"webp-300KiB-VP8L-EXIF": riff(vp8x(0x08, 64, 48), riffChunk("VP8L", vp8lBig),
			riffChunk("EXIF", photoExif(binary.BigEndian, true)), riffChunk("XMP ", []byte(testXMP))),
		"webp-simple-300KiB": riff(riffChunk("VP8L", vp8lBig)),
		"heic-300KiB":        synthHEIF{w: 64, h: 48, primary: &synthItem{typ: "hvc1", data: noise(300 << 10)}, extra: []synthItem{{typ: "Exif", data: exif, split: 2, gapAfter: 5000}}}.build(),
		"tiff-300KiB":        tiffFile(binary.LittleEndian, 300<<10, [2]uint32{3, 2}, [2]uint32{2, 2}),
		"gif-frames":         encodeGIF(t, 30, 40, 30, 0, 0),
	}
}

// TestPiecesAsRead: every file, in every mode, comes out of Rest with NextPiece (alone or mixed
// with Read) byte for byte as with Read, and with the same error; pieces of every length.
func TestPiecesAsRead(t *testing.T) {
	type file struct {
		name string
		b    []byte
	}
	var files []file
	for i, b := range seeds(t) {
		files = append(files, file{fmt.Sprintf("seed%d", i), b})
	}
	for name, b := range pieceFiles(t) {
		files = append(files, file{name, b})
	}
	for _, f := range files {
		sizes := []int{1, 7, 300, 70 << 10}
		if len(f.b) > 64<<10 {
			sizes = []int{999, 70 << 10, 256 << 10}
		}
		for _, m := range []Mode{StripGPS, StripAll, StripOff} {
			opts := Options{Strip: m, MaxFrames: 40}
			headLen := min(sniffLen, len(f.b))
			want, wantErr := throughRead(f.b, headLen, opts)
			for _, max := range sizes {
				for _, mixed := range []bool{false, true} {
					if wantErr != nil && len(want) == 0 { // Guard itself refused it: no Rest
						if _, err := Guard(slices.Clone(f.b[:headLen]), newFeeder(f.b[headLen:], max, 1), opts); fmt.Sprint(err) != fmt.Sprint(wantErr) {
							t.Fatalf("%s %s: Guard over pieces: %v, over Read: %v", f.name, m, err, wantErr)
						}
						continue
					}
					got, _, err := throughPieces(t, f.b, headLen, opts, max, mixed)
					if fmt.Sprint(err) != fmt.Sprint(wantErr) {
						t.Fatalf("%s %s max %d mixed %v: error %v, with Read %v", f.name, m, max, mixed, err, wantErr)
					}
					if !bytes.Equal(got, want) {
						t.Fatalf("%s %s max %d mixed %v: %d bytes out differ from Read's %d", f.name, m, max, mixed, len(got), len(want))
					}
				}
			}
		}
	}
}

// TestPiecesZeroCopy: a PNG being stripped (and a HEIC, a WebP, a TIFF) passes its image data
// as pieces of the source's buffer, each inside the chunk being walked; a PNG of short IDATs
// is gathered into far fewer pieces than it has chunks.
func TestPiecesZeroCopy(t *testing.T) {
	files := pieceFiles(t)
	for _, c := range []struct {
		name string
		mode Mode
	}{{"png-1MiB-IDAT-eXIf-after", StripGPS}, {"png-1MiB-IDAT-eXIf-after", StripAll}, {"webp-300KiB-VP8L-EXIF", StripGPS},
		{"webp-simple-300KiB", StripAll}, {"heic-300KiB", StripGPS}, {"tiff-300KiB", StripOff}, {"png-trailing-bytes", StripGPS}} {
		b := files[c.name]
		out, pieces, err := throughPieces(t, b, sniffLen, Options{Strip: c.mode}, 256<<10, false)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		source := 0
		for _, p := range pieces {
			if p.source {
				source += p.n
			}
		}
		// What Guard read into its window past the head goes out from there: at most 32 KiB.
		if source < len(out)-sniffLen-(64<<10) {
			t.Errorf("%s %s: %d of %d bytes came out as pieces of the source's buffer", c.name, c.mode, source, len(out))
		}
	}
	// The 1 MiB IDAT's pieces lie inside its data and CRC: none reaches the eXIf after it.
	b := files["png-1MiB-IDAT-eXIf-after"]
	out, pieces, err := throughPieces(t, b, sniffLen, Options{Strip: StripGPS}, 256<<10, false)
	if err != nil {
		t.Fatal(err)
	}
	header := []byte("\x00\x10\x00\x00IDAT")
	idat := bytes.Index(out, header) + len(header)
	end := idat + 1<<20 + 4
	if idat < len(header) || !bytes.Equal(out[idat:end], b[bytes.Index(b, header)+len(header):][:end-idat]) {
		t.Fatal("the IDAT of 1 MiB is not in the output as it was")
	}
	for _, p := range pieces {
		if p.source && (p.at < idat || p.at+p.n > end) {
			t.Fatalf("a piece of the source's buffer at [%d, %d), outside the IDAT's data [%d, %d)", p.at, p.at+p.n, idat, end)
		}
	}
	// 120 IDATs of 8 KiB: gathered, in pieces of up to 64 KiB, far fewer than the chunks.
	small := files["png-8KiB-IDATs"]
	_, pieces, err = throughPieces(t, small, sniffLen, Options{Strip: StripGPS}, 256<<10, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(pieces) > 60 {
		t.Errorf("120 IDATs of 8 KiB came out in %d pieces", len(pieces))
	}
}

// TestPiecesOnlyOverPieces: Rest has NextPiece only when the reader given to Guard has; with
// nothing walked it is that reader itself.
func TestPiecesOnlyOverPieces(t *testing.T) {
	b := pieceFiles(t)["png-1MiB-IDAT-eXIf-after"]
	res, err := Guard(slices.Clone(b[:sniffLen]), bytes.NewReader(b[sniffLen:]), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.Rest.(pieceSource); ok || !res.Wrapped {
		t.Fatalf("Rest %T over a bytes.Reader (Wrapped %v) has NextPiece", res.Rest, res.Wrapped)
	}
	f := newFeeder(b[sniffLen:], 4096, 1)
	res, err = Guard(slices.Clone(b[:sniffLen]), f, Options{Strip: StripOff})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rest != io.Reader(f) {
		t.Fatalf("StripOff: Rest %T is not the reader given", res.Rest)
	}
}

// TestPiecesBeforeWaitError: an error of beforeWait (the upstream writer failed to flush) ends
// the walk with that error.
func TestPiecesBeforeWaitError(t *testing.T) {
	errFlush := errors.New("flush failed")
	for name, b := range pieceFiles(t) {
		if len(b) < 64<<10 {
			continue
		}
		f := newFeeder(b[sniffLen:], 4096, 1)
		res, err := Guard(slices.Clone(b[:sniffLen]), f, Options{})
		if err != nil {
			t.Fatal(err)
		}
		ps, ok := res.Rest.(pieceSource)
		if !ok {
			t.Fatalf("%s: no NextPiece", name)
		}
		for i := 0; ; i++ {
			_, err := ps.NextPiece(func() error {
				if i >= 3 {
					return errFlush
				}
				return nil
			})
			if errors.Is(err, errFlush) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v, want the flush's error", name, err)
			}
		}
	}
}

// TestPiecesNeverWaitHolding: the walker waits on its source (a NextPiece of the source's) only
// once it has given out all it walked, but for a chunk header cut across the source's pieces:
// what it gathered goes out before it waits, so the server's writer can pass it on.
func TestPiecesNeverWaitHolding(t *testing.T) {
	cs := pngChunks(t, encodePNG(t, 16, 16))
	b := append([]byte(pngSignature), cs[0]...)
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		d := make([]byte, 100+rng.IntN(12<<10))
		for i := range d {
			d[i] = byte(rng.Uint32())
		}
		b = append(b, chunk("IDAT", d)...)
	}
	b = append(b, cs[len(cs)-1]...)
	for seed := range uint64(20) {
		f := newFeeder(b[sniffLen:], 1+int(seed)*3000, seed)
		res, err := Guard(slices.Clone(b[:sniffLen]), f, Options{Strip: StripGPS})
		if err != nil {
			t.Fatal(err)
		}
		out := len(res.Prefix)
		f.fetch = func() {
			if held := sniffLen + f.fed - out; held >= 8 {
				t.Fatalf("seed %d: the walker waits on its source holding %d bytes it has not given out", seed, held)
			}
		}
		ps := res.Rest.(pieceSource)
		for {
			p, err := ps.NextPiece(nil)
			out += len(p)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if out != len(b) {
			t.Fatalf("%d bytes out of %d", out, len(b))
		}
	}
}
