package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"cloudinary-upload-api/internal/admission"
	"cloudinary-upload-api/internal/auth"
	"cloudinary-upload-api/internal/formstream"
	"cloudinary-upload-api/internal/imageguard"
	"cloudinary-upload-api/internal/ratelimit"
	"cloudinary-upload-api/internal/store"
	"cloudinary-upload-api/internal/upload"
)

// apiError is an error meant for the client: an HTTP status and a message.
type apiError struct {
	status  int
	message string
}

func (e apiError) Error() string { return e.message }

// The errors a client can see, one per row of the README's error table. The functions below
// the block build the rows whose message carries a detail (a limit, a name, Cloudinary's own
// message); storeError, formError, admissionError and imageAPIError map the internal packages'
// errors onto these.
var (
	errNotFound            = apiError{http.StatusNotFound, "not found"}
	errMethodNotAllowed    = apiError{http.StatusMethodNotAllowed, "method not allowed"}
	errNotMultipart        = apiError{http.StatusUnsupportedMediaType, "Content-Type must be multipart/form-data with a boundary"}
	errMalformedBody       = apiError{http.StatusBadRequest, "malformed multipart body"}
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
	errClientBusy          = apiError{http.StatusTooManyRequests, "too many uploads in progress from this client; try again when one has finished"}
	errClientMemory        = apiError{http.StatusTooManyRequests, "this client holds its share of the server's memory; try again when one upload has finished"}
	errBodyIdle            = apiError{http.StatusRequestTimeout, "the request body stalled: nothing arrived for too long"}
	errFormTooLarge        = apiError{http.StatusBadRequest, "form fields and part headers are larger than " + formatBytes(formOverhead) + " (files not counted)"}
	errTooManyParts        = apiError{http.StatusBadRequest, fmt.Sprintf("form has more than %d parts", maxFormParts)}
	errNoDelimiter         = apiError{http.StatusBadRequest, "the body has no delimiter line of the boundary its Content-Type gives"}
	errTransferEncoding    = apiError{http.StatusBadRequest, "form parts with a Content-Transfer-Encoding are not accepted"}
	errPublicIDOneFile     = apiError{http.StatusBadRequest, "not stored: public_id names one file, the first of the request; send this file in a request of its own"}
	errTooSlow             = apiError{http.StatusRequestTimeout, "the request body arrived too slowly"}
	errForeignOrigin       = apiError{http.StatusForbidden, "requests from pages on other origins are not accepted"}
	errTwoOrigins          = apiError{http.StatusBadRequest, "the request has more than one Origin header"}
	errUnauthorized        = apiError{http.StatusUnauthorized, "missing or wrong upload token: send Authorization: Bearer <token>"}
	errRateLimited         = apiError{http.StatusTooManyRequests, "too many requests from this client; try again later"}
	errQuotaExceeded       = apiError{http.StatusTooManyRequests, "not stored: this upload would pass your upload quota; try again when it resets (Retry-After)"}
	// Sign-in (AUTH_JWKS_URL, AUTH_JWT_SECRET): accessError maps internal/auth's reasons onto these.
	errSignInRequired      = apiError{http.StatusUnauthorized, "sign-in required: send the user's token as Authorization: Bearer <token>"}
	errTokenMalformed      = apiError{http.StatusUnauthorized, "the token is not a JSON Web Token: send the identity provider's token itself as Authorization: Bearer <token>"}
	errTokenAlgorithm      = apiError{http.StatusUnauthorized, "the token's signing algorithm is not accepted: RS, PS, ES or EdDSA with a key of AUTH_JWKS_URL, HS256 only with AUTH_JWT_SECRET"}
	errTokenMissingClaim   = apiError{http.StatusUnauthorized, "the token lacks a required claim: exp and sub"}
	errTokenExpired        = apiError{http.StatusUnauthorized, "the token has expired: get a fresh one from the identity provider"}
	errTokenNotYetValid    = apiError{http.StatusUnauthorized, "the token is not valid yet (nbf): check the clocks of the server that minted it"}
	errTokenIssuer         = apiError{http.StatusUnauthorized, "the token's issuer (iss) is not the one this server accepts (AUTH_ISSUER)"}
	errTokenAudience       = apiError{http.StatusUnauthorized, "the token's audience (aud) does not name this server (AUTH_AUDIENCE)"}
	errTokenUnknownKey     = apiError{http.StatusUnauthorized, "the token's key (kid) is not in the identity provider's JWKS (AUTH_JWKS_URL), or does not fit its alg"}
	errTokenBadSignature   = apiError{http.StatusUnauthorized, "the token's signature does not verify: it was not signed with a key of AUTH_JWKS_URL or with AUTH_JWT_SECRET"}
	errTokenSubject        = apiError{http.StatusUnauthorized, "the token's sub contains '&', which a Cloudinary signature cannot carry in uploaded_by"}
	errKeysUnavailable     = apiError{http.StatusServiceUnavailable, "sign-in keys are not available yet (AUTH_JWKS_URL cannot be fetched); try again shortly"}
	errPublicIDTaken       = apiError{http.StatusConflict, "public_id is already taken"}
	errUploadedBy          = apiError{http.StatusBadRequest, "context key uploaded_by is set by the server, not by the client"}
	errMetricsToken        = apiError{http.StatusUnauthorized, "GET /metrics needs the METRICS_TOKEN as a Bearer token"}
	errSignNeedsCloudinary = apiError{http.StatusNotImplemented, "signed direct uploads need Cloudinary credentials"}
	errSignNotJSON         = apiError{http.StatusUnsupportedMediaType, "Content-Type must be application/json"}
	errSignBadJSON         = apiError{http.StatusBadRequest, "body must be a JSON object of upload parameters"}
	errSignTooLarge        = apiError{http.StatusRequestEntityTooLarge, "body is larger than " + formatBytes(maxSignBody)}
	// DELETE /upload's (delete.go).
	errDeleteBadBody  = apiError{http.StatusBadRequest, "body must be the upload's answer, or a JSON object with public_id or delete_token"}
	errDeleteTooLarge = apiError{http.StatusRequestEntityTooLarge, "body is larger than " + formatBytes(maxDeleteBody)}
	errDeleteToken    = apiError{http.StatusForbidden, fmt.Sprintf("no valid delete_token: an upload's answer deletes its file for %d minutes", int(store.DeleteTokenTTL.Minutes()))}
	errDeleteNotYours = apiError{http.StatusForbidden, "public_id is not in your folder: only its uploader may delete a file"}
	// Resumable uploads' (resumable.go): the tus protocol's statuses, in our shape.
	errTusVersion            = apiError{http.StatusPreconditionFailed, "send Tus-Resumable: 1.0.0, the version of the tus protocol this server speaks"}
	errResumableContentType  = apiError{http.StatusUnsupportedMediaType, "Content-Type must be application/offset+octet-stream"}
	errResumableOffsetHeader = apiError{http.StatusBadRequest, "Upload-Offset must be a whole number of bytes"}
	errResumableOffset       = apiError{http.StatusConflict, "Upload-Offset is not where the upload stands: ask with HEAD, and send from there"}
	errResumableLength       = apiError{http.StatusBadRequest, "send Upload-Length (the file's size in bytes, at least what was sent) or Upload-Defer-Length: 1"}
	errResumableLengthSet    = apiError{http.StatusBadRequest, "Upload-Length differs from the upload's length, which is set"}
	errResumableMetadata     = apiError{http.StatusBadRequest, "Upload-Metadata must be comma-separated pairs of a key and its value in base64, each key once, at most 8 KiB"}
	errResumableNotFound     = apiError{http.StatusNotFound, "no such upload: it was never created here, was ended, or belongs to someone else"}
	errResumableExpired      = apiError{http.StatusGone, "the upload has expired (Upload-Expires): start it again"}
	errResumableLocked       = apiError{http.StatusLocked, "another request is writing to this upload; try again when it has ended"}
	errResumableTooLong      = apiError{http.StatusRequestEntityTooLarge, "not stored: the body goes past the upload's Upload-Length"}
	errResumableIncomplete   = apiError{http.StatusConflict, "the upload is not complete: HEAD says how far it is"}
	errResumableMoved        = apiError{http.StatusConflict, "the upload went on elsewhere (another request or server): ask with HEAD where it stands"}
	errResumableTakenOver    = apiError{http.StatusConflict, "a newer request for this upload took over from this one"}
	errResumableState        = apiError{http.StatusServiceUnavailable, "the uploads' state cannot be read or kept (Redis does not answer); try again shortly"}
	// Logged when the client disconnected; nobody reads the answer (499, as nginx logs it).
	errClientGone = apiError{499, "client closed the request"}
	// The image guard's (imageguard.go builds the other two, which carry the image's own details).
	errImageMetadataTooLarge = apiError{http.StatusRequestEntityTooLarge, "the image's metadata is larger than " + formatBytes(imageguard.DefaultMaxMetadataBytes)}
)

