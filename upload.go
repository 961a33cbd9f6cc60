package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"cloudinary-upload-api/internal/admission"
	"cloudinary-upload-api/internal/formstream"
	"cloudinary-upload-api/internal/imageguard"
	"cloudinary-upload-api/internal/store"
	"cloudinary-upload-api/internal/upload"
)

// uploadLimits are the server-side rules of POST /upload, never chosen by the client.
type uploadLimits struct {
	maxFileBytes  int64
	allowedTypes  []string
	uploadTimeout time.Duration
	idleTimeout   time.Duration // the client may send nothing for this long
	maxFiles      int           // file parts per request (MAX_FILES_PER_REQUEST)
	fileFields    []string      // names of the parts taken as files (FILE_FIELDS)
	signable      []string      // text fields a client may set: the parameters POST /sign signs (SIGNABLE_PARAMS)
	folder        string        // UPLOAD_FOLDER; with sign-in on, a template holding {sub}
	signIn        bool
	image         imageguard.Options
}

const (
	formOverhead   = 64 << 10 // boundaries, part headers and text fields allowed on top of the files
	maxFormParts   = 1000     // parts of one form, files and text fields
	maxFieldBytes  = 2048     // one text field
	maxPublicIDLen = 255      // Cloudinary's limit
	maxTags        = 50
	maxTagLen      = 255
	// An error answered before the body has been read is only seen by a browser that is still
	// sending if the server reads on: a close with unread data resets the connection, and the
	// browser drops the answer. So the rest of the body is read and dropped, up to these bounds.
	maxDrainBytes = 32 << 20
	drainTimeout  = 15 * time.Second
)

// retryAfterBusy is what a client refused for lack of memory or of its own places is told to
// wait, in seconds.
const retryAfterBusy = "5"

// handleUpload serves POST /upload: it streams each file part of the form to the uploader, in order.
// quota reserves the client's USER_QUOTA (nil: none), adm decides whether an upload gets in (and
// paces its body); a refused one is answered at once.
func handleUpload(up uploader, lim uploadLimits, adm *uploadAdmission, quota *uploadQuota) http.Handler {
	bufs := &uploadBuffers{readers: upload.NewBuffers(leastRequestBuffer, requestBufferBytes)}
	pl := upload.New(lim.rules(), up)
	return admitUpload(adm, quota, func(w http.ResponseWriter, r *http.Request, mem store.Memory) (int, []byte, error) {
		return serveUpload(w, r, pl, lim, bufs, mem)
	})
}

// serveAdmitted serves one admitted upload request, whose body watchBody installed: a status and
// an answer, or an error for the whole request (then nothing was stored). mem is the upload's
// hold on UPLOAD_MEMORY, for the store.
type serveAdmitted func(w http.ResponseWriter, r *http.Request, mem store.Memory) (int, []byte, error)

// admitUpload is what every way in to the pipeline does around its own serving: USER_QUOTA
// (quota, nil: none), admission and the minimum data rate (adm), and the answer; a refused
// upload is answered at once (refuseEarly).
func admitUpload(adm *uploadAdmission, quota *uploadQuota, serve serveAdmitted) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, body := watchBody(w, r) // refuseEarly drains it, past its bound and timers
		spend, err := quota.begin(r)
		defer spend.settle(w, r) // gives back what was not stored, however the upload ends
		if err != nil {
			spend.settle(w, r)
			refuseEarly(w, r, err)
			return
		}
		r = withQuotaSpend(r, spend)
		mem, err := adm.admit(w, r)
		if err != nil {
			spend.settle(w, r)
			refuseEarly(w, r, err)
			return
		}
		defer mem.release() // however the upload ends
		body.Pace(adm.minRate)
		status, result, err := serve(w, r, mem)
		spend.settle(w, r) // before the answer: its RateLimit fields say what is left
		if err != nil {
			mem.release()             // the drain holds none of the upload's memory
			adm.refusedFor(w, r, err) // a chunk that found the memory spent
			if errors.Is(err, errTooSlow) {
				// Reading on at that pace would hold the connection for nothing.
				adm.refused("too_slow")
				w.Header().Set("Connection", "close")
				writeError(w, r, err)
				return
			}
			refuseEarly(w, r, err)
			return
		}
		if status != http.StatusOK {
			answerEarly(w, r, func() {
				if err := writeJSON(w, status, result); err != nil {
					loggerFrom(r.Context()).WarnContext(r.Context(), "write upload result", "err", err)
				}
			})
			return
		}
		if err := writeJSON(w, status, result); err != nil {
			loggerFrom(r.Context()).WarnContext(r.Context(), "write upload result", "err", err)
		}
	})
}

