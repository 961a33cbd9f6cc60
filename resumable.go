package main

// resumable.go serves resumable uploads: the tus protocol 1.0.0 (https://tus.io/protocols/resumable-upload)
// at /upload/resumable/, with the extensions creation, creation-with-upload, creation-defer-length,
// termination and expiration. One tus upload is one chunked upload of the store: the bytes of
// its PATCH requests, one after another, are one stream (resumable.Feed) that goes through the
// checks of every upload (sniff, type policy, image guard) into chunks of CHUNK_SIZE
// (resumable.Cutter), each sent as it fills. docs/resumable.md explains what holds with one
// instance and with several.

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cloudinary-upload-api/internal/auth"
	"cloudinary-upload-api/internal/resumable"
	"cloudinary-upload-api/internal/store"
	"cloudinary-upload-api/internal/upload"
)

const (
	tusVersion    = "1.0.0"
	tusExtensions = "creation,creation-with-upload,creation-defer-length,termination,expiration"
	tusOctets     = "application/offset+octet-stream"
	// resumableIdle is how long an upload's stream waits for its next PATCH before it is dropped
	// (with the tail it holds, under a chunk, and its memory): the upload then resumes from its
	// last whole chunk if the guard had let the rest through unchanged, else from 0.
	resumableIdle = 10 * time.Minute
	// resumableLockTTL is how long the lock of an upload outlives an instance that died holding it.
	resumableLockTTL  = 15 * time.Second
	patchBufferBytes  = 256 << 10
	maxUploadMetadata = 8 << 10 // bytes of Upload-Metadata
	resumableSweepGap = time.Minute
	// writerLetGo bounds how long a request waits for an older one on the same upload to let go.
	writerLetGo = 10 * time.Second
)

// The headers of the tus protocol that a page on another origin sends and reads (CORS).
var (
	tusRequestHeaders  = []string{"Tus-Resumable", "Upload-Length", "Upload-Defer-Length", "Upload-Offset", "Upload-Metadata"}
	tusResponseHeaders = []string{"Location", "Tus-Resumable", "Tus-Version", "Tus-Extension", "Tus-Max-Size", "Upload-Offset", "Upload-Length", "Upload-Defer-Length", "Upload-Expires"}
)

// chunkStore is what resumable uploads need of a store: a chunk at an offset of a chunked
// upload (internal/cloudinary's Client, internal/localstore's Store).
type chunkStore interface {
	SendChunk(ctx context.Context, uploadID string, offset int64, chunk []byte, total int64, p store.Params) (json.RawMessage, error)
}

// chunkAborter is a store that holds the chunks of an unfinished upload itself (the local
// store): they are dropped when the upload is terminated, restarted or expires.
type chunkAborter interface {
	AbortChunks(uploadID string) error
}

// resumableServer serves /upload/resumable/. The uploads' state is in state (this process's
// memory, or Redis); the streams this instance feeds are in streams.
type resumableServer struct {
	state      resumable.State
	store      chunkStore
	lim        uploadLimits
	pl         *upload.Pipeline // its store is each stream's Cutter
	chunkSize  int
	expiry     time.Duration
	adm        *uploadAdmission
	quota      *uploadQuota // USER_QUOTA; nil: none
	trust      proxyTrust
	tokens     bool   // UPLOAD_TOKENS is set: a script is its token
	publicURL  string // PUBLIC_URL; empty: from the request
	now        func() time.Time
	newStoreID func() string

	mu        sync.Mutex
	streams   map[string]*stream
	writers   map[string]*writer // the requests holding an upload's lock here
	closed    bool
	lastSweep atomic.Int64 // unix nanoseconds
}

// stream is one upload's bytes on their way through the checks into the store, fed by one PATCH
// after another on this instance.
type stream struct {
	gen    int64
	feed   *resumable.Feed
	offset atomic.Int64 // the client's bytes taken; changed only under the upload's lock, read by HEAD
	cancel context.CancelCauseFunc
	done   chan struct{}
	idle   *time.Timer // drops the stream when no PATCH comes
	mem    *uploadMemory
	// Set by the stream's goroutine; read after done is closed.
	result  json.RawMessage
	removed string
	err     error
	// The guard's decision, kept by the goroutine: delta maps the stored bytes past prefix onto
	// the client's once the rest of the file passes unchanged (resumable.Unknown: it does not).
	delta  int64
	prefix int64
}

