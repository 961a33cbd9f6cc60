package upload

import (
	"errors"
	"fmt"
	"strings"
)

// The pipeline's own errors. The HTTP layer (the root's errors.go) decides what a client sees
// of them; the image guard's refusals come out as internal/imageguard's values, and a store's
// failures as the store's.
var (
	// ErrEmpty: the file has no bytes.
	ErrEmpty = errors.New("file is empty")
	// ErrStopped: the store read the file after its upload ended.
	ErrStopped = errors.New("upload body read after the upload ended")
	// ErrUpstreamTimeout is the cause of the upload's context when the store held the file
	// without reading it, or without answering after its end, for Rules.UploadTimeout.
	ErrUpstreamTimeout = errors.New("the store did not read or answer in time")
)

// TooLargeError: the file passed Rules.MaxBytes.
type TooLargeError struct{ Limit int64 }

func (e *TooLargeError) Error() string { return fmt.Sprintf("file is larger than %d bytes", e.Limit) }

// TypeReason says why a sniffed type was refused.
type TypeReason int

const (
	// NotAllowed: Rules.AllowedTypes does not admit the type.
	NotAllowed TypeReason = iota
	// Unchecked: an image type that "image/*" does not cover (the guard cannot read its
	// size), or one the guard found no format it knows in.
	Unchecked
	// KeepsLocation: a type "image/*" measures whose metadata (GPS included) the guard cannot
	// remove, while Rules.Image.Strip removes it from others.
	KeepsLocation
)

// TypeError: the file's sniffed type was refused.
type TypeError struct {
	Type    string   // the sniffed type, without parameters
	Allowed []string // Rules.AllowedTypes
	Reason  TypeReason
}

func (e *TypeError) Error() string {
	return fmt.Sprintf("file type %s refused (reason %d; allowed: %s)", e.Type, e.Reason, strings.Join(e.Allowed, ", "))
}

// TakenError: the store answered with an existing file for a public id outside the uploader's
// own folder (overwrite=false).
type TakenError struct{ PublicID string }

func (e *TakenError) Error() string { return e.PublicID + " exists" }

// ReadError: reading File.Body failed (the source's own error is Err: the client's body broke
// off, stalled, passed the request's bound...).
type ReadError struct{ Err error }

func (e *ReadError) Error() string { return "read file: " + e.Err.Error() }
func (e *ReadError) Unwrap() error { return e.Err }