// formError maps an error of the form reader to what the client sees; ok is false for an
// error of the request body itself, which bodyError explains.
func formError(err error) (api apiError, ok bool) {
	switch {
	case errors.Is(err, formstream.ErrTooLarge), errors.Is(err, formstream.ErrHeaderTooLarge):
		return errFormTooLarge, true
	case errors.Is(err, formstream.ErrTooManyParts):
		return errTooManyParts, true
	case errors.Is(err, formstream.ErrTransferEncoding):
		return errTransferEncoding, true
	case errors.Is(err, formstream.ErrNoDelimiter): // before ErrTruncated, which it wraps
		return errNoDelimiter, true
	case errors.Is(err, formstream.ErrTruncated):
		return errBodyIncomplete, true
	case errors.Is(err, formstream.ErrMalformed):
		return errMalformedBody, true
	}
	return apiError{}, false
}

// errNoFilePart is the 400 for a form without a file part.
func errNoFilePart(fileFields []string) apiError {
	return apiError{http.StatusBadRequest, fmt.Sprintf("form has no file part (a part with a filename, named %s)", orList(fileFields))}
}

// errNotFileField is the 400 for a file part under a name FILE_FIELDS does not list.
func errNotFileField(name string, fileFields []string) apiError {
	return apiError{http.StatusBadRequest, fmt.Sprintf("file part %q is not accepted: send files as %s", truncate(name, 64), orList(fileFields))}
}