// uploadBuffers are reused between requests: large buffers make large reads and writes,
// which is most of the difference in CPU per byte.
type uploadBuffers struct {
	readers *upload.Buffers // the form reader's buffer, sized to the body (uploadReservationFor): files go upstream from it
}

// fileSlot is what became of one file part of the form: Cloudinary's result, or why not.
type fileSlot struct {
	result  []byte
	removed string // what the image guard removed from a stored file: gps, all or none
	err     error
}

// rules are the pipeline's rules for each file.
func (lim uploadLimits) rules() upload.Rules {
	return upload.Rules{
		MaxBytes:        lim.maxFileBytes,
		AllowedTypes:    lim.allowedTypes,
		Image:           lim.image,
		UploadTimeout:   lim.uploadTimeout,
		CopyBufferBytes: copyBufferBytes,
	}
}

// maxBodyBytes bounds the whole request body: every file at its limit, plus the form around them.
func (lim uploadLimits) maxBodyBytes() int64 {
	files := int64(max(lim.maxFiles, 1))
	if lim.maxFileBytes > (math.MaxInt64-formOverhead)/files {
		return math.MaxInt64
	}
	return files*lim.maxFileBytes + formOverhead
}

// serveUpload reads the form and uploads each file part in order. It answers with a status
// and a body, or with an error for the whole request (then nothing was stored).
func serveUpload(w http.ResponseWriter, r *http.Request, pl *upload.Pipeline, lim uploadLimits, bufs *uploadBuffers, mem store.Memory) (int, []byte, error) {
	mediaType, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/form-data" || params["boundary"] == "" {
		return 0, nil, errNotMultipart
	}
	maxBody := lim.maxBodyBytes()
	if r.ContentLength > maxBody {
		return 0, nil, errBodyTooLarge(lim) // answered before reading a byte
	}
	body := watchedBody(r)
	body.Limit(maxBody)
	body.Idle(lim.idleTimeout)
	buf := bufs.readers.Get(r.ContentLength)
	defer bufs.readers.Put(buf)
	// Everything but the files (part headers, text fields) must fit in formOverhead: nothing
	// else makes the server read, or buffer, more than that.
	form := formstream.NewReader(body, params["boundary"], *buf, formstream.Limits{
		NonFileBytes: formOverhead, HeaderBytes: formOverhead, Parts: maxFormParts,
	})
	fields := formFields{seen: map[string]bool{}}
	var slots []fileSlot
	var formErr error // the form broke after a file part
	files := 0
	for {
		part, err := form.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if len(slots) == 0 {
				return 0, nil, bodyError(err, lim)
			}
			if slots[len(slots)-1].err == nil { // else that file's failure already says why
				formErr = bodyError(err, lim)
			}
			break
		}
		name := part.Name()
		filename, isFile := part.FileName()
		if !isFile {
			if files > 0 && slices.Contains(lim.signable, name) {
				// Fields are read before the first file, which is on its way by now: one the
				// server would have used comes too late. Every upload library the tests run
				// sends its fields first; the answer says what was stored without it.
				formErr = errFieldAfterFile(name)
				break
			}
			if files > 0 { // a field the server would ignore anywhere: ignored here too
				fields.ignore(name)
				continue
			}
			if err := fields.read(part, name, lim); err != nil {
				return 0, nil, err
			}
			continue
		}
		files++
		switch {
		case files > lim.maxFiles:
			slots = append(slots, fileSlot{err: errTooManyFiles(lim.maxFiles)})
		case name == "":
			slots = append(slots, fileSlot{err: errBadField("form part without a name")})
			continue
		case !slices.Contains(lim.fileFields, name):
			slots = append(slots, fileSlot{err: errNotFileField(name, lim.fileFields)})
			continue
		case files > 1 && fields.p.PublicID != "":
			slots = append(slots, fileSlot{err: errPublicIDOneFile})
			continue
		default:
			p := fields.p
			p.Filename = cleanFilename(filename)
			p.BaseURL = requestBaseURL(r)
			p.Size = r.ContentLength // a bound: the file is no larger than the request (−1: unknown)
			p.Memory = mem
			p.Folder, p.UploadedBy = folderFor(r, lim.folder, lim.signIn)
			// Without a signed-in user, holding the answer is what lets its file be deleted (delete.go).
			p.DeleteToken = p.UploadedBy == ""
			result, removed, err := uploadFile(r, part, pl, p, lim, body)
			slots = append(slots, fileSlot{result: result, removed: removed, err: err})
			continue
		}
		break // past MAX_FILES_PER_REQUEST: nothing more is read
	}
	if len(fields.ignored) > 0 {
		loggerFrom(r.Context()).DebugContext(r.Context(), "form fields ignored", "fields", fields.ignored)
	}
	setMetadataRemoved(w, slots)
	switch {
	case len(slots) == 0:
		return 0, nil, errNoFilePart(lim.fileFields)
	case len(slots) == 1 && formErr == nil: // one file answers as it always has
		if slots[0].err != nil {
			return 0, nil, slots[0].err
		}
		return http.StatusOK, slots[0].result, nil
	}
	return filesAnswer(r, slots, formErr)
}

