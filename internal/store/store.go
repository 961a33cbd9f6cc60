// Package store is the contract between the server and its stores (internal/cloudinary's Client,
// internal/localstore's Store): the Params of an upload, the Kind of a store's errors, and the
// optional interfaces of what only some stores do. It imports only the standard library, so that
// neither store needs the other, nor the HTTP layer, to know what an upload is.
//
// A store's Upload reads the file to its end (or fails) and answers with the upload result as
// JSON, in Cloudinary's field names. Its errors are its own package's values, each of a Kind
// (KindOf) by which the HTTP layer (the root's errors.go) decides what a client sees of them.
// What only some stores do is an optional interface: Holding (a store that holds some of a
// file in memory as it stores it) and Serving (a store that serves its files itself).
package store

import (
	"context"
	"io"
	"time"
)

// Params are the per-upload choices a client may make, already checked by the HTTP layer.
type Params struct {
	PublicID string            // empty: the store picks one
	Tags     []string          // may be empty
	Extra    map[string]string // the other parameters of SIGNABLE_PARAMS the client set (context, …)
	Filename string            // the client's file name, base name only; may be empty
	BaseURL  string            // the server as the client reached it, e.g. http://localhost:8080; for stores that serve files themselves
	// Size is the file's size when known; else the most it can be, when that is known (a form's
	// file is no larger than its request); −1 when neither is. A store decides from it how to
	// send the file (Cloudinary: in one request, or in chunks).
	Size int64
	// DeleteToken asks for a delete token in the answer ("delete_token"): whoever holds the answer
	// may delete the file with it for DeleteTokenTTL (Cloudinary's return_delete_token).
	DeleteToken bool
	// Folder goes in front of the public id (chosen or picked), as Cloudinary's folder parameter
	// does: the server's UPLOAD_FOLDER, or the signed-in user's own folder. Empty: none (a store
	// built with a folder of its own uses that).
	Folder string
	// UploadedBy is the signed-in user's subject, set by the server: the store records it as the
	// file's context uploaded_by and answers it in context.custom, as Cloudinary does. Empty: none.
	UploadedBy string
	// Memory is what the upload may hold beyond what it was admitted with, reserved as it is
	// used; nil: no bound.
	Memory Memory
}

// Memory is the server's budget as one upload sees it: a store that holds a file's bytes (a
// chunk, read whole before it is sent) reserves them here first, as they arrive.
type Memory interface {
	// Grow reserves n more bytes, waiting within the server's bound; its error says why not,
	// and is the caller's to return as it is.
	Grow(ctx context.Context, n int64) error
	// Shrink gives back everything Grow reserved.
	Shrink()
}

// Holding is implemented by a store that holds some of a file's bytes in memory as it stores it
// (Cloudinary's chunked upload reads each chunk whole before it is sent, so that a failed attempt
// can be sent again). A store without it streams every file through, holding nothing but the
// piece that a read hands it.
type Holding interface {
	// Holds is the most an upload of a file of size bytes (as Params.Size) holds through
	// Params.Memory, reserved as it is used; 0 when it streams the file through. A store that
	// holds a file's bytes reads ahead of its requests, and times each of them itself.
	Holds(size int64) int64
}

// Holds is what s, a store, holds of a file of size bytes: its Holds, or 0 when it is not Holding.
func Holds(s any, size int64) int64 {
	if h, ok := s.(Holding); ok {
		return h.Holds(size)
	}
	return 0
}

// Serving is implemented by a store that serves its files itself (the local store, whose
// answers' URLs point at this server), rather than from a delivery network of its own.
type Serving interface {
	// OpenStored opens a stored file by the last segment of the URL its upload answered. Any
	// name the store did not answer is an error that wraps fs.ErrNotExist.
	OpenStored(name string) (*Stored, error)
}

// Stored is a stored file, open for serving, and what serving it needs. Its owner closes it.
type Stored struct {
	io.ReadSeekCloser
	ContentType string    // sniffed when it was stored
	Etag        string    // the upload's etag, as answered
	Filename    string    // a name to save it as: the client's, with the stored format's extension; empty: none
	Created     time.Time // when it was stored; zero when unknown
}

// DeleteTokenTTL is how long a delete token deletes its file: Cloudinary's 10 minutes, which the
// local store's own tokens keep too.
const DeleteTokenTTL = 10 * time.Minute

// UploadedByKey is the context key that carries who uploaded a file.
const UploadedByKey = "uploaded_by"