var errStreamClosed = errors.New("resumable: the upload's stream was closed")

func newResumableServer(cfg config, st storage, adm *uploadAdmission, quota *uploadQuota, health *healthState) *resumableServer {
	cs, ok := st.up.(chunkStore)
	if !ok {
		return nil
	}
	var state resumable.State = resumable.NewMemory()
	if health.redis != nil {
		state = resumable.NewRedis(health.redis.Client(), "resumable:", resumableLockTTL)
	}
	s := &resumableServer{
		state: state, store: cs, lim: cfg.uploadLimits(), pl: upload.New(cfg.uploadLimits().rules(), nil), chunkSize: int(cfg.ChunkSize), expiry: cfg.ResumableExpiry,
		adm: adm, quota: quota, trust: cfg.trustProxy, tokens: cfg.uploadTokens != nil, publicURL: cfg.PublicURL,
		now: time.Now, newStoreID: resumable.NewID, streams: map[string]*stream{}, writers: map[string]*writer{},
	}
	health.onStop(s.close)
	return s
}

// addResumableRoutes adds /upload/resumable/ to mux; protect is who may upload.
func addResumableRoutes(mux routeMux, s *resumableServer, protect func(http.Handler) http.Handler) {
	if s == nil {
		return
	}
	mux.Handle("OPTIONS /upload/resumable/{$}", tusHeaders(http.HandlerFunc(s.options)))
	mux.Handle("POST /upload/resumable/{$}", tusHeaders(protect(http.HandlerFunc(s.create))))
	mux.Handle("/upload/resumable/", tusHeaders(handleMethodNotAllowed(http.MethodPost, http.MethodOptions)))
	mux.Handle("HEAD /upload/resumable/{id}", tusHeaders(protect(http.HandlerFunc(s.head))))
	mux.Handle("PATCH /upload/resumable/{id}", tusHeaders(protect(http.HandlerFunc(s.patch))))
	mux.Handle("DELETE /upload/resumable/{id}", tusHeaders(protect(http.HandlerFunc(s.terminate))))
	mux.Handle("GET /upload/resumable/{id}", tusHeaders(protect(http.HandlerFunc(s.get))))
	mux.Handle("/upload/resumable/{id}", tusHeaders(handleMethodNotAllowed(http.MethodGet, http.MethodHead, http.MethodPatch, http.MethodDelete)))
}

// tusHeaders puts Tus-Resumable on every answer, as the protocol asks (OPTIONS's too).
func tusHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Tus-Resumable", tusVersion)
		h.ServeHTTP(w, r)
	})
}

// checkTusVersion refuses a request without Tus-Resumable: 1.0.0 (412, with the versions we speak).
func checkTusVersion(w http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get("Tus-Resumable") == tusVersion {
		return true
	}
	w.Header().Set("Tus-Version", tusVersion)
	refuseEarly(w, r, errTusVersion)
	return false
}

func (s *resumableServer) options(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Tus-Version", tusVersion)
	h.Set("Tus-Extension", tusExtensions)
	h.Set("Tus-Max-Size", strconv.FormatInt(s.lim.maxFileBytes, 10))
	w.WriteHeader(http.StatusNoContent)
}

// ownerOf is who an upload belongs to: the signed-in user, else the script's upload token, else
// the client's address (as RATE_LIMIT names clients).
func (s *resumableServer) ownerOf(r *http.Request) string {
	if u, ok := auth.FromContext(r.Context()); ok {
		return "user:" + u.Subject
	}
	if tok, ok := bearerToken(r.Header.Get("Authorization")); ok && s.tokens {
		sum := sha256.Sum256([]byte(tok)) // protect has checked it is one of UPLOAD_TOKENS
		return "token:" + hex.EncodeToString(sum[:12])
	}
	return clientKeyOf(r, s.trust)
}