// filesAnswer is the answer for several file parts: {"files":[…]}, one entry per part in
// order, Cloudinary's result or {"error":{"message":…}}. Its status is 200 when every file was
// stored, else the first failure's, which is also the answer's own top-level error.
func filesAnswer(r *http.Request, slots []fileSlot, formErr error) (int, []byte, error) {
	entries := make([]json.RawMessage, len(slots))
	var first error
	for i, s := range slots {
		if s.err == nil {
			entries[i] = s.result
			continue
		}
		api := logClientError(r, s.err)
		entry, err := json.Marshal(errorBody(api))
		if err != nil {
			return 0, nil, fmt.Errorf("encode json: %w", err)
		}
		entries[i] = entry
		if first == nil {
			first = s.err
		}
	}
	answer := struct {
		Error *errorMessage     `json:"error,omitempty"`
		Files []json.RawMessage `json:"files"`
	}{Files: entries}
	status := http.StatusOK
	if first == nil && formErr != nil {
		first = formErr
		logClientError(r, formErr)
	}
	if first != nil {
		api := asAPIError(first)
		status = api.status
		answer.Error = &errorMessage{Message: api.message}
	}
	body, err := json.Marshal(answer)
	if err != nil {
		return 0, nil, fmt.Errorf("encode json: %w", err)
	}
	return status, body, nil
}

// uploadFile streams one file part through the pipeline (internal/upload): sniffed, checked,
// guarded, capped, timed and counted against USER_QUOTA. It returns the store's result and what
// the image guard removed from the file ("gps", "all" or "none").
func uploadFile(r *http.Request, part *formstream.Part, pl *upload.Pipeline, p store.Params, lim uploadLimits, body *upload.RequestBody) ([]byte, string, error) {
	quota := quotaSpendOf(r).file()
	defer quota.end() // the file's bytes go back to the quota unless it was stored
	ctx, cancel := uploadContext(r, body)
	defer cancel(nil)
	res, err := pl.Upload(ctx, upload.File{Body: part, Size: -1, Params: p, Spend: quota.take, Waker: body})
	if err != nil {
		return nil, "", uploadError(ctx, err, lim)
	}
	quota.keep()
	return res.Answer, res.Removed, nil
}

