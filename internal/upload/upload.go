// Package upload is the pipeline of one file, from bytes in to a stored result, with no HTTP in
// it: a File (an io.Reader, its size or −1, the parameters the server decided, who uploads) is
// sniffed, checked against the type policy, passed through the image guard (internal/imageguard:
// pixel limits, metadata stripping) and handed to a Store, capped at the largest file, timed
// while the store holds it, counted, and stopped when the upload ends. Every way in (the
// multipart form, PUT, resumable uploads) turns its request into a File and calls
// Pipeline.Upload.
//
// The fast path is part of the contract: a File whose Body hands out pieces of its own buffer
// (Pieces, as formstream.Part does) reaches a store that copies the file (io.Copy, WriteTo) as
// those pieces, without a copy in between, unless the guard must rewrite what follows the head
// (a PNG or WebP being stripped: then the guard's walker hands out pieces when it can).
//
// Errors are this package's values (ErrEmpty, *TooLargeError, *TypeError, *TakenError,
// *ReadError wrapping the source's failure, ErrUpstreamTimeout), internal/imageguard's
// refusals, and the store's own; the HTTP layer says what a client sees of them.
package upload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"cloudinary-upload-api/internal/imageguard"
	"cloudinary-upload-api/internal/store"
)

// Store stores one file and answers with the upload result as JSON, in Cloudinary's field names.
type Store interface {
	Upload(ctx context.Context, file io.Reader, p store.Params) (json.RawMessage, error)
}

// Rules are the server's rules for every file, never chosen by the client.
type Rules struct {
	MaxBytes     int64    // the largest file
	AllowedTypes []string // sniffed types admitted (ALLOWED_TYPES): "image/*", "*", "application/pdf"...
	Image        imageguard.Options
	// UploadTimeout bounds how long a store sending the file in one request may hold it without
	// reading it, and wait for its answer after its end (a store sending chunks times each
	// itself): the upload's context then ends with ErrUpstreamTimeout.
	UploadTimeout time.Duration
	// CopyBufferBytes is the size of the pieces a file without pieces of its own is copied in.
	CopyBufferBytes int
}

// Pipeline runs files through the rules to a store. Build it with New; WithStore gives a copy
// for another store that shares its buffers.
type Pipeline struct {
	rules  Rules
	store  Store
	copies *Buffers
}

// DefaultCopyBufferBytes is Rules.CopyBufferBytes when it is 0.
const DefaultCopyBufferBytes = 256 << 10

// New builds a pipeline to s.
func New(rules Rules, s Store) *Pipeline {
	if rules.CopyBufferBytes <= 0 {
		rules.CopyBufferBytes = DefaultCopyBufferBytes
	}
	return &Pipeline{rules: rules, store: s, copies: NewBuffers(leastCopyBuffer, rules.CopyBufferBytes)}
}

// leastCopyBuffer is the smallest copy buffer a small file gets.
const leastCopyBuffer = 16 << 10

// Holds is the most one file of at most bound bytes (-1: unknown) holds in a pipeline with
// these rules: its copy buffer and the image guard's window (the metadata before an image's
// data, which may stand twice for a moment while its buffer grows), the sniffed head not
// counted. A way in reserves it from the memory budget before the file's bytes come.
func (r Rules) Holds(bound int64) int64 {
	meta := int64(r.Image.MaxMetadataBytes)
	if meta <= 0 {
		meta = imageguard.DefaultMaxMetadataBytes
	}
	if bound >= 0 {
		meta = min(meta, bound)
	}
	copyBuf := r.CopyBufferBytes
	if copyBuf <= 0 {
		copyBuf = DefaultCopyBufferBytes
	}
	return int64(SizeClass(bound, leastCopyBuffer, copyBuf)) + 2*meta
}

// WithStore is pl sending its files to s instead.
func (pl *Pipeline) WithStore(s Store) *Pipeline {
	c := *pl
	c.store = s
	return &c
}

// Rules are the pipeline's rules.
func (pl *Pipeline) Rules() Rules { return pl.rules }

// File is one file on its way in.
type File struct {
	// Body is the file's bytes. One that hands out pieces of its own buffer (Pieces) keeps the
	// fast path; one that says what it holds (Buffered) is read in larger pieces.
	Body io.Reader
	// Size is the file's size (with Offset, the whole file's), or -1 when unknown; then
	// Params.Size may still bound it (a form's file is no larger than its request), as the
	// store reads it: a small file gets small buffers.
	Size   int64
	Params store.Params
	// Spend counts n more bytes of the file on their way to the store (a quota); its error
	// stops the upload and comes back from Upload as it is. Nil: nothing counted.
	Spend func(n int) error
	// Waker wakes a read of Body blocked on its source when the upload stops early; nil: the
	// stop waits for that read.
	Waker Waker
	// Decided, when set, is called once the type policy and the guard have decided what
	// becomes of the file, before any byte reaches the store.
	Decided func(Decision)
	// Resumed says Body continues a file whose first Offset bytes already passed this pipeline
	// (in an earlier Upload whose Decision had Passthrough): no sniff, type policy nor guard
	// runs again; the limit counts Offset.
	Resumed bool
	Offset  int64
}

// bound is the most the file may have, or -1 when that is not known.
func (f File) bound() int64 {
	if f.Size >= 0 {
		return f.Size
	}
	return max(f.Params.Size, -1)
}

// Decision is what the type policy and the image guard made of a file.
type Decision struct {
	// Passthrough: every byte of Body after Consumed goes to the store unchanged, so a store
	// offset stands at a fixed distance from the client's (Produced − Consumed).
	Passthrough bool
	Removed     string // what the guard removes: gps, all or none
	Type        string // the sniffed type
	Consumed    int64  // bytes of Body read to decide
	Produced    int64  // bytes given to the store for them (the guard's prefix)
}

