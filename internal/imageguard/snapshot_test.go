package imageguard

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/iotest"
)

type snapshotter interface{ Snapshot() ([]byte, bool) }

// countingReader counts the bytes read from r.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// resumable are the PNGs and WebPs of the seeds and of pieceFiles, and files whose limits
// (TestSnapshotResume's MaxFrames and MaxMetadataBytes) are passed far into them, so that a
// resumed walk must carry the counts over: 50 frames of an APNG and of a WebP, each with 4 KiB
// of data, and 10 text chunks of 10 KiB after 200 KiB of image data.
func resumable(t testing.TB) map[string][]byte {
	rng := rand.New(rand.NewPCG(3, 3))
	noise := noiseOf(rng)
	padded := []byte(pngSignature)
	for _, c := range pngChunks(t, apng(t, 50, 3, 2, [4]uint32{3, 2, 0, 0})) {
		if string(c[4:8]) == "acTL" { // it says 30 frames: counted, not declared, they pass MaxFrames
			c = chunk("acTL", []byte{0, 0, 0, 30, 0, 0, 0, 0})
		}
		padded = append(padded, c...)
		if typ := string(c[4:8]); typ == "IDAT" || typ == "fdAT" {
			padded = append(padded, chunk("zzZz", noise(4<<10))...)
		}
	}
	anim := [][]byte{vp8x(0x02, 4, 3), riffChunk("ANIM", make([]byte, 6))}
	for range 50 {
		d := make([]byte, 16)
		d[6], d[9], d[12] = 1, 1, 100 // 2 × 2
		anim = append(anim, riffChunk("ANMF", append(d, riffChunk("VP8L", append(vp8l(2, 2, colorOf(9, 8, 7)), noise(4<<10)...))...)))
	}
	text := slices.Concat(photoPNG(t, 8, 8, false)[:33], chunk("IDAT", noise(200<<10)))
	for range 10 {
		text = append(text, chunk("tEXt", append([]byte("Comment\x00"), bytes.Repeat([]byte("a"), 10<<10)...))...)
	}
	text = append(text, chunk("IEND", nil)...)
	files := map[string][]byte{
		"apng":         apng(t, 3, 3, 2, [4]uint32{2, 1, 1, 1}),
		"animwebp":     animWebP(4, 3, [4]int{2, 2, 2, 2}, [4]int{4, 3, 4, 3}),
		"apng-50":      padded,
		"animwebp-50":  riff(anim...),
		"png-text-100": text,
	}
	for i, b := range seeds(t) {
		if hasPrefix(b, pngSignature) || hasPrefix(b, "RIFF") {
			files[fmt.Sprintf("seed%d", i)] = b
		}
	}
	for name, b := range pieceFiles(t) {
		if hasPrefix(b, pngSignature) || hasPrefix(b, "RIFF") {
			files[name] = b
		}
	}
	return files
}