// refuseEarly answers err to a request whose body the server will not use, whatever it has
// read of it: every refusal that may come before the body is read goes through it.
func refuseEarly(w http.ResponseWriter, r *http.Request, err error) {
	answerEarly(w, r, func() { writeError(w, r, err) })
}

// answerEarly writes an answer (with write) to a request whose body may not all have been read,
// and sends it at once: in full duplex, so that net/http neither reads the body first nor
// closes the connection for it, and flushed, so that a client that reads while it sends (curl,
// Go, Node, upload libraries) learns of it now, not after its last byte. Then it reads and drops
// the rest of the body, up to maxDrainBytes and drainTimeout, so that a browser, which reads
// the answer only once it has sent everything, sees it rather than a connection reset.
//
// A client that sent Expect: 100-continue and has not been told to go on (nothing of the body
// was read) has sent nothing: it gets the answer without 100 Continue, nothing is read, and
// the connection closes after it. A body that cannot end within maxDrainBytes is not
// read either: the connection closes after the answer.
func answerEarly(w http.ResponseWriter, r *http.Request, write func()) {
	rb := watchedBody(r)
	var body io.Reader = r.Body
	if rb != nil {
		body = rb.Rest() // past the upload's bound and timers
	}
	rc := http.NewResponseController(w)
	waiting := r.Header.Get("Expect") != "" && strings.EqualFold(r.Header.Get("Expect"), "100-continue") && !rb.Started()
	// HTTP/2 needs neither drain nor close: the answer goes out on its stream while the client
	// sends, then the server ends the client's half with RST_STREAM NO_ERROR, which a client must
	// not take as a failed answer (RFC 9113 §8.1). Draining there would only make the client send
	// up to 32 MiB for nothing.
	http1 := r.ProtoMajor < 2
	drain := http1 && !waiting && !rb.Ended() && r.ContentLength != 0 && r.ContentLength <= maxDrainBytes+formOverhead &&
		!errors.Is(r.Context().Err(), context.Canceled)
	switch {
	case drain:
		_ = rc.EnableFullDuplex() // unsupported in tests' recorders
	case http1 && !waiting && !rb.Ended() && r.ContentLength != 0:
		w.Header().Set("Connection", "close") // else net/http reads up to 256 KiB of the body before the answer
	}
	write()
	if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		loggerFrom(r.Context()).DebugContext(r.Context(), "send early answer", "err", err)
	}
	switch {
	case drain:
		drainBody(w, r, body)
	case waiting:
		// net/http would still read up to 256 KiB of the body once the handler returns,
		// waiting for bytes the client was told not to send: a past deadline ends that read,
		// and the connection closes.
		_ = rc.SetReadDeadline(time.Now())
	}
}

// drainBody reads and drops what is left of a request body whose answer has been sent, so that
// the answer reaches a client that is still sending, within maxDrainBytes and drainTimeout.
func drainBody(w http.ResponseWriter, r *http.Request, body io.Reader) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(drainTimeout)) // unsupported only in tests' recorders
	n, err := io.Copy(io.Discard, io.LimitReader(body, maxDrainBytes))
	_ = rc.SetReadDeadline(time.Time{})
	if err != nil || n > 0 {
		loggerFrom(r.Context()).DebugContext(r.Context(), "drained request body after an early answer", "bytes", n, "err", err)
	}
}

// formFields are the text fields read before the first file part.
type formFields struct {
	p       store.Params
	seen    map[string]bool
	ignored []string // names of fields the server does not use, for the log
}

// maxIgnoredLogged bounds how many ignored field names the debug line lists.
const maxIgnoredLogged = 20