// Result is a stored file.
type Result struct {
	Answer  json.RawMessage // the store's answer
	Removed string          // what the guard removed: gps, all or none
}

// Upload runs f through the pipeline and stores it.
func (pl *Pipeline) Upload(ctx context.Context, f File) (Result, error) {
	src, rest := newSource(f.Body)
	var head []byte
	removed := "none"
	if !f.Resumed {
		var d Decision
		var err error
		head, rest, d, err = pl.decide(src, rest)
		if err != nil {
			return Result{}, err
		}
		removed = d.Removed
		if f.Decided != nil {
			f.Decided(d)
		}
	}
	b := &body{
		head:    head,
		file:    rest,
		limit:   pl.rules.MaxBytes,
		offset:  f.Offset,
		spend:   f.Spend,
		timeout: pl.rules.UploadTimeout,
		copies:  pl.copies,
		bound:   f.bound(),
	}
	b.pieces, _ = rest.(Pieces)
	if bu, ok := f.Body.(Buffered); ok {
		b.more = func() bool { return bu.Buffered() > 0 }
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// A store that streams the file straight through is timed here: the timer runs while it
	// holds the file and is not reading it, before the first read, between reads, and after the
	// last one until the answer. One that holds the file's bytes (Cloudinary's chunks, each read
	// whole before it is sent) times its own requests.
	if store.Holds(pl.store, f.Params.Size) == 0 && pl.rules.UploadTimeout > 0 {
		b.watchdog = time.AfterFunc(pl.rules.UploadTimeout, func() { cancel(ErrUpstreamTimeout) })
		defer b.watchdog.Stop()
	}
	answer, upErr := pl.store.Upload(ctx, b, f.Params)
	cause := context.Cause(ctx)
	cancel(nil) // a transport still writing the body gives up, so stop need not wait for the store
	bodyErr := b.stop(f.Waker)
	switch {
	case bodyErr != nil:
		return Result{}, bodyErr
	case upErr == nil:
		if err := CheckExisting(answer, f.Params); err != nil {
			return Result{}, err
		}
		return Result{Answer: answer, Removed: removed}, nil
	case errors.Is(cause, ErrUpstreamTimeout):
		return Result{}, fmt.Errorf("%w: %w", ErrUpstreamTimeout, upErr)
	}
	return Result{}, upErr
}

// decide sniffs the file's head, applies the type policy and the guard: it returns the bytes to
// send first and the reader of the rest.
func (pl *Pipeline) decide(src *source, rest io.Reader) ([]byte, io.Reader, Decision, error) {
	head := make([]byte, SniffLen)
	n, err := io.ReadFull(rest, head)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, nil, Decision{}, err
	}
	if n == 0 {
		return nil, nil, Decision{}, ErrEmpty
	}
	head = head[:n]
	base, measured, err := checkType(head, pl.rules.AllowedTypes)
	if err != nil {
		return nil, nil, Decision{}, err
	}
	prefix, file, removed, err := Guard(head, rest, pl.rules.Image, measured)
	if err != nil {
		return nil, nil, Decision{}, err
	}
	if measured && pl.rules.Image.Strip != imageguard.StripOff && imageguard.KeepsLocation(base) {
		// image/* promises that photos lose their location; this type would keep it.
		return nil, nil, Decision{}, &TypeError{Type: base, Allowed: pl.rules.AllowedTypes, Reason: KeepsLocation}
	}
	d := Decision{Passthrough: file == rest, Removed: removed, Type: base, Consumed: src.n, Produced: int64(len(prefix))}
	return prefix, file, d, nil
}

// Guard applies the image rules to a file whose first bytes, head, have been read (and its
// type sniffed) and whose rest is rest. It returns the bytes to send first, the reader of the
// rest, and what was removed ("gps", "all" or "none"). For a JPEG, BMP, a still PNG or WebP
// with StripOff, a TIFF, ICO or PSD whose parts are all in the head, and formats the guard does
// not know, the reader is rest itself, so Pieces keep their fast path.
//
// measured says the file was admitted as an image type whose size the guard reads ("image/*"):
// if the guard finds no format it knows in it, the file is refused (*TypeError, Unchecked), so
// that a file the sniffer and the guard see differently is never stored unmeasured.
func Guard(head []byte, rest io.Reader, opts imageguard.Options, measured bool) ([]byte, io.Reader, string, error) {
	res, err := imageguard.Guard(head, rest, opts)
	if err != nil {
		return nil, nil, "", err
	}
	if measured && res.Format == "" {
		return nil, nil, "", &TypeError{Type: baseType(Sniff(head)), Reason: Unchecked}
	}
	return res.Prefix, res.Rest, res.Removed, nil
}

// CheckExisting refuses a store's answer for a public id that was already taken (overwrite=false:
// "existing": true, with the existing file's details) unless it lies in the signed-in user's own
// folder, where it is the user's own retry: anyone else would learn of another's file, and get
// a URL serving its bytes as if it were theirs.
func CheckExisting(answer []byte, p store.Params) error {
	if !bytes.Contains(answer, []byte(`"existing"`)) {
		return nil
	}
	var a struct {
		Existing bool   `json:"existing"`
		PublicID string `json:"public_id"`
	}
	if err := json.Unmarshal(answer, &a); err != nil || !a.Existing {
		return nil // the store has checked it is JSON
	}
	if p.UploadedBy != "" && p.Folder != "" && strings.HasPrefix(a.PublicID, p.Folder+"/") {
		return nil
	}
	return &TakenError{PublicID: a.PublicID}
}
