package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"cloudinary-upload-api/internal/imageguard"
)

// apiError is an error meant for the client: an HTTP status and a message.
type apiError struct {
	status  int
	message string
}

func (e apiError) Error() string { return e.message }

// The errors a client can see, one per row of the README's error table.
var (
	errNotFound            = apiError{http.StatusNotFound, "not found"}
	errMethodNotAllowed    = apiError{http.StatusMethodNotAllowed, "method not allowed"}
	errNotMultipart        = apiError{http.StatusUnsupportedMediaType, "Content-Type must be multipart/form-data with a boundary"}
	errMalformedBody       = apiError{http.StatusBadRequest, "malformed multipart body"}
	errNoFilePart          = apiError{http.StatusBadRequest, `form has no "file" part`}
	errEmptyFile           = apiError{http.StatusBadRequest, "file is empty"}
	errBodyIncomplete      = apiError{http.StatusBadRequest, "request body ended before the file was complete"}
	errUpstreamCredentials = apiError{http.StatusBadGateway, "Cloudinary rejected the server's credentials"}
	errUpstreamFailed      = apiError{http.StatusBadGateway, "Cloudinary failed to process the upload"}
	errUpstreamUnreachable = apiError{http.StatusBadGateway, "could not reach Cloudinary"}
	errUpstreamNotJSON     = apiError{http.StatusBadGateway, "Cloudinary sent an answer that is not JSON"}
	errUpstreamRateLimited = apiError{http.StatusServiceUnavailable, "Cloudinary is limiting the upload rate; try again later"}
	errUpstreamTimeout     = apiError{http.StatusGatewayTimeout, "Cloudinary did not answer in time"}
	errInternal            = apiError{http.StatusInternalServerError, "internal error"}
	errTooBusy             = apiError{http.StatusServiceUnavailable, "too many uploads in progress; try again shortly"}
	errBodyIdle            = apiError{http.StatusRequestTimeout, "the request body stalled: nothing arrived for too long"}
	// The image guard's (imageguard.go builds the other two, which carry the image's own details).
	errImageMetadataTooLarge = apiError{http.StatusRequestEntityTooLarge, "the image's metadata is larger than " + formatBytes(imageguard.DefaultMaxMetadataBytes)}
)

// imageAPIError is what the client is told when internal/imageguard refuses a file, or nil
// for an error that is not the guard's (a failure to read the body).
func imageAPIError(err error) *apiError {
	var size *imageguard.SizeError
	var bad *imageguard.MalformedError
	switch {
	case errors.As(err, &size):
		return &apiError{http.StatusRequestEntityTooLarge, fmt.Sprintf("image is %d × %d pixels: more than %d on a side or %d in all (MAX_IMAGE_DIMENSION, MAX_PIXELS)",
			size.Width, size.Height, size.MaxDimension, size.MaxPixels)}
	case errors.As(err, &bad):
		return &apiError{http.StatusBadRequest, "the image cannot be read exactly: " + bad.Error()}
	case errors.Is(err, imageguard.ErrMetadataTooLarge):
		return &errImageMetadataTooLarge
	}
	return nil
}

// errBadField is a 400 about one text field of the form.
func errBadField(format string, args ...any) apiError {
	return apiError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// errTooLarge is the 413 for a file over the limit.
func errTooLarge(limit int64) apiError {
	return apiError{http.StatusRequestEntityTooLarge, "file is larger than the limit of " + formatBytes(limit)}
}

// errTypeNotAllowed is the 415 for a sniffed type that ALLOWED_TYPES refuses.
func errTypeNotAllowed(got string, allowed []string) apiError {
	return apiError{http.StatusUnsupportedMediaType, fmt.Sprintf("file type %s is not allowed (allowed: %s)", got, strings.Join(allowed, ", "))}
}

// errUpstreamRejected passes on Cloudinary's own 4xx about the file, with its message.
func errUpstreamRejected(message string) apiError {
	return apiError{http.StatusBadRequest, "Cloudinary rejected the file: " + message}
}

// writeError answers in Cloudinary's shape. A 5xx is logged with its cause; the client never sees the cause.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	log := loggerFrom(r.Context())
	apiErr := errInternal
	if !errors.As(err, &apiErr) {
		apiErr = errInternal
	}
	if apiErr.status >= 500 {
		log.ErrorContext(r.Context(), "request failed", "status", apiErr.status, "err", err)
	} else {
		log.InfoContext(r.Context(), "request refused", "status", apiErr.status, "err", err)
	}
	body := map[string]map[string]string{"error": {"message": apiErr.message}}
	if err := encode(w, apiErr.status, body); err != nil {
		log.WarnContext(r.Context(), "write error response", "err", err)
	}
}

// encode writes v as the JSON body of a response with the given status.
func encode(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode json: %w", err)
	}
	return writeJSON(w, status, b)
}

// writeJSON writes an already encoded JSON body.
func writeJSON(w http.ResponseWriter, status int, body []byte) error {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	if _, err := w.Write(append(body, '\n')); err != nil {
		return fmt.Errorf("write body: %w", err)
	}
	return nil
}

// formatBytes prints a byte count the way people read limits: 100 MiB, 512 KiB, 1000 bytes.
func formatBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
