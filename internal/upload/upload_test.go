package upload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"cloudinary-upload-api/internal/formstream"
	"cloudinary-upload-api/internal/imageguard"
	"cloudinary-upload-api/internal/store"
)

// memStore keeps what it reads, as io.Copy reads it (a store's transport does).
type memStore struct {
	got    bytes.Buffer
	pieces bool
	answer string
	hang   bool // wait for the context's end before reading
}

func (s *memStore) Upload(ctx context.Context, file io.Reader, _ store.Params) (json.RawMessage, error) {
	if s.hang {
		<-ctx.Done()
		return nil, context.Cause(ctx)
	}
	s.pieces = HandsOutPieces(file)
	if _, err := io.Copy(&s.got, file); err != nil {
		return nil, err
	}
	if s.answer != "" {
		return json.RawMessage(s.answer), nil
	}
	return json.RawMessage(`{"public_id":"x"}`), nil
}

func testRules() Rules {
	return Rules{MaxBytes: 1 << 20, AllowedTypes: []string{"image/*"}, Image: imageguard.Options{Strip: imageguard.StripGPS}, UploadTimeout: time.Minute}
}

func encodedPNG(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewRGBA(image.Rect(0, 0, 4, 3))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodedJPEG(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, image.NewRGBA(image.Rect(0, 0, 4, 3)), nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// formPart is file as the one part of a form, read through formstream: a body with pieces.
func formPart(t *testing.T, file []byte) *formstream.Part {
	t.Helper()
	body := "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\n" + string(file) + "\r\n--b--\r\n"
	rd := formstream.NewReader(strings.NewReader(body), "b", make([]byte, 64<<10), formstream.Limits{NonFileBytes: 1 << 10, HeaderBytes: 1 << 10, Parts: 10})
	part, err := rd.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	return part
}

func TestUploadStoresTheFileAndDecides(t *testing.T) {
	t.Parallel()
	img := append(encodedJPEG(t), bytes.Repeat([]byte{7}, 8<<10)...) // after EOI: passed on as it is
	s := &memStore{}
	var d Decision
	calls := 0
	res, err := New(testRules(), s).Upload(t.Context(), File{Body: formPart(t, img), Size: -1, Decided: func(got Decision) { d = got; calls++ }})
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Answer) != `{"public_id":"x"}` || res.Removed != "gps" {
		t.Fatalf("result %s, removed %q", res.Answer, res.Removed)
	}
	if !bytes.Equal(s.got.Bytes(), img) || !s.pieces {
		t.Fatalf("store got %d bytes (pieces %v), want the file's %d as pieces", s.got.Len(), s.pieces, len(img))
	}
	if calls != 1 || !d.Passthrough || d.Type != "image/jpeg" || d.Consumed != d.Produced || d.Consumed < SniffLen {
		t.Fatalf("decision %+v (%d calls)", d, calls)
	}
}

// A PNG being stripped goes through the guard's walker: no passthrough.
func TestUploadPNGStrippedIsNoPassthrough(t *testing.T) {
	t.Parallel()
	var d Decision
	img := encodedPNG(t)
	s := &memStore{}
	if _, err := New(testRules(), s).Upload(t.Context(), File{Body: bytes.NewReader(img), Size: int64(len(img)), Decided: func(got Decision) { d = got }}); err != nil {
		t.Fatal(err)
	}
	if d.Passthrough || d.Type != "image/png" || !bytes.Equal(s.got.Bytes(), img) {
		t.Fatalf("decision %+v; store got %d of %d bytes", d, s.got.Len(), len(img))
	}
}

// A resumed upload's bytes pass neither sniff nor guard: bytes no sniffer admits are stored,
// and the limit counts what was stored before.
func TestUploadResumed(t *testing.T) {
	t.Parallel()
	rest := bytes.Repeat([]byte("not an image "), 100)
	s := &memStore{}
	called := false
	_, err := New(testRules(), s).Upload(t.Context(), File{Body: bytes.NewReader(rest), Size: -1, Resumed: true, Offset: 1000, Decided: func(Decision) { called = true }})
	if err != nil || !bytes.Equal(s.got.Bytes(), rest) || called {
		t.Fatalf("err %v, stored %d of %d bytes, Decided called %v", err, s.got.Len(), len(rest), called)
	}
	rules := testRules()
	rules.MaxBytes = 1000 + int64(len(rest)) - 1
	_, err = New(rules, &memStore{}).Upload(t.Context(), File{Body: bytes.NewReader(rest), Size: -1, Resumed: true, Offset: 1000})
	var tooLarge *TooLargeError
	if !errors.As(err, &tooLarge) || tooLarge.Limit != rules.MaxBytes {
		t.Fatalf("one byte past the limit with the offset: %v", err)
	}
}

func TestUploadRefusals(t *testing.T) {
	t.Parallel()
	readErr := errors.New("client went away")
	img := encodedPNG(t)
	spendErr := errors.New("quota spent")
	for _, tc := range []struct {
		name  string
		rules func(*Rules)
		file  File
		check func(error) bool
	}{
		{"empty", nil, File{Body: bytes.NewReader(nil)}, func(err error) bool { return errors.Is(err, ErrEmpty) }},
		{"type", nil, File{Body: strings.NewReader("%PDF-1.4\n")}, func(err error) bool {
			var te *TypeError
			return errors.As(err, &te) && te.Reason == NotAllowed && te.Type == "application/pdf"
		}},
		{"too large", func(r *Rules) { r.MaxBytes = int64(len(img)) - 1 }, File{Body: bytes.NewReader(img)}, func(err error) bool {
			var tl *TooLargeError
			return errors.As(err, &tl)
		}},
		{"read error", nil, File{Body: io.MultiReader(bytes.NewReader(img[:100]), iotest.ErrReader(readErr))}, func(err error) bool {
			var re *ReadError
			return errors.As(err, &re) && errors.Is(err, readErr)
		}},
		{"spend", nil, File{Body: bytes.NewReader(img), Spend: func(int) error { return spendErr }}, func(err error) bool { return errors.Is(err, spendErr) }},
		{"pixels", func(r *Rules) { r.Image.MaxPixels = 4 }, File{Body: bytes.NewReader(img)}, func(err error) bool { return errors.Is(err, imageguard.ErrTooManyPixels) }},
	} {
		rules := testRules()
		if tc.rules != nil {
			tc.rules(&rules)
		}
		s := &memStore{}
		if _, err := New(rules, s).Upload(t.Context(), tc.file); !tc.check(err) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func TestUploadTakenPublicID(t *testing.T) {
	t.Parallel()
	s := &memStore{answer: `{"public_id":"a/b","existing":true}`}
	_, err := New(testRules(), s).Upload(t.Context(), File{Body: bytes.NewReader(encodedPNG(t)), Params: store.Params{PublicID: "b", Folder: "a"}})
	var taken *TakenError
	if !errors.As(err, &taken) || taken.PublicID != "a/b" {
		t.Fatalf("%v, want TakenError for a/b", err)
	}
	_, err = New(testRules(), s).Upload(t.Context(), File{Body: bytes.NewReader(encodedPNG(t)), Params: store.Params{PublicID: "b", Folder: "a", UploadedBy: "u"}})
	if err != nil {
		t.Fatalf("the signed-in user's own folder: %v", err)
	}
}

// A store that holds the file without reading it ends with ErrUpstreamTimeout.
func TestUploadStoreStalls(t *testing.T) {
	t.Parallel()
	rules := testRules()
	rules.UploadTimeout = time.Millisecond
	_, err := New(rules, &memStore{hang: true}).Upload(t.Context(), File{Body: bytes.NewReader(encodedPNG(t))})
	if !errors.Is(err, ErrUpstreamTimeout) {
		t.Fatalf("%v, want ErrUpstreamTimeout", err)
	}
}

// WithStore sends to another store with the same rules.
func TestWithStore(t *testing.T) {
	t.Parallel()
	a, b := &memStore{}, &memStore{}
	pl := New(testRules(), a)
	if _, err := pl.WithStore(b).Upload(t.Context(), File{Body: bytes.NewReader(encodedPNG(t))}); err != nil {
		t.Fatal(err)
	}
	if a.got.Len() != 0 || b.got.Len() == 0 {
		t.Fatalf("first store got %d bytes, second %d", a.got.Len(), b.got.Len())
	}
}