func (f *formFields) ignore(name string) {
	if len(f.ignored) < maxIgnoredLogged {
		f.ignored = append(f.ignored, truncate(name, 64))
	}
}

// read takes one text field: a parameter the client may choose (SIGNABLE_PARAMS, checked as
// POST /sign checks it), or a field the server does not use, read and ignored.
func (f *formFields) read(part *formstream.Part, name string, lim uploadLimits) error {
	if name == "" {
		return errBadField("form part without a name")
	}
	if !slices.Contains(lim.signable, name) {
		f.ignore(name) // formstream skips it, within formOverhead
		return nil
	}
	if f.seen[name] {
		return errBadField("form field %q appears twice", name)
	}
	f.seen[name] = true
	value, err := io.ReadAll(io.LimitReader(part, maxFieldBytes+1))
	if err != nil {
		return bodyError(err, lim)
	}
	if len(value) > maxFieldBytes {
		return errBadField("form field %q is longer than %d bytes", name, maxFieldBytes)
	}
	return f.set(name, string(value))
}

// set takes the value of a parameter the client may choose, checked as POST /sign checks it.
func (f *formFields) set(name, value string) error {
	v, err := clientParam(name, value)
	if err != nil {
		return err
	}
	switch name {
	case "public_id":
		f.p.PublicID = v
	case "tags":
		f.p.Tags = splitList(v)
	default:
		if v == "" {
			return nil // left out, as POST /sign leaves it out
		}
		if f.p.Extra == nil {
			f.p.Extra = map[string]string{}
		}
		f.p.Extra[name] = v
	}
	return nil
}

// bodyError explains a failure to read the request body.
func bodyError(err error, lim uploadLimits) error {
	var tooLarge *upload.BodyTooLargeError
	var api apiError
	switch {
	case errors.As(err, &api):
		return err
	case errors.As(err, &tooLarge): // the whole body's bound: each file's own is the pipeline's
		return fmt.Errorf("%w: %w", errBodyTooLarge(lim), err)
	case errors.Is(err, upload.ErrIdle):
		return fmt.Errorf("%w: %w", errBodyIdle, err)
	case errors.Is(err, admission.ErrTooSlow):
		return fmt.Errorf("%w: %w", errTooSlow, err)
	}
	if api, ok := formError(err); ok {
		return fmt.Errorf("%w: %w", api, err)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %w", errBodyIncomplete, err)
	}
	var netErr interface{ Timeout() bool }
	if errors.As(err, &netErr) || strings.Contains(err.Error(), "connection reset") {
		return fmt.Errorf("%w: %w", errBodyIncomplete, err)
	}
	return fmt.Errorf("%w: %w", errMalformedBody, err)
}

// validatePublicID accepts names Cloudinary takes as they are: letters, digits, '-', '_', '.', and '/' between parts.
func validatePublicID(id string) error {
	bad := errBadField("public_id must be 1-%d characters of letters, digits, '-', '_', '.' and '/' between names", maxPublicIDLen)
	if id == "" || len(id) > maxPublicIDLen {
		return bad
	}
	for _, seg := range strings.Split(id, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return bad
		}
		for _, c := range seg {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
				return bad
			}
		}
	}
	return nil
}

// parseTags splits a comma-separated list of tags.
func parseTags(s string) ([]string, error) {
	tags := splitList(s)
	if len(tags) > maxTags {
		return nil, errBadField("at most %d tags", maxTags)
	}
	for _, t := range tags {
		if len(t) > maxTagLen || !utf8.ValidString(t) || strings.IndexFunc(t, unicode.IsControl) >= 0 {
			return nil, errBadField("each tag must be printable text of at most %d bytes", maxTagLen)
		}
	}
	return tags, nil
}

// cleanFilename keeps a printable base name of at most 255 bytes, or nothing.
func cleanFilename(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, name)
	name = strings.TrimSpace(name)
	if name == "." || name == ".." {
		return ""
	}
	return truncate(name, 255)
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