// create serves POST /upload/resumable/: a new upload, with its first bytes if the body has them.
func (s *resumableServer) create(w http.ResponseWriter, r *http.Request) {
	if !checkTusVersion(w, r) {
		return
	}
	s.sweep(r.Context())
	length, err := s.uploadLength(r)
	if err != nil {
		refuseEarly(w, r, err)
		return
	}
	p, err := s.metadataParams(r)
	if err != nil {
		refuseEarly(w, r, err)
		return
	}
	withBody := r.ContentLength > 0 || r.ContentLength < 0 && r.Header.Get("Content-Type") != ""
	if withBody && !isTusOctets(r) {
		refuseEarly(w, r, errResumableContentType)
		return
	}
	u := resumable.Upload{
		ID: resumable.NewID(), Owner: s.ownerOf(r), Length: length, Params: p, StoreID: s.newStoreID(),
		Delta: resumable.Unknown, Expires: s.now().Add(s.expiry).Truncate(time.Second),
	}
	if err := s.state.Create(r.Context(), u); err != nil {
		refuseEarly(w, r, stateError(err))
		return
	}
	w.Header().Set("Location", s.uploadURL(r, u.ID))
	w.Header().Set("Upload-Expires", u.Expires.UTC().Format(http.TimeFormat))
	loggerFrom(r.Context()).InfoContext(r.Context(), "resumable upload created", "upload", u.ID, "length", length)
	if !withBody {
		w.Header().Set("Upload-Offset", "0")
		w.WriteHeader(http.StatusCreated)
		return
	}
	s.write(w, r, u.ID, 0, http.StatusCreated)
}

func isTusOctets(r *http.Request) bool {
	ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	return strings.EqualFold(strings.TrimSpace(ct), tusOctets)
}

func (s *resumableServer) uploadURL(r *http.Request, id string) string {
	base := s.publicURL
	if base == "" {
		base = requestBaseURL(r)
	}
	return base + "/upload/resumable/" + id
}

// uploadLength reads Upload-Length, or Upload-Defer-Length: 1 (resumable.Unknown).
func (s *resumableServer) uploadLength(r *http.Request) (int64, error) {
	l, deferred := r.Header.Get("Upload-Length"), r.Header.Get("Upload-Defer-Length")
	switch {
	case l != "" && deferred != "", l == "" && deferred != "1":
		return 0, errResumableLength
	case l == "":
		return resumable.Unknown, nil
	}
	n, err := strconv.ParseInt(l, 10, 64)
	switch {
	case err != nil || n < 0:
		return 0, errResumableLength
	case n == 0:
		return 0, errEmptyFile
	case n > s.lim.maxFileBytes:
		return 0, errTooLarge(s.lim.maxFileBytes)
	}
	return n, nil
}

// metadataParams reads Upload-Metadata (key and base64 value pairs, comma-separated): filename,
// and the parameters a client may set (SIGNABLE_PARAMS), checked as the form's fields are. Other
// keys (Uppy sends name, type, filetype, relativePath) are ignored.
func (s *resumableServer) metadataParams(r *http.Request) (store.Params, error) {
	var p store.Params
	raw := r.Header.Get("Upload-Metadata")
	if len(raw) > maxUploadMetadata {
		return p, errResumableMetadata
	}
	seen := map[string]bool{}
	for pair := range strings.SplitSeq(raw, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		key, enc, _ := strings.Cut(pair, " ")
		value, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
		if key == "" || err != nil || seen[key] {
			return p, errResumableMetadata
		}
		seen[key] = true
		switch {
		case key == "filename":
			p.Filename = cleanFilename(string(value))
		case slices.Contains(s.lim.signable, key):
			if err := setClientParam(&p, key, string(value)); err != nil {
				return p, err
			}
		}
	}
	p.BaseURL = requestBaseURL(r)
	p.Folder, p.UploadedBy = folderFor(r, s.lim.folder, s.lim.signIn)
	p.DeleteToken = p.UploadedBy == "" // as for the form: holding the answer deletes the file
	return p, nil
}

// setClientParam checks one parameter a client chose (clientParam, the form's and POST /sign's
// check) and sets it in p, as the form's fields are set.
func setClientParam(p *store.Params, name, value string) error {
	v, err := clientParam(name, value)
	if err != nil {
		return err
	}
	switch name {
	case "public_id":
		p.PublicID = v
	case "tags":
		p.Tags = splitList(v)
	default:
		if v == "" {
			return nil
		}
		if p.Extra == nil {
			p.Extra = map[string]string{}
		}
		p.Extra[name] = v
	}
	return nil
}