// TestSnapshotResume: a walk stopped wherever Snapshot is ok and resumed from its state, on the
// bytes that follow those Rest had read, gives out what the walk would have: byte for byte,
// with the same error. Over a source of pieces, the resumed walk hands out pieces.
func TestSnapshotResume(t *testing.T) {
	for name, b := range resumable(t) {
		for _, m := range []Mode{StripGPS, StripAll, StripOff} {
			opts := Options{Strip: m, MaxFrames: 40, MaxMetadataBytes: 64 << 10}
			headLen := min(sniffLen, len(b))
			want, wantErr := throughRead(b, headLen, opts)
			src := &countingReader{r: bytes.NewReader(b[headLen:])}
			res, err := Guard(slices.Clone(b[:headLen]), src, opts)
			if err != nil || !res.Wrapped {
				continue // refused, or not walked (a still PNG with StripOff): nothing to resume
			}
			sn, ok := res.Rest.(snapshotter)
			if !ok {
				t.Fatalf("%s %s: Rest %T has no Snapshot", name, m, res.Rest)
			}
			rng := rand.New(rand.NewPCG(uint64(len(b)), 9))
			out := slices.Clone(res.Prefix)
			buf := make([]byte, 4096)
			resumes := 0
			for step := 0; ; step++ {
				// Everywhere in a small file; in a large one, between chunks and now and then inside.
				between := res.Rest.(*chunkWalker).pass == 0
				if state, ok := sn.Snapshot(); ok && (len(b) < 64<<10 || step%97 == 0 || between) {
					resumes++
					rest := b[headLen+src.n:]
					var r io.Reader = iotest.HalfReader(bytes.NewReader(rest))
					if step%2 == 1 {
						r = newFeeder(rest, 3000, uint64(step))
					}
					w, err := Resume(state, r, opts)
					if err != nil {
						t.Fatalf("%s %s: Resume: %v", name, m, err)
					}
					if _, pieces := w.(pieceSource); pieces != (step%2 == 1) {
						t.Fatalf("%s %s: the resumed walk over %T has NextPiece %v", name, m, r, pieces)
					}
					tail, err := io.ReadAll(w)
					if got := append(slices.Clone(out), tail...); fmt.Sprint(err) != fmt.Sprint(wantErr) || !bytes.Equal(got, want) {
						t.Fatalf("%s %s: resumed at %d bytes in: %d bytes out, error %v; without stopping %d bytes, error %v",
							name, m, headLen+src.n, len(got), err, len(want), wantErr)
					}
				}
				n, err := res.Rest.Read(buf[:1+rng.IntN(len(buf))])
				out = append(out, buf[:n]...)
				if err != nil {
					break
				}
			}
			if resumes == 0 && wantErr == nil {
				t.Fatalf("%s %s: Snapshot was never ok", name, m)
			}
		}
	}
}

// TestSnapshotNotWhileHolding: Snapshot is not ok while Rest holds bytes it read (the window's
// read-ahead after Guard), nor for a walk it cannot resume (a GIF).
func TestSnapshotNotWhileHolding(t *testing.T) {
	b := pieceFiles(t)["png-1MiB-IDAT-eXIf-after"]
	res, err := Guard(slices.Clone(b[:sniffLen]), bytes.NewReader(b[sniffLen:]), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.Rest.(snapshotter).Snapshot(); ok {
		t.Fatal("Snapshot is ok right after Guard, with the window's read-ahead not given out")
	}
	gif := encodeGIF(t, 30, 40, 30, 0, 0)
	res, err = Guard(slices.Clone(gif[:100]), bytes.NewReader(gif[100:]), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(res.Rest, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if _, ok := res.Rest.(snapshotter).Snapshot(); ok {
		t.Fatal("Snapshot is ok for a GIF")
	}
}

// TestResumeBadState: a state cut short or changed is ErrBadSnapshot; random bytes never make
// Resume or the walk panic.
func TestResumeBadState(t *testing.T) {
	b := pieceFiles(t)["png-1MiB-IDAT-eXIf-after"]
	res, err := Guard(slices.Clone(b[:sniffLen]), bytes.NewReader(b[sniffLen:]), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(res.Rest, make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	state, ok := res.Rest.(snapshotter).Snapshot()
	if !ok {
		t.Fatal("no snapshot inside the IDAT")
	}
	for i := range len(state) {
		if _, err := Resume(state[:i], bytes.NewReader(nil), Options{}); !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("state cut to %d of %d bytes: %v", i, len(state), err)
		}
	}
	for _, bad := range [][]byte{append(slices.Clone(state), 0), {'g', 2, 1, 0, 0, 0, 0, 0}, {'g', 1, 3, 0, 0, 0, 0, 0}, {'g', 1, 1, 0x80, 0, 0, 0, 0}} {
		if _, err := Resume(bad, bytes.NewReader(nil), Options{}); !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("state % x: %v", bad, err)
		}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 2000 {
		s := make([]byte, 4+rng.IntN(30))
		for i := range s {
			s[i] = byte(rng.Uint32())
		}
		s[0], s[1], s[2] = 'g', 1, byte(1+rng.IntN(2))
		w, err := Resume(s, bytes.NewReader(b[sniffLen+rng.IntN(len(b)-sniffLen):]), Options{})
		if err == nil {
			_, _ = io.Copy(io.Discard, w) // errors are fine; a panic is not
		}
	}
}
