// Package store says what an upload asks of a store: the Params that both stores take,
// internal/cloudinary's Client and internal/localstore's Store. It imports only the standard
// library, so that neither store needs the other, nor the HTTP layer, to know what an upload is.
//
// A store's Upload reads the file to its end (or fails) and answers with the upload result as
// JSON, in Cloudinary's field names. Its errors are its own package's values; the HTTP layer
// (the root's errors.go) decides what a client sees of them.
package store

import (
	"context"
	"time"
)

// Params are the per-upload choices a client may make, already checked by the HTTP layer.
type Params struct {
	PublicID string            // empty: the store picks one
	Tags     []string          // may be empty
	Extra    map[string]string // the other parameters of SIGNABLE_PARAMS the client set (context, …)
	Filename string            // the client's file name, base name only; may be empty
	BaseURL  string            // the server as the client reached it, e.g. http://localhost:8080; for stores that serve files themselves
	Chunked  bool              // the file may not fit one request (size unknown or too large): send it in chunks
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

// DeleteTokenTTL is how long a delete token deletes its file: Cloudinary's 10 minutes, which the
// local store's own tokens keep too.
const DeleteTokenTTL = 10 * time.Minute

// UploadedByKey is the context key that carries who uploaded a file.
const UploadedByKey = "uploaded_by"