// load returns the upload id names if r's client owns it; anyone else is told there is none.
func (s *resumableServer) load(r *http.Request) (resumable.Upload, error) {
	u, err := s.state.Get(r.Context(), r.PathValue("id"))
	switch {
	case err != nil:
		return u, stateError(err)
	case u.Owner != s.ownerOf(r):
		return u, errResumableNotFound
	case !u.Complete() && s.now().After(u.Expires):
		return u, errResumableExpired
	}
	return u, nil
}

// stateError is what the client sees of a failure of the uploads' state.
func stateError(err error) error {
	switch {
	case errors.Is(err, resumable.ErrNotFound):
		return fmt.Errorf("%w: %w", errResumableNotFound, err)
	case errors.Is(err, resumable.ErrLocked):
		return fmt.Errorf("%w: %w", errResumableLocked, err)
	}
	return fmt.Errorf("%w: %w", errResumableState, err)
}

// uploadHeaders says where an upload stands: its offset, length and expiry.
func uploadHeaders(w http.ResponseWriter, u resumable.Upload, offset int64) {
	h := w.Header()
	h.Set("Upload-Offset", strconv.FormatInt(offset, 10))
	if u.Length == resumable.Unknown {
		h.Set("Upload-Defer-Length", "1")
	} else {
		h.Set("Upload-Length", strconv.FormatInt(u.Length, 10))
	}
	h.Set("Upload-Expires", u.Expires.UTC().Format(http.TimeFormat))
	h.Set("Cache-Control", "no-store")
}