// errFieldAfterFile is the 400 for a field of SIGNABLE_PARAMS sent after a file, which was
// stored without it (the answer's files say what was stored).
func errFieldAfterFile(name string) apiError {
	return apiError{http.StatusBadRequest, fmt.Sprintf("form field %q came after a file, which was stored without it: send text fields before the files", truncate(name, 64))}
}

// errTooManyFiles is the 400 for the file part past MAX_FILES_PER_REQUEST.
func errTooManyFiles(limit int) apiError {
	return apiError{http.StatusBadRequest, fmt.Sprintf("not stored: at most %d files per request", limit)}
}

// errBodyTooLarge is the 413 for a request body over the bound of MAX_FILES_PER_REQUEST files
// of MAX_UPLOAD_BYTES; with one file per request it is the file's own 413.
func errBodyTooLarge(lim uploadLimits) apiError {
	if lim.maxFiles <= 1 {
		return errTooLarge(lim.maxFileBytes)
	}
	return apiError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request is larger than the limit of %d files of %s", lim.maxFiles, formatBytes(lim.maxFileBytes))}
}

// errQuotaTooLarge is the 413 for an upload larger than the whole of USER_QUOTA: no wait helps.
func errQuotaTooLarge(spec ratelimit.QuotaSpec) apiError {
	return apiError{http.StatusRequestEntityTooLarge, "not stored: this upload is larger than the whole upload quota of " + spec.Text}
}

