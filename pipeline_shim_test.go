package main

import (
	"context"
	"io"

	"github.com/gabriel-vasile/mimetype"

	"cloudinary-upload-api/internal/store"
	"cloudinary-upload-api/internal/upload"
)

// The names the tests of package main used before the pipeline moved into internal/upload.

const sniffLen = upload.SniffLen

type pieceReader = upload.Pieces

func sniffType(head []byte) *mimetype.MIME { return upload.Sniff(head) }

func uncheckedImageTypes(allowed []string) []string { return upload.UncheckedImageTypes(allowed) }

func checkExisting(result []byte, p store.Params) error { return upload.CheckExisting(result, p) }

// guardImage is the pipeline's guard stage, with its errors as a client sees them.
func guardImage(head []byte, file io.Reader, lim uploadLimits, measured bool) ([]byte, io.Reader, string, error) {
	prefix, rest, removed, err := upload.Guard(head, file, lim.image, measured)
	if err != nil {
		return nil, nil, "", uploadError(context.Background(), err, lim)
	}
	return prefix, rest, removed, nil
}