// offsetOf is where the upload resumes on this instance: where its stream stands if this
// instance feeds it, else what any instance can resume from.
func (s *resumableServer) offsetOf(u resumable.Upload) int64 {
	if u.Complete() {
		return u.Length
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.streams[u.ID]; st != nil && st.gen == u.Gen {
		return st.offset.Load()
	}
	return u.Resumable()
}

// head serves HEAD /upload/resumable/{id}: the offset to resume from.
func (s *resumableServer) head(w http.ResponseWriter, r *http.Request) {
	if !checkTusVersion(w, r) {
		return
	}
	u, err := s.load(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	uploadHeaders(w, u, s.offsetOf(u))
	w.WriteHeader(http.StatusOK)
}

// get serves GET /upload/resumable/{id}: the store's answer of a complete upload, again.
func (s *resumableServer) get(w http.ResponseWriter, r *http.Request) {
	u, err := s.load(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if !u.Complete() {
		writeError(w, r, errResumableIncomplete)
		return
	}
	s.answerResult(w, r, u, http.StatusOK)
}

func (s *resumableServer) answerResult(w http.ResponseWriter, r *http.Request, u resumable.Upload, status int) {
	uploadHeaders(w, u, u.Length)
	if u.Removed != "" {
		w.Header().Set(metadataRemovedHeader, u.Removed)
	}
	if err := writeJSON(w, status, u.Result); err != nil {
		loggerFrom(r.Context()).WarnContext(r.Context(), "write upload result", "err", err)
	}
}

// terminate serves DELETE /upload/resumable/{id}: the upload ends, and what is held of it goes.
func (s *resumableServer) terminate(w http.ResponseWriter, r *http.Request) {
	if !checkTusVersion(w, r) {
		return
	}
	u, err := s.load(r)
	if err != nil {
		refuseEarly(w, r, err)
		return
	}
	unlock, err := s.state.Lock(r.Context(), u.ID)
	if err != nil {
		refuseEarly(w, r, stateError(err))
		return
	}
	defer unlock()
	s.end(r.Context(), u)
	w.WriteHeader(http.StatusNoContent)
}

// end drops an upload: its stream here, its state, and what the store holds of it.
func (s *resumableServer) end(ctx context.Context, u resumable.Upload) {
	s.dropStream(u.ID)
	if err := s.state.Delete(ctx, u.ID); err != nil {
		loggerFrom(ctx).WarnContext(ctx, "delete resumable upload", "upload", u.ID, "err", err)
	}
	s.abortStore(ctx, u.StoreID)
}

func (s *resumableServer) abortStore(ctx context.Context, storeID string) {
	if a, ok := s.store.(chunkAborter); ok {
		if err := a.AbortChunks(storeID); err != nil {
			loggerFrom(ctx).WarnContext(ctx, "drop an unfinished upload's chunks", "store_id", storeID, "err", err)
		}
	}
}

// patch serves PATCH /upload/resumable/{id}: the next bytes of the file, at Upload-Offset.
func (s *resumableServer) patch(w http.ResponseWriter, r *http.Request) {
	if !checkTusVersion(w, r) {
		return
	}
	if !isTusOctets(r) {
		refuseEarly(w, r, errResumableContentType)
		return
	}
	offset, err := strconv.ParseInt(r.Header.Get("Upload-Offset"), 10, 64)
	if err != nil || offset < 0 {
		refuseEarly(w, r, errResumableOffsetHeader)
		return
	}
	s.write(w, r, r.PathValue("id"), offset, http.StatusNoContent)
}

// write takes the body of r at offset of the upload id, under the upload's lock, and answers
// with status (204 for PATCH, 201 for a creation with its first bytes), or the store's answer
// when the body completed the file.
func (s *resumableServer) write(w http.ResponseWriter, r *http.Request, id string, offset int64, status int) {
	ctx := r.Context()
	r.SetPathValue("id", id)
	if _, err := s.load(r); err != nil {
		refuseEarly(w, r, err)
		return
	}
	unlock, me, err := s.lockWriter(w, r, id)
	if err != nil {
		refuseEarly(w, r, stateError(err))
		return
	}
	defer unlock()
	u, err := s.load(r) // as it is now that no one else writes to it
	if err != nil {
		refuseEarly(w, r, err)
		return
	}
	if u.Complete() {
		if offset == u.Length && r.ContentLength <= 0 { // a client that lost the last answer
			s.answerResult(w, r, u, http.StatusOK)
			return
		}
		uploadHeaders(w, u, u.Length)
		refuseEarly(w, r, errResumableOffset)
		return
	}
	if u, err = s.takeLength(ctx, r, u, offset); err != nil {
		refuseEarly(w, r, err)
		return
	}
	st, err := s.streamFor(w, r, &u)
	if err != nil {
		refuseEarly(w, r, err)
		return
	}
	defer s.rest(u.ID, st)
	if offset != st.offset.Load() {
		uploadHeaders(w, u, st.offset.Load())
		refuseEarly(w, r, errResumableOffset)
		return
	}
	limit := s.lim.maxFileBytes - offset
	if u.Length != resumable.Unknown {
		limit = u.Length - offset
	}
	if r.ContentLength > limit {
		refuseEarly(w, r, errResumableTooLong)
		return
	}
	// USER_QUOTA counts the bytes each PATCH brings, as they come: they are spent once in the
	// stream (bytes dropped with a stream and sent again count again).
	spend, err := s.quota.begin(r)
	defer spend.settle(w, r)
	if err != nil {
		spend.settle(w, r)
		refuseEarly(w, r, err)
		return
	}
	fq := spend.file()
	defer fq.keep()
	readErr := s.feed(me, st, limit, fq)
	if errors.Is(readErr, errResumableTooLong) {
		s.fail(ctx, u, st)
		refuseEarly(w, r, readErr)
		return
	}
	if readErr == nil && u.Length != resumable.Unknown && st.offset.Load() == u.Length {
		st.feed.Close()
		<-st.done
	} else if err := st.feed.Settle(); err == nil && readErr != nil {
		// The client broke off, or stalled: what it sent is in the stream, told by HEAD.
		uploadHeaders(w, u, st.offset.Load())
		writeError(w, r, readErr)
		return
	}
	select {
	case <-st.done:
	default:
		uploadHeaders(w, u, st.offset.Load())
		w.WriteHeader(status)
		return
	}
	if st.err != nil {
		s.failed(ctx, u, st)
		refuseEarly(w, r, st.err)
		return
	}
	u.Result, u.Removed = st.result, st.removed
	if err := s.state.Save(ctx, u); err != nil {
		loggerFrom(ctx).WarnContext(ctx, "keep a resumable upload's answer", "upload", u.ID, "err", err)
	}
	s.dropStream(u.ID)
	loggerFrom(ctx).InfoContext(ctx, "resumable upload complete", "upload", u.ID, "bytes", u.Length)
	if status == http.StatusNoContent {
		status = http.StatusOK
	}
	s.answerResult(w, r, u, status)
}

// writer is the request that holds an upload's lock on this instance.
type writer struct {
	body    *upload.RequestBody
	stopped atomic.Bool   // a newer request asked it to let go
	done    chan struct{} // closed when it has let go
}

// interrupt ends the writer's wait for its body: it answers and lets go.
func (wr *writer) interrupt() {
	wr.stopped.Store(true)
	wr.body.Interrupt()
}

// lockWriter takes the upload's lock for r. A request of this instance that holds it is most
// likely a PATCH whose client went away unseen (a connection dropped without a word), which
// would hold the lock until BODY_IDLE_TIMEOUT while its client resumes: as tusd does, the
// newer request ends the older one's wait for its body and takes the lock once it lets go. One
// on another instance cannot be reached: the client is answered 423, and retries.
func (s *resumableServer) lockWriter(w http.ResponseWriter, r *http.Request, id string) (func(), *writer, error) {
	unlock, err := s.state.Lock(r.Context(), id)
	if errors.Is(err, resumable.ErrLocked) {
		s.mu.Lock()
		old := s.writers[id]
		s.mu.Unlock()
		if old != nil {
			old.interrupt()
			t := time.NewTimer(writerLetGo)
			select {
			case <-old.done:
			case <-t.C:
			case <-r.Context().Done():
			}
			t.Stop()
			unlock, err = s.state.Lock(r.Context(), id)
		}
	}
	if err != nil {
		return nil, nil, err
	}
	_, body := watchBody(w, r)
	me := &writer{body: body, done: make(chan struct{})}
	s.mu.Lock()
	s.writers[id] = me
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		if s.writers[id] == me {
			delete(s.writers, id)
		}
		s.mu.Unlock()
		unlock()
		close(me.done)
	}, me, nil
}

// takeLength takes Upload-Length for an upload created without it.
func (s *resumableServer) takeLength(ctx context.Context, r *http.Request, u resumable.Upload, offset int64) (resumable.Upload, error) {
	l := r.Header.Get("Upload-Length")
	if l == "" {
		return u, nil
	}
	n, err := strconv.ParseInt(l, 10, 64)
	switch {
	case err != nil || n < 0:
		return u, errResumableLength
	case u.Length != resumable.Unknown && n != u.Length:
		return u, errResumableLengthSet
	case n > s.lim.maxFileBytes:
		return u, errTooLarge(s.lim.maxFileBytes)
	case n < offset:
		return u, errResumableLength
	case n == 0:
		return u, errEmptyFile
	}
	if u.Length == n {
		return u, nil
	}
	u.Length = n
	if err := s.state.Save(ctx, u); err != nil {
		return u, stateError(err)
	}
	return u, nil
}

// feed copies r's body into the stream, at most limit bytes (a byte more is errResumableTooLong).
// Its error is the body's, or the stream's failure.
func (s *resumableServer) feed(me *writer, st *stream, limit int64, fq *fileQuota) error {
	body := me.body
	body.Idle(s.lim.idleTimeout)
	body.Pace(s.adm.minRate)
	buf := make([]byte, patchBufferBytes)
	for {
		if me.stopped.Load() {
			return errResumableTakenOver
		}
		n, err := body.Read(buf)
		if int64(n) > limit {
			n, err = int(limit), errResumableTooLong
		}
		if n > 0 {
			if qerr := fq.take(n); qerr != nil {
				return qerr
			}
			m, werr := st.feed.Write(buf[:n])
			st.offset.Add(int64(m))
			limit -= int64(m)
			if werr != nil {
				return werr
			}
		}
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case errors.Is(err, errResumableTooLong):
			return err
		case err != nil:
			return bodyError(err, s.lim)
		}
	}
}

// fail ends an upload refused for what it carries: nothing more is stored of it.
func (s *resumableServer) fail(ctx context.Context, u resumable.Upload, st *stream) {
	st.feed.End(errStreamClosed)
	s.end(ctx, u)
}

// failed handles a stream that ended with an error: a refusal of the file (a 4xx: its type, the
// image guard, its size, a public id taken) ends the upload; anything else (the store or the
// state failing, a stream closed under it) drops only the stream, and the upload resumes from
// what the state says.
func (s *resumableServer) failed(ctx context.Context, u resumable.Upload, st *stream) {
	if errors.Is(st.err, errStreamClosed) {
		st.err = fmt.Errorf("%w: %w", errResumableMoved, st.err)
	}
	if asAPIError(st.err).status < 500 && !errors.Is(st.err, errResumableMoved) {
		s.fail(ctx, u, st)
		return
	}
	s.dropStream(u.ID)
}

// rest starts the idle timer of a stream that lives on after its request.
func (s *resumableServer) rest(id string, st *stream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streams[id] == st {
		st.idle.Reset(resumableIdle)
	}
}

// streamFor returns the stream this instance feeds the upload with, starting one if it has none:
// where the upload's stored bytes map onto the client's, from there, else (and the first time)
// from 0, through the checks.
func (s *resumableServer) streamFor(w http.ResponseWriter, r *http.Request, u *resumable.Upload) (*stream, error) {
	s.mu.Lock()
	st := s.streams[u.ID]
	if st != nil && st.gen == u.Gen && st.idle.Stop() {
		s.mu.Unlock()
		return st, nil
	}
	s.mu.Unlock()
	if st != nil {
		s.dropStream(u.ID) // stale, or being dropped for idleness
	}
	ctx := r.Context()
	fresh := u.Delta == resumable.Unknown
	if fresh && (u.Stored > 0 || u.Gen > 0) { // begun on a stream that is gone: again from 0
		s.abortStore(ctx, u.StoreID)
		u.StoreID, u.Stored = s.newStoreID(), 0
	}
	u.Gen++
	if err := s.state.Save(ctx, *u); err != nil {
		return nil, stateError(err)
	}
	mem, err := s.adm.admit(w, r)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	st = &stream{gen: u.Gen, feed: resumable.NewFeed(), cancel: cancel, done: make(chan struct{}), mem: mem,
		delta: resumable.Unknown}
	st.offset.Store(u.Resumable())
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cancel(nil)
		mem.release()
		return nil, errTooBusy
	}
	s.streams[u.ID] = st
	st.idle = time.AfterFunc(resumableIdle, func() { s.dropIdle(u.ID, st) })
	st.idle.Stop() // runs from the end of this request
	s.mu.Unlock()
	if fresh {
		st.offset.Store(0)
	}
	loggerFrom(ctx).InfoContext(ctx, "resumable stream started", "upload", u.ID, "from", st.offset.Load(), "stored", u.Stored, "checked", fresh)
	go s.run(sctx, st, *u, fresh)
	return st, nil
}

