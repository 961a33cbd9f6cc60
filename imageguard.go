package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"cloudinary-upload-api/internal/imageguard"
)

// metadataRemovedHeader tells the client which metadata policy its file went through.
const metadataRemovedHeader = "X-Metadata-Removed"

// guardImage applies STRIP_METADATA and the pixel and frame limits to a file whose first
// bytes, head, have been read (and its type sniffed) and whose rest is file. It returns the
// bytes to send first, the reader of the rest, and what was removed ("gps", "all" or "none").
// For a JPEG, BMP, a still PNG or WebP with STRIP_METADATA=off, a TIFF, ICO or PSD whose parts
// are all in the head, and formats the guard does not know, the reader is file itself; a PNG
// or WebP being stripped, an animation, a GIF (whose every frame is checked), a HEIC or AVIF
// (its boxes walked to the end), and a TIFF, ICO or PSD read as it streams come through the
// guard's walker, which hands out pieces when file does. Either way a pieceReader keeps its
// fast path.
//
// measured says the file was admitted as an image type whose size the guard reads (ALLOWED_TYPES
// image/*): if the guard finds no format it knows in it, the file is refused, so that a file
// the sniffer and the guard see differently is never stored unmeasured.
func guardImage(head []byte, file io.Reader, lim uploadLimits, measured bool) ([]byte, io.Reader, string, error) {
	res, err := imageguard.Guard(head, file, lim.image)
	if err != nil {
		return nil, nil, "", imageError(err, lim)
	}
	if measured && res.Format == "" {
		base, _, _ := strings.Cut(sniffType(head).String(), ";")
		return nil, nil, "", errTypeUnchecked(base)
	}
	rest := res.Rest
	if res.Wrapped {
		g := &guardedFile{r: res.Rest}
		rest = g
		if p, ok := res.Rest.(pieceReader); ok { // over a pieceReader, Rest is one too: the fast path stays
			rest = &guardedPieces{guardedFile: g, p: p}
		}
	}
	return res.Prefix, rest, res.Removed, nil
}

// guardedFile turns the guard's errors met after the first bytes went out (a chunk cut short,
// a metadata chunk over the limit) into the client's 400 or 413. The upload is abandoned: the
// uploader never finishes a file whose read failed.
type guardedFile struct{ r io.Reader }

func (g *guardedFile) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	return n, guardedError(err)
}

// guardedPieces is a guardedFile whose walker hands out pieces.
type guardedPieces struct {
	*guardedFile
	p pieceReader
}

func (g *guardedPieces) NextPiece(beforeWait func() error) ([]byte, error) {
	piece, err := g.p.NextPiece(beforeWait)
	return piece, guardedError(err)
}

func guardedError(err error) error {
	if err != nil && !errors.Is(err, io.EOF) {
		if api := imageAPIError(err); api != nil {
			return fmt.Errorf("%w: %w", *api, err)
		}
	}
	return err
}

// imageError explains why the guard refused a file; a failure to read the body is the body's.
func imageError(err error, lim uploadLimits) error {
	if api := imageAPIError(err); api != nil {
		return fmt.Errorf("%w: %w", *api, err)
	}
	return bodyError(err, lim)
}

// setMetadataRemoved says, in X-Metadata-Removed, what the guard removed from each file part:
// one value for one file, a comma-separated list in the order of the parts for several ("none"
// for a file that was not stored). Nothing is said when no file was stored.
func setMetadataRemoved(w http.ResponseWriter, slots []fileSlot) {
	values := make([]string, len(slots))
	stored := false
	for i, s := range slots {
		values[i] = "none"
		if s.err == nil && s.removed != "" {
			values[i], stored = s.removed, true
		}
	}
	if stored {
		w.Header().Set(metadataRemovedHeader, strings.Join(values, ", "))
	}
}
