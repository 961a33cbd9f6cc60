package main

import (
	"bytes"
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
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gabriel-vasile/mimetype"

	"cloudinary-upload-api/internal/formstream"
	"cloudinary-upload-api/internal/imageguard"
	"cloudinary-upload-api/internal/store"
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
	sniffLen       = 3072 // what mimetype reads by default
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
	bufs := &uploadBuffers{
		readers: sync.Pool{New: func() any { b := make([]byte, requestBufferBytes); return &b }},
		copies:  sync.Pool{New: func() any { b := make([]byte, copyBufferBytes); return &b }},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, _ = watchBody(r) // under every other wrapper; refuseEarly drains it, past their caps
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
		r.Body = adm.paced(r.Body)
		status, result, err := serveUpload(w, r, up, lim, bufs, mem)
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
	readers sync.Pool // *[]byte of requestBufferBytes: the form reader's buffer, which files go upstream from
	copies  sync.Pool // *[]byte of copyBufferBytes for uploadBody.WriteTo when the file is not a pieceReader
}

// fileSlot is what became of one file part of the form: Cloudinary's result, or why not.
type fileSlot struct {
	result  []byte
	removed string // what the image guard removed from a stored file: gps, all or none
	err     error
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
func serveUpload(w http.ResponseWriter, r *http.Request, up uploader, lim uploadLimits, bufs *uploadBuffers, mem store.Memory) (int, []byte, error) {
	mediaType, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/form-data" || params["boundary"] == "" {
		return 0, nil, errNotMultipart
	}
	maxBody := lim.maxBodyBytes()
	if r.ContentLength > maxBody {
		return 0, nil, errBodyTooLarge(lim) // answered before reading a byte
	}
	idle := &idleBody{body: r.Body, rc: http.NewResponseController(w), timeout: lim.idleTimeout, request: watchedBody(r)}
	r.Body = http.MaxBytesReader(w, idle, maxBody)
	buf := bufs.readers.Get().(*[]byte)
	defer bufs.readers.Put(buf)
	// Everything but the files (part headers, text fields) must fit in formOverhead: nothing
	// else makes the server read, or buffer, more than that.
	form := formstream.NewReader(r.Body, params["boundary"], *buf, formstream.Limits{
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
			result, removed, err := uploadFile(r, part, up, p, lim, bufs, idle)
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

// uploadFile streams one file part to the uploader: sniffed, capped and timed.
// It returns Cloudinary's result and what the image guard removed from the file ("gps", "all" or "none").
func uploadFile(r *http.Request, part *formstream.Part, up uploader, p store.Params, lim uploadLimits, bufs *uploadBuffers, idle *idleBody) ([]byte, string, error) {
	head := make([]byte, sniffLen)
	n, err := io.ReadFull(part, head)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, "", bodyError(err, lim)
	}
	if n == 0 {
		return nil, "", errEmptyFile
	}
	head = head[:n]
	got := sniffType(head)
	allowed, measured := typeAllowed(got, lim.allowedTypes)
	if !allowed {
		base, _, _ := strings.Cut(got.String(), ";")
		// SVG is refused for what it can carry, not for its size: the plain message.
		if strings.HasPrefix(base, "image/") && base != "image/svg+xml" && !imageguard.Checks(base) && slices.Contains(lim.allowedTypes, "image/*") {
			return nil, "", errTypeUnchecked(base)
		}
		return nil, "", errTypeNotAllowed(base, lim.allowedTypes)
	}
	head, file, removed, err := guardImage(head, part, lim, measured)
	if err != nil {
		return nil, "", err
	}
	if base, _, _ := strings.Cut(got.String(), ";"); measured && lim.image.Strip != imageguard.StripOff && imageguard.KeepsLocation(base) {
		// image/* promises that photos lose their location; this type would keep it.
		return nil, "", errTypeKeepsLocation(base)
	}

	quota := quotaSpendOf(r).file()
	defer quota.end() // the file's bytes go back to the quota unless it was stored
	ctx, cancel := uploadContext(r, idle.request)
	defer cancel(nil)
	body := &uploadBody{
		quota:   quota,
		head:    head,
		file:    file, // part itself unless the guard must walk the whole file
		limit:   lim.maxFileBytes,
		timeout: lim.uploadTimeout,
		copies:  &bufs.copies,
		// While the form reader holds file bytes already received, more can be read without
		// waiting on the client.
		more: func() bool { return part.Buffered() > 0 },
	}
	// A store that streams the file straight through is timed here; one that holds the file's
	// bytes (Cloudinary's chunks, each read whole before it is sent) times its own requests.
	if store.Holds(up, p.Size) == 0 {
		// The timer runs while the uploader holds the file and is not reading it:
		// before the first read, between reads, and after the last one until the answer.
		body.watchdog = time.AfterFunc(lim.uploadTimeout, func() { cancel(errUpstreamTimeout) })
		defer body.watchdog.Stop()
	}
	result, upErr := up.Upload(ctx, body, p)
	cancel(nil) // a transport still writing the body gives up, so stop need not wait for Cloudinary
	bodyErr := body.stop(idle)
	switch {
	case bodyErr != nil:
		return nil, "", bodyError(bodyErr, lim)
	case upErr == nil:
		if err := checkExisting(result, p); err != nil {
			return nil, "", err
		}
		quota.keep() // a 409 above gives the file's bytes back
		return result, removed, nil
	case errors.Is(context.Cause(ctx), errUpstreamTimeout):
		return nil, "", fmt.Errorf("%w: %w", errUpstreamTimeout, upErr)
	case errors.Is(context.Cause(ctx), errClientGone):
		return nil, "", fmt.Errorf("%w: %w", errClientGone, upErr)
	}
	return nil, "", upErr
}

// checkExisting refuses a store's answer for a public id that was already taken (overwrite=false:
// "existing": true, with the existing file's details) unless it lies in the signed-in user's own
// folder, where it is the user's own retry: anyone else would learn of another's file, and get
// a URL serving its bytes as if it were theirs.
func checkExisting(result []byte, p store.Params) error {
	if !bytes.Contains(result, []byte(`"existing"`)) {
		return nil
	}
	var answer struct {
		Existing bool   `json:"existing"`
		PublicID string `json:"public_id"`
	}
	if err := json.Unmarshal(result, &answer); err != nil || !answer.Existing {
		return nil // readAnswer has checked it is JSON
	}
	if p.UploadedBy != "" && p.Folder != "" && strings.HasPrefix(answer.PublicID, p.Folder+"/") {
		return nil
	}
	return fmt.Errorf("%w: %s exists", errPublicIDTaken, answer.PublicID)
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
		body = rb // past every cap of the upload's own wrappers
	}
	rc := http.NewResponseController(w)
	waiting := r.Header.Get("Expect") != "" && strings.EqualFold(r.Header.Get("Expect"), "100-continue") && !rb.started()
	// HTTP/2 needs neither drain nor close: the answer goes out on its stream while the client
	// sends, then the server ends the client's half with RST_STREAM NO_ERROR, which a client must
	// not take as a failed answer (RFC 9113 §8.1). Draining there would only make the client send
	// up to 32 MiB for nothing.
	http1 := r.ProtoMajor < 2
	drain := http1 && !waiting && !rb.ended() && r.ContentLength != 0 && r.ContentLength <= maxDrainBytes+formOverhead &&
		!errors.Is(r.Context().Err(), context.Canceled)
	switch {
	case drain:
		_ = rc.EnableFullDuplex() // unsupported in tests' recorders
	case http1 && !waiting && !rb.ended() && r.ContentLength != 0:
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
	v, err := clientParam(name, string(value))
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
	var maxBytes *http.MaxBytesError
	var api apiError
	switch {
	case errors.As(err, &api):
		return err
	case errors.As(err, &maxBytes): // the whole body's bound: each file's own is uploadBody's
		return fmt.Errorf("%w: %w", errBodyTooLarge(lim), err)
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

// sniffType looks at the file's first bytes, never at what the client says it is.
func sniffType(head []byte) *mimetype.MIME {
	return mimetype.Detect(head)
}

// typeAllowed matches a sniffed type against ALLOWED_TYPES. "image/*" stands for the image
// types whose size the image guard reads (imageguard.Checks): another image type (SVG, which
// can carry script, JPEG XL, ICNS...) is admitted only when named, or by "*". measured is
// true when only "image/*" admits the file: the guard must then read its size.
func typeAllowed(m *mimetype.MIME, allowed []string) (ok, measured bool) {
	base, _, _ := strings.Cut(m.String(), ";")
	for _, a := range allowed {
		switch {
		case a == "*", m.Is(a):
			return true, false
		case a == "image/*" && imageguard.Checks(base):
			ok = true
		case a != "image/*" && strings.HasSuffix(a, "/*") && strings.HasPrefix(base, strings.TrimSuffix(a, "*")):
			return true, false
		}
	}
	return ok, ok
}

// uncheckedImageTypes are the entries of ALLOWED_TYPES that admit image files whose size the
// image guard cannot read: an image type named that it does not check, another image/ family
// pattern than image/*, or "*".
func uncheckedImageTypes(allowed []string) []string {
	var out []string
	for _, a := range allowed {
		if a == "*" || strings.HasPrefix(a, "image/") && a != "image/*" && !imageguard.Checks(canonicalType(a)) {
			out = append(out, a)
		}
	}
	return out
}

// canonicalType is mimetype's own name for a MIME type or one of its aliases.
func canonicalType(t string) string {
	if m := mimetype.Lookup(t); m != nil {
		base, _, _ := strings.Cut(m.String(), ";")
		return base
	}
	return t
}

// uploadBody is the file as the uploader reads it: capped, timed, and stoppable.
type uploadBody struct {
	mu       sync.Mutex // held while the file is read and, in WriteTo, written: stop waits for both
	head     []byte     // the bytes read to sniff the type, given out before file's
	file     io.Reader  // the rest
	n        int64
	limit    int64
	err      error // the first failure other than EOF
	stopped  bool
	stopping atomic.Bool // set before stop wakes a blocked Read: that read's error is ours, not the client's
	watchdog *time.Timer // nil when the uploader times its own requests
	timeout  time.Duration
	copies   *sync.Pool  // of *[]byte, for WriteTo when file is not a pieceReader
	more     func() bool // file can give more at once without waiting on the client; nil: never fill
	quota    *fileQuota  // the file's share of USER_QUOTA; nil: none
}

// pieceReader gives out a file in pieces of its own buffer, each valid until the next call, so
// that what arrived from the client goes upstream without a copy in between. It calls
// beforeWait before it waits on the client.
type pieceReader interface {
	NextPiece(beforeWait func() error) ([]byte, error)
}

// flusher is a writer that may hold back small writes until Flush (internal/cloudinary's
// request writer does).
type flusher interface {
	Flush() error
}

var errUploadStopped = errors.New("upload body read after the upload ended")

func (b *uploadBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.usable(); err != nil {
		return 0, err
	}
	if room := b.limit + 1 - b.n; int64(len(p)) > room {
		p = p[:room] // one byte past the limit is enough to know
	}
	b.clientReads(true)
	n, err := b.read(p)
	// Fill p from what has already arrived, so the uploader moves large pieces, but never
	// wait on the client for more once something is in hand: streaming must not stall.
	for err == nil && n > 0 && n < len(p) && b.more != nil && b.more() {
		var m int
		m, err = b.read(p[n:])
		if m == 0 && err == nil {
			break
		}
		n += m
	}
	b.clientReads(false)
	if over := b.count(n, err); over > 0 {
		return n - over, b.err
	}
	return n, err
}

func (b *uploadBody) read(p []byte) (int, error) {
	if len(b.head) > 0 {
		n := copy(p, b.head)
		b.head = b.head[n:]
		return n, nil
	}
	return b.file.Read(p)
}

// usable says why the body may not be read any more, if it may not.
func (b *uploadBody) usable() error {
	if b.stopped {
		return errUploadStopped
	}
	return b.err
}

// clientReads stops the watchdog while the client is read: a slow client is not a slow upstream.
func (b *uploadBody) clientReads(reading bool) {
	switch {
	case b.watchdog == nil:
	case reading:
		b.watchdog.Stop()
	default:
		b.watchdog.Reset(b.timeout)
	}
}

// count adds n bytes read with err, and returns how many of them are past the limit, or, when
// they would pass the client's USER_QUOTA, all n: the upload stops without them.
func (b *uploadBody) count(n int, err error) int {
	b.n += int64(n)
	if b.n > b.limit {
		b.err = errTooLarge(b.limit)
		return int(b.n - b.limit)
	}
	if qerr := b.quota.take(n); qerr != nil {
		b.err = qerr
		return n
	}
	if err != nil && !errors.Is(err, io.EOF) && !b.stopping.Load() {
		b.err = err
	}
	return 0
}

// WriteTo moves the file in large pieces: straight from the request's read buffer when the
// file is a pieceReader, else through a pooled buffer rather than io.Copy's 32 KiB.
func (b *uploadBody) WriteTo(w io.Writer) (int64, error) {
	pieces, ok := b.file.(pieceReader)
	if !ok {
		bp := b.copies.Get().(*[]byte)
		defer b.copies.Put(bp)
		// What w holds back must not wait on the client: once nothing more has arrived, the
		// next read may wait, so w lets go of what it gathered (as writePiece's beforeWait does).
		flush := func() error {
			if f, ok := w.(flusher); ok && (b.more == nil || !b.more()) {
				return f.Flush()
			}
			return nil
		}
		return copyPieces(w, b.Read, *bp, flush)
	}
	var total int64
	for {
		n, err := b.writePiece(w, pieces)
		total += int64(n)
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// writePiece writes the next piece of the file to w. It holds mu throughout: the piece is the
// read buffer's, which must not be reused before the write is over.
func (b *uploadBody) writePiece(w io.Writer, pieces pieceReader) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.usable(); err != nil {
		return 0, err
	}
	var piece []byte
	var err error
	if len(b.head) > 0 {
		piece, b.head = b.head, nil
	} else {
		piece, err = pieces.NextPiece(func() error {
			// What w holds back must not wait on the client; and the watchdog runs while
			// Cloudinary takes it, stopping only once the client is being waited on.
			if f, ok := w.(flusher); ok {
				if err := f.Flush(); err != nil {
					return err
				}
			}
			b.clientReads(true)
			return nil
		})
		b.clientReads(false)
	}
	if b.count(len(piece), err) > 0 {
		return 0, b.err
	}
	if len(piece) > 0 {
		if n, werr := w.Write(piece); werr != nil {
			return n, werr
		}
	}
	return len(piece), err
}

// stop ends the upload's use of the request body and returns the body's failure, if any.
// The transport writes the body from its own goroutine, which may still be waiting on a slow
// client after the upload failed: a past read deadline wakes it. (One blocked writing upstream
// wakes when the request's context ends and the transport closes the connection.)
func (b *uploadBody) stop(idle *idleBody) error {
	b.stopping.Store(true)
	if !b.mu.TryLock() {
		idle.interrupt() // when deadlines are unsupported (tests' recorders), Lock just waits
		b.mu.Lock()
		idle.resume()
	}
	defer b.mu.Unlock()
	b.stopped = true
	if b.watchdog != nil {
		b.watchdog.Stop()
	}
	return b.err
}

// copyPieces writes what read yields into w, one piece of buf at a time, calling afterWrite
// after each write. Unlike io.CopyBuffer it never hands off to a WriterTo or ReaderFrom, so the
// WriteTo methods that call it choose the piece size.
func copyPieces(w io.Writer, read func([]byte) (int, error), buf []byte, afterWrite func() error) (int64, error) {
	var total int64
	for {
		n, err := read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
			if err := afterWrite(); err != nil {
				return total, err
			}
		}
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}