// orList writes names as "a, b or c", each quoted.
func orList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	if len(q) < 2 {
		return strings.Join(q, "")
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// accessError says what a client refused by identify sees: internal/auth's reasons, one row
// each, or the apiError itself (UPLOAD_TOKENS' 401).
func accessError(err error) apiError {
	var api apiError
	if errors.As(err, &api) {
		return api
	}
	for _, row := range []struct {
		reason error
		api    apiError
	}{
		{auth.ErrKeysUnavailable, errKeysUnavailable},
		{auth.ErrNoToken, errSignInRequired},
		{auth.ErrMalformed, errTokenMalformed},
		{auth.ErrAlgorithm, errTokenAlgorithm},
		{auth.ErrMissingClaim, errTokenMissingClaim},
		{auth.ErrExpired, errTokenExpired},
		{auth.ErrNotYetValid, errTokenNotYetValid},
		{auth.ErrIssuer, errTokenIssuer},
		{auth.ErrAudience, errTokenAudience},
		{auth.ErrUnknownKey, errTokenUnknownKey},
		{auth.ErrBadSignature, errTokenBadSignature},
	} {
		if errors.Is(err, row.reason) {
			return row.api
		}
	}
	return errTokenMalformed
}

// admissionError says what a client refused by internal/admission sees.
func admissionError(err error) error {
	switch {
	case errors.Is(err, admission.ErrClientBusy):
		return fmt.Errorf("%w: %w", errClientBusy, err)
	case errors.Is(err, admission.ErrClientMemory):
		return fmt.Errorf("%w: %w", errClientMemory, err)
	case errors.Is(err, admission.ErrBudgetSpent), errors.Is(err, admission.ErrTooManyUploads):
		return fmt.Errorf("%w: %w", errTooBusy, err)
	case errors.Is(err, admission.ErrTooSlow):
		return fmt.Errorf("%w: %w", errTooSlow, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: while waiting to be admitted: %w", errClientGone, err)
	}
	return err // ErrNeverFits: loadConfig makes sure every upload fits; a 500 if not
}

// imageAPIError is what the client is told when internal/imageguard refuses a file, or nil
// for an error that is not the guard's (a failure to read the body).
func imageAPIError(err error) *apiError {
	var size *imageguard.SizeError
	var bad *imageguard.MalformedError
	var frames *imageguard.FramesError
	switch {
	case errors.As(err, &size):
		return &apiError{http.StatusRequestEntityTooLarge, fmt.Sprintf("image is %d × %d pixels: more than %d on a side or %d in all (MAX_IMAGE_DIMENSION, MAX_PIXELS)",
			size.Width, size.Height, size.MaxDimension, size.MaxPixels)}
	case errors.As(err, &frames) && frames.TooMany():
		return &apiError{http.StatusRequestEntityTooLarge, fmt.Sprintf("image has more than %d frames (MAX_FRAMES)", frames.MaxFrames)}
	case errors.As(err, &frames):
		return &apiError{http.StatusRequestEntityTooLarge, fmt.Sprintf("image's frames add up to more than %d pixels (MAX_ANIMATION_PIXELS)", frames.MaxAnimationPixels)}
	case errors.As(err, &bad):
		return &apiError{http.StatusBadRequest, "the image cannot be read exactly: " + bad.Error()}
	case errors.Is(err, imageguard.ErrMetadataTooLarge):
		return &errImageMetadataTooLarge
	}
	return nil
}

// uploadError says what a client sees of internal/upload's errors: its own values, the image
// guard's refusals, the request body's failures (bodyError), an error of the caller's own
// (USER_QUOTA's) as it is, and a store's failure as it is (storeError maps it), or as
// errClientGone when the client left first (ctx is the upload's, uploadContext).
func uploadError(ctx context.Context, err error, lim uploadLimits) error {
	var tooLarge *upload.TooLargeError
	var typ *upload.TypeError
	var taken *upload.TakenError
	var read *upload.ReadError
	var api apiError
	switch {
	case errors.As(err, &tooLarge):
		return fmt.Errorf("%w: %w", errTooLarge(tooLarge.Limit), err)
	case errors.As(err, &typ) && typ.Reason == upload.Unchecked:
		return fmt.Errorf("%w: %w", errTypeUnchecked(typ.Type), err)
	case errors.As(err, &typ) && typ.Reason == upload.KeepsLocation:
		return fmt.Errorf("%w: %w", errTypeKeepsLocation(typ.Type), err)
	case errors.As(err, &typ):
		return fmt.Errorf("%w: %w", errTypeNotAllowed(typ.Type, typ.Allowed), err)
	case errors.Is(err, upload.ErrEmpty):
		return fmt.Errorf("%w: %w", errEmptyFile, err)
	case errors.As(err, &taken):
		return fmt.Errorf("%w: %w", errPublicIDTaken, err)
	case errors.Is(err, upload.ErrUpstreamTimeout):
		return fmt.Errorf("%w: %w", errUpstreamTimeout, err)
	}
	if api := imageAPIError(err); api != nil {
		return fmt.Errorf("%w: %w", *api, err)
	}
	switch {
	case errors.As(err, &read):
		return bodyError(read.Err, lim)
	case errors.As(err, &api):
		return err
	case errors.Is(context.Cause(ctx), errClientGone):
		return fmt.Errorf("%w: %w", errClientGone, err)
	}
	return err
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

// errTypeUnchecked is the 415 for an image type that "image/*" does not cover: the image
// guard cannot read its size, so it must be named in ALLOWED_TYPES to be accepted.
func errTypeUnchecked(got string) apiError {
	return apiError{http.StatusUnsupportedMediaType, fmt.Sprintf("file type %s is not allowed: the server cannot check its size (name it in ALLOWED_TYPES to accept it unchecked)", got)}
}

// errTypeKeepsLocation is the 415 for an image type that "image/*" measures but whose metadata,
// GPS included, the guard cannot remove (TIFF, PSD), while STRIP_METADATA removes it from others.
func errTypeKeepsLocation(got string) apiError {
	return apiError{http.StatusUnsupportedMediaType, fmt.Sprintf("file type %s is not allowed: the server cannot remove its location (name it in ALLOWED_TYPES, or set STRIP_METADATA=off, to accept it with its metadata)", got)}
}

// errUpstreamRejected passes on Cloudinary's own 4xx about the file, with its message.
func errUpstreamRejected(message string) apiError {
	return apiError{http.StatusBadRequest, "Cloudinary rejected the file: " + message}
}

// asAPIError is what the client sees of err: the apiError it wraps, else what storeError
// makes of a store's error, else a 500.
func asAPIError(err error) apiError {
	var apiErr apiError
	if errors.As(err, &apiErr) {
		return apiErr
	}
	if apiErr, _, ok := storeError(err); ok {
		return apiErr
	}
	return errInternal
}

// storeErrors is the one table from the kinds of the stores' errors (store.Kind) to what the
// client sees and to the kind that the metrics count (upstream_errors_total's label). A kind not
// in it is none of the store's refusals: a 500.
var storeErrors = map[store.Kind]struct {
	api   apiError
	label string
}{
	store.Timeout:     {errUpstreamTimeout, "timeout"},
	store.Credentials: {errUpstreamCredentials, "credentials"},
	store.Failed:      {errUpstreamFailed, "server_error"},
	store.Unreachable: {errUpstreamUnreachable, "unreachable"},
	store.BadAnswer:   {errUpstreamNotJSON, "bad_answer"},
	store.RateLimited: {errUpstreamRateLimited, "rate_limited"},
	store.Refused:     {errUpstreamRejected(""), "rejected"}, // with the store's message: see storeError
	store.Empty:       {errEmptyFile, "rejected"},
}

// storeError is what the client sees of a store's error, by its kind (storeErrors), and the
// metrics' label for it; ok is false for an error of no kind there. When one error wraps several
// kinds, store.KindOf picks (a timeout wraps the failure it cut short).
func storeError(err error) (api apiError, kind string, ok bool) {
	k := store.KindOf(err)
	row, ok := storeErrors[k]
	if !ok {
		return apiError{}, "", false
	}
	if k == store.Refused {
		msg, _ := store.Message(err)
		return errUpstreamRejected(msg), row.label, true
	}
	return row.api, row.label, true
}

// deleteError maps the stores' refusals of a deletion (no such file, a refused delete token) to
// what the client sees; any other error is the store's, which storeError maps.
func deleteError(err error) error {
	switch store.KindOf(err) {
	case store.NotFound:
		return fmt.Errorf("%w: %w", errNotFound, err)
	case store.TokenRefused:
		return fmt.Errorf("%w: %w", errDeleteToken, err)
	}
	return err
}

// logClientError logs err as the client will see it: a 5xx with its cause as an error, a
// refusal as information.
func logClientError(r *http.Request, err error) apiError {
	log := loggerFrom(r.Context())
	apiErr := asAPIError(err)
	if apiErr.status >= 500 {
		log.ErrorContext(r.Context(), "request failed", "status", apiErr.status, "err", err)
	} else {
		log.InfoContext(r.Context(), "request refused", "status", apiErr.status, "err", err)
	}
	return apiErr
}

// errorMessage is the inside of Cloudinary's error shape.
type errorMessage struct {
	Message string `json:"message"`
}

// errorBody is Cloudinary's error shape: {"error":{"message":…}}.
func errorBody(e apiError) map[string]errorMessage {
	return map[string]errorMessage{"error": {Message: e.message}}
}

// writeError answers in Cloudinary's shape. A 5xx is logged with its cause; the client never sees the cause.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	apiErr := logClientError(r, err)
	if err := encode(w, apiErr.status, errorBody(apiErr)); err != nil {
		loggerFrom(r.Context()).WarnContext(r.Context(), "write error response", "err", err)
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
	// Whole once flushed, so an answer sent before the request's body has been read (answerEarly)
	// can be read to its end while the server still drains the body.
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
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