// dropIdle drops a stream no PATCH came for.
func (s *resumableServer) dropIdle(id string, st *stream) {
	s.mu.Lock()
	if s.streams[id] == st {
		delete(s.streams, id)
	}
	s.mu.Unlock()
	st.stop()
}

// dropStream drops the upload's stream on this instance, if it has one.
func (s *resumableServer) dropStream(id string) {
	s.mu.Lock()
	st := s.streams[id]
	delete(s.streams, id)
	s.mu.Unlock()
	if st != nil {
		st.idle.Stop()
		st.stop()
	}
}

// stop ends the stream's goroutine and gives back its memory.
func (st *stream) stop() {
	st.cancel(errStreamClosed)
	st.feed.End(errStreamClosed)
	<-st.done
	st.mem.release()
}

// close ends every stream: the server is shutting down (their uploads resume from what the
// state says).
func (s *resumableServer) close() {
	s.mu.Lock()
	s.closed = true
	streams := s.streams
	s.streams = map[string]*stream{}
	s.mu.Unlock()
	for _, st := range streams {
		st.idle.Stop()
		st.stop()
	}
}

// sweep drops the expired uploads, at most once a minute.
func (s *resumableServer) sweep(ctx context.Context) {
	now := s.now()
	last := s.lastSweep.Load()
	if now.UnixNano()-last < int64(resumableSweepGap) || !s.lastSweep.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	expired, err := s.state.Expired(ctx, now)
	if err != nil {
		loggerFrom(ctx).WarnContext(ctx, "sweep expired resumable uploads", "err", err)
	}
	for _, u := range expired {
		if u.ID != "" {
			s.dropStream(u.ID)
		}
		s.abortStore(ctx, u.StoreID)
	}
	if len(expired) > 0 {
		loggerFrom(ctx).InfoContext(ctx, "expired resumable uploads swept", "uploads", len(expired))
	}
}

// run is the stream's goroutine: the upload's bytes through the pipeline of every upload
// (internal/upload: sniff, type policy, image guard) into the Cutter's chunks. A stream resumed
// where the guard had let the rest through goes on from the stored bytes, unchecked again.
func (s *resumableServer) run(ctx context.Context, st *stream, u resumable.Upload, fresh bool) {
	defer close(st.done)
	p := u.Params
	p.Size = u.Length // the Cutter's chunks are each timed by Send (cutterStore.Holds)
	cutter := &resumable.Cutter{
		Size:   s.chunkSize,
		Memory: st.mem,
		Send: func(ctx context.Context, offset int64, chunk []byte, total int64) (json.RawMessage, error) {
			cctx, cancel := context.WithTimeoutCause(ctx, s.lim.uploadTimeout, errUpstreamTimeout)
			defer cancel()
			result, err := s.store.SendChunk(cctx, u.StoreID, offset, chunk, total, p)
			if err != nil && errors.Is(context.Cause(cctx), errUpstreamTimeout) {
				err = fmt.Errorf("%w: %w", errUpstreamTimeout, err)
			}
			return result, err
		},
		Sent: func(stored int64) error { return s.keepStored(ctx, st, u.ID, stored) },
	}
	start := int64(0)
	if !fresh {
		start, st.delta, st.removed = u.Stored, u.Delta, u.Removed
	}
	pl := s.pl.WithStore(cutterStore{cutter: cutter, start: start})
	res, err := pl.Upload(ctx, upload.File{
		Body: st.feed, Size: u.Length, Params: p, Resumed: !fresh, Offset: start,
		Decided: func(d upload.Decision) {
			st.removed = d.Removed
			if d.Passthrough {
				st.prefix, st.delta = d.Produced, d.Consumed-d.Produced
			}
		},
	})
	switch {
	case errors.Is(context.Cause(ctx), errStreamClosed):
		err = errStreamClosed
	case err != nil:
		err = uploadError(ctx, err, s.lim)
	case fresh:
		st.removed = res.Removed
	}
	st.result, st.err = res.Answer, err
	st.feed.End(err)
}

// cutterStore is the store the pipeline of a resumable upload sends to: the Cutter's chunks.
type cutterStore struct {
	cutter *resumable.Cutter
	start  int64
}

// Holds says the Cutter holds a chunk, and times each itself: the pipeline runs no stream timer.
func (c cutterStore) Holds(int64) int64 { return int64(c.cutter.Size) + 1 }

func (c cutterStore) Upload(ctx context.Context, file io.Reader, _ store.Params) (json.RawMessage, error) {
	return c.cutter.Upload(ctx, file, c.start)
}

// keepStored records a chunk the store has taken, and, once the guard has decided that the rest
// passes unchanged, how the stored bytes map onto the client's: a killed instance loses at most
// the chunk it was filling.
func (s *resumableServer) keepStored(ctx context.Context, st *stream, id string, stored int64) error {
	u, err := s.state.Get(ctx, id)
	if err != nil {
		return stateError(err)
	}
	if u.Gen != st.gen {
		return errStreamClosed // another instance took the upload over
	}
	u.Stored = stored
	if st.delta != resumable.Unknown && stored >= st.prefix {
		u.Delta, u.Removed = st.delta, st.removed
	}
	if err := s.state.Save(ctx, u); err != nil {
		return stateError(err)
	}
	return nil
}
