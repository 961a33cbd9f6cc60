// Package cloudinarytest is a fake of Cloudinary's Upload API, faithful to the protocol, for tests
// and for .ci/run (tools/fakecloudinary serves it as a process). It checks the cloud name, the
// api_key and the signature (SHA-1, version 2, as Cloudinary does by default), and a stale
// timestamp; streams the multipart body without keeping the file (only its hashes, size and
// first bytes); assembles chunked uploads (X-Unique-Upload-Id, Content-Range, 5 MiB minimum
// chunks, 100 MiB per request); refuses overwrite=false on a taken public id as Cloudinary does;
// and answers with Cloudinary's field names and its error shape, {"error":{"message":…}}.
// A Behaviour makes it misbehave: an error status, an HTML page, a reset, a hang.
//
// It keeps what it stores, so a test can see an asset gone: the signed destroy
// (POST /v1_1/<cloud>/<resource_type>/destroy) and, for an upload that asked for
// return_delete_token, the unsigned delete_by_token (POST /v1_1/<cloud>/delete_by_token) with the
// answer's delete_token, valid for 10 minutes after the upload on the fake's clock (SetClock).
//
// It imports nothing of internal/cloudinary: the oracle stays independent of what it checks.
// Its own tests check it against Cloudinary's documented signature vectors and the Go SDK.
package cloudinarytest

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The fake's account. CloudinaryURL builds a CLOUDINARY_URL from these.
const (
	CloudName = "demo-cloud"
	APIKey    = "123456789012345"
	APISecret = "fake-secret-Zx9Qw"
)

const (
	MaxFileBytes      = 104857600 // per request (and so per chunk), as in Cloudinary's "File size too large" text
	MinChunkBytes     = 5242880   // every chunk but the last must be at least 5 MiB
	fakePrefixBytes   = 64 << 10  // kept for image.DecodeConfig; the rest of a file is only hashed
	fakeMaxFieldBytes = 1 << 20   // a text field longer than this is a broken client, not an upload
	fakeSignatureTTL  = time.Hour
	DeleteTokenTTL    = 10 * time.Minute // "a delete token returned in the upload response that is valid for 10 minutes"
)

// Upload is one upload the fake accepted (answered 200 with a full result).
type Upload struct {
	Params   url.Values  // every text field as received; the Go SDK sends arrays as tags[0], tags[1], … (see Tags)
	Filename string      // file part's filename as sent (of the last chunk for chunked uploads)
	Bytes    int64       // whole file, all chunks
	SHA256   string      // hex over the whole file (all chunks)
	Chunks   []string    // Content-Range header of each chunk, in order; nil for single-request uploads
	Header   http.Header // headers of the (last) request
	Response []byte      // the JSON body the fake answered
	Prefix   []byte      // the file's first fakePrefixBytes bytes (all of a small file)
}

// Tags returns the tags the upload asked for, from a comma-separated tags field or from tags[N] / tags[] fields.
func (u Upload) Tags() []string {
	return fakeSplitList(fakeCollapseParams(u.Params).Get("tags"))
}

// Behaviour makes the fake misbehave, in uploads and deletions alike. The zero value is normal processing.
type Behaviour struct {
	Status      int    // non-zero: after reading the whole body, answer with this status and body instead of the normal processing
	Body        string // e.g. `{"error":{"message":"Invalid image file"}}` or an HTML page
	ContentType string // default application/json
	Reset       bool   // after reading the body, hijack the connection and close it without answering
	Hang        bool   // after reading the body, block until the request context is done, then return
	FailTimes   int    // if > 0: misbehave (status, reset or hang) only for the first FailTimes requests, then behave normally
}

func (b Behaviour) misbehaves() bool { return b.Status != 0 || b.Reset || b.Hang }

// Server is an httptest server speaking Cloudinary's Upload API: it checks the cloud name, api_key and
// signature, streams the multipart body without keeping the file, assembles chunked uploads and answers with
// Cloudinary's field names and error shape.
type Server struct {
	srv *httptest.Server

	// FirstBytes gets a non-blocking send when a request's file part yields its first bytes.
	FirstBytes chan struct{}
	// Aborted gets a non-blocking send when reading a request body fails; that upload is not recorded.
	Aborted chan error

	maxFile   atomic.Int64
	closeOnce sync.Once

	mu         sync.Mutex
	behaviour  Behaviour
	misbehaved int // requests answered by the current behaviour
	requests   int
	accepted   []Upload
	assets     map[string]map[string]any // by public_id: the stored resource as answered when created
	chunked    map[string]*fakeChunkState
	tokens     map[string]fakeDeleteToken // by delete_token
	now        func() time.Time
}

// fakeDeleteToken is what a delete token deletes, and until when.
type fakeDeleteToken struct {
	publicID string
	expires  time.Time
}

// fakeChunkState is a chunked upload in progress, by X-Unique-Upload-Id.
type fakeChunkState struct {
	received int64
	sha, md5 hash.Cloner
	Prefix   []byte
	Chunks   []string
}

// New starts the fake and closes it when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	f := Start()
	t.Cleanup(f.Close)
	return f
}

// Start starts the fake on a loopback port; Close stops it.
func Start() *Server {
	f := &Server{
		FirstBytes: make(chan struct{}, 64),
		Aborted:    make(chan error, 64),
		assets:     map[string]map[string]any{},
		chunked:    map[string]*fakeChunkState{},
		tokens:     map[string]fakeDeleteToken{},
		now:        time.Now,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1_1/{cloud}/{resource_type}/upload", f.handleUpload)
	mux.HandleFunc("POST /v1_1/{cloud}/{resource_type}/destroy", f.handleDestroy)
	mux.HandleFunc("POST /v1_1/{cloud}/delete_by_token", f.handleDeleteByToken)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fakeWriteError(w, http.StatusNotFound, "Resource not found - "+r.URL.Path)
	})
	f.srv = httptest.NewServer(mux)
	return f
}

// Close ends every connection first, so that hanging and reading handlers return, then waits for them.
func (f *Server) Close() {
	f.closeOnce.Do(func() {
		f.srv.CloseClientConnections()
		f.srv.Close()
	})
}

// URL is the fake's base URL, the upload_prefix of CloudinaryURL.
func (f *Server) URL() string { return f.srv.URL }

// Client is an HTTP client for the fake.
func (f *Server) Client() *http.Client { return f.srv.Client() }

// CloudinaryURL is a CLOUDINARY_URL that points the SDK (or a server) at the fake.
func (f *Server) CloudinaryURL() string {
	return "cloudinary://" + APIKey + ":" + APISecret + "@" + CloudName +
		"?upload_prefix=" + url.QueryEscape(f.URL())
}

// SetBehaviour replaces the behaviour and restarts its FailTimes count.
func (f *Server) SetBehaviour(b Behaviour) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.behaviour = b
	f.misbehaved = 0
}

// SetClock replaces the fake's clock (time.Now), which dates uploads and delete tokens and judges
// a timestamp stale: a test moves it on to see a delete token expire, without sleeping.
func (f *Server) SetClock(now func() time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = now
}

func (f *Server) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now()
}

// Asset returns the stored resource of publicID as it was answered when created, and whether
// there is one: a destroyed asset is gone.
func (f *Server) Asset(publicID string) (map[string]any, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.assets[publicID]
	if !ok {
		return nil, false
	}
	a = maps.Clone(a)
	delete(a, "_created")
	return a, true
}

// Uploads returns copies of the accepted uploads, in the order they completed.
func (f *Server) Uploads() []Upload {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Upload, len(f.accepted))
	for i, u := range f.accepted {
		u.Params = fakeCloneValues(u.Params)
		u.Header = u.Header.Clone()
		u.Chunks = slices.Clone(u.Chunks)
		u.Response = slices.Clone(u.Response)
		out[i] = u
	}
	return out
}

// RequestCount is the number of requests that reached an upload endpoint, whatever their fate.
func (f *Server) RequestCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

// MaxFileBytesSeen is the largest number of file bytes any single request delivered, counted while streaming.
func (f *Server) MaxFileBytesSeen() int64 { return f.maxFile.Load() }

// nextBehaviour is how the fake answers the request that has just come: b, when misbehave.
func (f *Server) nextBehaviour() (b Behaviour, misbehave bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b = f.behaviour
	misbehave = b.misbehaves() && (b.FailTimes <= 0 || f.misbehaved < b.FailTimes)
	if misbehave {
		f.misbehaved++
	}
	return b, misbehave
}

// fakeRequest is what the fake read from one request body.
type fakeRequest struct {
	Params    url.Values
	hasFile   bool
	textFile  bool // file sent as a text value (remote URL, data URI): not supported by the fake
	Filename  string
	size      int64
	sha, md5  hash.Cloner
	Prefix    []byte
	malformed error // the body was read to its end but is not a usable form
}

// fakeContentRange is a parsed "bytes START-END/TOTAL"; total is -1 when unknown.
type fakeContentRange struct{ start, end, total int64 }

var fakeContentRangeRE = regexp.MustCompile(`^bytes (\d+)-(\d+)/(-1|\d+)$`)

func parseFakeContentRange(s string) (fakeContentRange, bool) {
	m := fakeContentRangeRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return fakeContentRange{}, false
	}
	start, err1 := strconv.ParseInt(m[1], 10, 64)
	end, err2 := strconv.ParseInt(m[2], 10, 64)
	total, err3 := strconv.ParseInt(m[3], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || end < start || (total != -1 && end >= total) {
		return fakeContentRange{}, false
	}
	return fakeContentRange{start, end, total}, true
}

func (f *Server) handleUpload(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests++
	f.mu.Unlock()
	b, misbehave := f.nextBehaviour()

	// A chunk continues the hashes of the chunks before it. Clone them now, so the body can be hashed while it
	// streams; whether the chunk fits is decided after the body has been read.
	uploadID := r.Header.Get("X-Unique-Upload-Id")
	rangeHeader := r.Header.Get("Content-Range")
	cr, rangeOK := parseFakeContentRange(rangeHeader)
	var base *fakeChunkState
	req := &fakeRequest{sha: sha256.New().(hash.Cloner), md5: md5.New().(hash.Cloner)}
	if rangeHeader != "" && rangeOK && uploadID != "" {
		f.mu.Lock()
		if st := f.chunked[uploadID]; st != nil && st.received == cr.start {
			base = st
			req.sha = fakeMustClone(st.sha)
			req.md5 = fakeMustClone(st.md5)
			req.Prefix = slices.Clone(st.Prefix)
		}
		f.mu.Unlock()
	}

	if err := f.readRequest(r, req); err != nil {
		select {
		case f.Aborted <- err:
		default:
		}
		return
	}

	if misbehave {
		f.misbehave(w, r, b)
		return
	}

	if cloud := r.PathValue("cloud"); cloud != CloudName {
		fakeWriteError(w, http.StatusUnauthorized, "Invalid cloud_name "+cloud)
		return
	}
	resourceType := r.PathValue("resource_type")
	switch resourceType {
	case "image", "video", "raw", "auto":
	default:
		fakeWriteError(w, http.StatusBadRequest, "Invalid resource type "+resourceType)
		return
	}
	if req.malformed != nil {
		fakeWriteError(w, http.StatusBadRequest, "Invalid request body: "+req.malformed.Error())
		return
	}
	if !f.checkSigned(w, req.Params) {
		return
	}
	if req.textFile {
		fakeWriteError(w, http.StatusBadRequest, "fake Cloudinary: only a multipart file part is supported as file")
		return
	}
	if !req.hasFile {
		fakeWriteError(w, http.StatusBadRequest, "Missing required parameter - file")
		return
	}
	if req.size > MaxFileBytes {
		fakeWriteError(w, http.StatusBadRequest, fmt.Sprintf("File size too large. Got %d. Maximum is %d.", req.size, MaxFileBytes))
		return
	}
	if req.size == 0 {
		fakeWriteError(w, http.StatusBadRequest, "Empty file")
		return
	}

	upload := Upload{
		Params:   req.Params,
		Filename: req.Filename,
		Bytes:    req.size,
		Header:   r.Header.Clone(),
	}
	if rangeHeader == "" {
		upload.SHA256 = hex.EncodeToString(req.sha.Sum(nil))
		f.finish(w, resourceType, upload, hex.EncodeToString(req.md5.Sum(nil)), req.Prefix)
		return
	}

	// A chunk of a chunked upload.
	if uploadID == "" {
		fakeWriteError(w, http.StatusBadRequest, "Missing required header - X-Unique-Upload-Id")
		return
	}
	f.mu.Lock()
	st := f.chunked[uploadID]
	var received int64
	if st != nil {
		received = st.received
	}
	final := cr.total != -1 && cr.end+1 == cr.total
	switch {
	case !rangeOK, cr.start != received, st != base, cr.end-cr.start+1 != req.size:
		f.mu.Unlock()
		fakeWriteError(w, http.StatusBadRequest, "Invalid Content-Range")
		return
	case !final && req.size < MinChunkBytes:
		f.mu.Unlock()
		fakeWriteError(w, http.StatusBadRequest, "All parts except EOF-chunk must be larger than 5mb")
		return
	}
	if st == nil {
		st = &fakeChunkState{}
		f.chunked[uploadID] = st
	}
	st.received += req.size
	st.sha, st.md5, st.Prefix = req.sha, req.md5, req.Prefix
	st.Chunks = append(st.Chunks, rangeHeader)
	if !final {
		f.mu.Unlock()
		fakeWriteJSON(w, http.StatusOK, map[string]any{"done": false})
		return
	}
	delete(f.chunked, uploadID)
	f.mu.Unlock()

	upload.Bytes = st.received
	upload.Chunks = st.Chunks
	upload.SHA256 = hex.EncodeToString(st.sha.Sum(nil))
	f.finish(w, resourceType, upload, hex.EncodeToString(st.md5.Sum(nil)), st.Prefix)
}

// readRequest streams the whole body into req. It returns an error only when the body itself could not be read
// (the client went away); a body that is complete but not a usable form sets req.malformed.
func (f *Server) readRequest(r *http.Request, req *fakeRequest) error {
	body := &fakeBodyReader{r: r.Body}
	r.Body = body
	req.Params = url.Values{}

	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mediaType == "application/x-www-form-urlencoded" {
		raw, err := io.ReadAll(io.LimitReader(body, 10*fakeMaxFieldBytes))
		if body.err != nil {
			return body.err
		}
		if err == nil {
			req.Params, err = url.ParseQuery(string(raw))
		}
		if err != nil {
			req.malformed = err
		}
		if _, ok := req.Params["file"]; ok {
			req.textFile = true
			req.Params.Del("file")
		}
		return fakeDrain(body)
	}

	mr, err := r.MultipartReader()
	if err != nil {
		req.malformed = err
		return fakeDrain(body)
	}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			if body.err != nil {
				return body.err
			}
			req.malformed = err
			break
		}
		name := part.FormName()
		switch {
		case name == "file" && !req.hasFile:
			req.hasFile = true
			req.Filename = part.FileName()
			err = f.streamFile(part, req)
		case name == "file":
			_, err = io.Copy(io.Discard, part) // Cloudinary takes one file
		default:
			var value []byte
			value, err = io.ReadAll(io.LimitReader(part, fakeMaxFieldBytes+1))
			if err == nil && len(value) > fakeMaxFieldBytes {
				err = fmt.Errorf("field %q is longer than %d bytes", name, fakeMaxFieldBytes)
			}
			req.Params.Add(name, string(value))
		}
		if body.err != nil {
			return body.err
		}
		if err != nil {
			req.malformed = err
			break
		}
	}
	return fakeDrain(body)
}

// streamFile hashes the file part while counting it; past the per-request limit it only counts.
func (f *Server) streamFile(part io.Reader, req *fakeRequest) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := part.Read(buf)
		if n > 0 {
			if req.size == 0 {
				select {
				case f.FirstBytes <- struct{}{}:
				default:
				}
			}
			chunk := buf[:n]
			req.size += int64(n)
			if req.size <= MaxFileBytes {
				req.sha.Write(chunk)
				req.md5.Write(chunk)
				if room := fakePrefixBytes - len(req.Prefix); room > 0 {
					req.Prefix = append(req.Prefix, chunk[:min(room, n)]...)
				}
			}
			for seen := f.maxFile.Load(); req.size > seen && !f.maxFile.CompareAndSwap(seen, req.size); {
				seen = f.maxFile.Load()
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// misbehave answers as b says, after the body has been read.
func (f *Server) misbehave(w http.ResponseWriter, r *http.Request, b Behaviour) {
	switch {
	case b.Hang:
		<-r.Context().Done()
	case b.Reset:
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(http.ErrAbortHandler) // closes the connection without an answer all the same
		}
		_ = conn.Close() // the point is the abrupt close; its error changes nothing
	default:
		ct := b.ContentType
		if ct == "" {
			ct = "application/json"
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(b.Status)
		_, _ = io.WriteString(w, b.Body) // a client that left early is not the fake's problem
	}
}

// finish stores the upload (or finds the existing one when overwrite=false) and answers with its resource.
func (f *Server) finish(w http.ResponseWriter, resourceType string, u Upload, etag string, prefix []byte) {
	p := fakeCollapseParams(u.Params)
	u.Prefix = prefix
	format, width, height, isImage := fakeDetectImage(prefix)
	originalFilename := fakeStripExt(path.Base(u.Filename))
	if fo := p.Get("filename_override"); fo != "" {
		originalFilename = fakeStripExt(path.Base(fo))
	}
	switch {
	case resourceType == "image" && !isImage:
		fakeWriteError(w, http.StatusBadRequest, "Invalid image file")
		return
	case resourceType == "raw" || resourceType == "video" || !isImage:
		if resourceType != "video" {
			resourceType = "raw"
		}
		format = strings.ToLower(strings.TrimPrefix(path.Ext(u.Filename), "."))
		isImage = false
	default:
		resourceType = "image"
	}

	publicID := p.Get("public_id")
	if publicID == "" {
		if fakeTrue(p.Get("use_filename")) && originalFilename != "" {
			publicID = originalFilename
			if p.Get("unique_filename") == "" || fakeTrue(p.Get("unique_filename")) {
				publicID += "_" + fakeRandomID(6)
			}
		} else {
			publicID = fakeRandomID(20)
		}
	}
	if folder := strings.Trim(p.Get("folder"), "/"); folder != "" {
		publicID = folder + "/" + publicID
	}
	assetFolder := p.Get("asset_folder")
	if assetFolder == "" {
		assetFolder = strings.Trim(p.Get("folder"), "/")
	}
	displayName := p.Get("display_name")
	if displayName == "" {
		displayName = path.Base(publicID)
	}
	tags := fakeSplitList(p.Get("tags"))
	if tags == nil {
		tags = []string{}
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now().UTC()
	old, exists := f.assets[publicID]
	var resp map[string]any
	if exists && fakeFalse(p.Get("overwrite")) {
		resp = maps.Clone(old)
		resp["existing"] = true
	} else {
		version := now.Unix()
		assetID := fakeRandomHex(16)
		createdAt := now
		if exists {
			if v, _ := old["version"].(int64); version <= v {
				version = v + 1 // versions only grow, even within one second
			}
			assetID, _ = old["asset_id"].(string)
			createdAt, _ = old["_created"].(time.Time)
		}
		delivery := fmt.Sprintf("res.cloudinary.com/%s/%s/upload/v%d/%s", CloudName, resourceType, version, publicID)
		if format != "" {
			delivery += "." + format
		}
		resource := map[string]any{
			"asset_id":          assetID,
			"public_id":         publicID,
			"version":           version,
			"version_id":        fakeRandomHex(16),
			"signature":         fakeResponseSignature(publicID, version),
			"format":            format,
			"resource_type":     resourceType,
			"created_at":        createdAt.Format("2006-01-02T15:04:05Z"),
			"tags":              tags,
			"bytes":             u.Bytes,
			"type":              "upload",
			"etag":              etag,
			"placeholder":       false,
			"url":               "http://" + delivery,
			"secure_url":        "https://" + delivery,
			"asset_folder":      assetFolder,
			"display_name":      displayName,
			"original_filename": originalFilename,
			"api_key":           APIKey,
		}
		if isImage {
			resource["width"] = width
			resource["height"] = height
		}
		if custom := fakeParseContext(p.Get("context")); len(custom) > 0 {
			resource["context"] = map[string]any{"custom": custom}
		}
		stored := maps.Clone(resource)
		stored["_created"] = createdAt
		f.assets[publicID] = stored
		resp = maps.Clone(resource)
		if exists {
			resp["overwritten"] = true
		}
		// Only the upload that created (or replaced) the asset gets a token, not one answered
		// "existing"; the token is never part of the stored resource.
		if fakeTrue(p.Get("return_delete_token")) {
			token := fakeRandomHex(32)
			f.tokens[token] = fakeDeleteToken{publicID: publicID, expires: now.Add(DeleteTokenTTL)}
			resp["delete_token"] = token
		}
	}
	delete(resp, "_created")
	body, err := json.Marshal(resp)
	if err != nil {
		panic(err) // only plain values above: cannot happen
	}
	u.Response = body
	f.accepted = append(f.accepted, u)
	fakeWriteBody(w, http.StatusOK, body)
}

// fakeSign returns the signature Cloudinary expects for params and the string it signs (without the secret):
// every param but file, cloud_name, resource_type, api_key and signature, arrays joined by commas, empty values
// left out, sorted by name, "&" in values escaped as %26 (signature version 2), then SHA-1 of string+secret.
func Sign(params url.Values, secret string) (signature, toSign string) {
	p := fakeCollapseParams(params)
	keys := make([]string, 0, len(p))
	for k := range p {
		switch k {
		case "file", "cloud_name", "resource_type", "api_key", "signature":
			continue
		}
		if p.Get(k) == "" {
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	pairs := make([]string, len(keys))
	for i, k := range keys {
		pairs[i] = k + "=" + strings.ReplaceAll(p.Get(k), "&", "%26")
	}
	toSign = strings.Join(pairs, "&")
	sum := sha1.Sum([]byte(toSign + secret))
	return hex.EncodeToString(sum[:]), toSign
}

// fakeResponseSignature is the signature Cloudinary puts in an upload result (SDK VerifyApiResponseSignature).
func fakeResponseSignature(publicID string, version int64) string {
	sum := sha1.Sum([]byte(fmt.Sprintf("public_id=%s&version=%d", publicID, version) + APISecret))
	return hex.EncodeToString(sum[:])
}

var fakeArrayKeyRE = regexp.MustCompile(`^(.+)\[(\d*)\]$`)

// fakeCollapseParams turns array fields (tags[0], tags[1] from the Go SDK, or tags[] from browsers) into one
// comma-joined value per name, ordered by index. Repeated plain fields are comma-joined too.
func fakeCollapseParams(params url.Values) url.Values {
	type item struct {
		index int
		value string
	}
	arrays := map[string][]item{}
	out := url.Values{}
	for k, vs := range params {
		m := fakeArrayKeyRE.FindStringSubmatch(k)
		if m == nil {
			out.Set(k, strings.Join(vs, ","))
			continue
		}
		index := -1 // "name[]": keep the order received
		if m[2] != "" {
			index, _ = strconv.Atoi(m[2])
		}
		for _, v := range vs {
			arrays[m[1]] = append(arrays[m[1]], item{index, v})
		}
	}
	for name, items := range arrays {
		sort.SliceStable(items, func(i, j int) bool { return items[i].index < items[j].index })
		vs := make([]string, len(items))
		for i, it := range items {
			vs[i] = it.value
		}
		out.Set(name, strings.Join(vs, ","))
	}
	return out
}

func fakeSplitList(s string) []string {
	var out []string
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// fakeDetectImage decodes the header of PNG, JPEG and GIF files (golang.org/x/image/webp is not a dependency).
func fakeDetectImage(prefix []byte) (format string, width, height int, ok bool) {
	var cfg image.Config
	var err error
	switch {
	case bytes.HasPrefix(prefix, []byte("\x89PNG\r\n\x1a\n")):
		format = "png"
		cfg, err = png.DecodeConfig(bytes.NewReader(prefix))
	case bytes.HasPrefix(prefix, []byte("\xff\xd8")):
		format = "jpg"
		cfg, err = jpeg.DecodeConfig(bytes.NewReader(prefix))
	case bytes.HasPrefix(prefix, []byte("GIF87a")), bytes.HasPrefix(prefix, []byte("GIF89a")):
		format = "gif"
		cfg, err = gif.DecodeConfig(bytes.NewReader(prefix))
	default:
		return "", 0, 0, false
	}
	if err != nil || cfg.Width <= 0 || cfg.Height <= 0 {
		return "", 0, 0, false
	}
	return format, cfg.Width, cfg.Height, true
}

func fakeStripExt(name string) string {
	if name == "." || name == "/" {
		return ""
	}
	return strings.TrimSuffix(name, path.Ext(name))
}

func fakeTrue(s string) bool  { return s == "true" || s == "1" }
func fakeFalse(s string) bool { return s == "false" || s == "0" }

// fakeRandomID is n random characters of [a-z0-9], like Cloudinary's generated public IDs.
func fakeRandomID(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := fakeRandomBytes(n)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func fakeRandomHex(n int) string { return hex.EncodeToString(fakeRandomBytes(n)) }

func fakeRandomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error (Go 1.24+)
	return b
}

func fakeMustClone(h hash.Cloner) hash.Cloner {
	c, err := h.Clone()
	if err != nil {
		panic(err) // standard library hashes always clone
	}
	return c
}

func fakeCloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

// fakeBodyReader remembers the first error of the underlying body, to tell a client that went away from a body
// that is merely malformed.
type fakeBodyReader struct {
	r   io.ReadCloser
	err error
}

func (b *fakeBodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && b.err == nil {
		b.err = err
	}
	return n, err
}

func (b *fakeBodyReader) Close() error { return b.r.Close() }

// fakeDrain reads the rest of the body, so every request is answered only once it has been fully received, as
// Cloudinary does.
func fakeDrain(body *fakeBodyReader) error {
	_, _ = io.Copy(io.Discard, body)
	return body.err
}

func fakeWriteError(w http.ResponseWriter, status int, message string) {
	w.Header().Set("X-Cld-Error", message)
	fakeWriteJSON(w, status, map[string]any{"error": map[string]string{"message": message}})
}

func fakeWriteJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain values: cannot happen
	}
	fakeWriteBody(w, status, body)
}

func fakeWriteBody(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body) // a client that left early is not the fake's problem
}

// readParams reads the fields of a request that carries no file (destroy, delete_by_token), as
// form-urlencoded or multipart. ok is false when the answer has been written. The Go SDK's
// Destroy posts its form-urlencoded body with no Content-Type at all, which Cloudinary takes.
func (f *Server) readParams(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	if r.Header.Get("Content-Type") == "" {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	b, misbehave := f.nextBehaviour()
	req := &fakeRequest{sha: sha256.New().(hash.Cloner), md5: md5.New().(hash.Cloner)}
	if err := f.readRequest(r, req); err != nil {
		select {
		case f.Aborted <- err:
		default:
		}
		return nil, false
	}
	if misbehave {
		f.misbehave(w, r, b)
		return nil, false
	}
	if cloud := r.PathValue("cloud"); cloud != CloudName {
		fakeWriteError(w, http.StatusUnauthorized, "Invalid cloud_name "+cloud)
		return nil, false
	}
	if req.malformed != nil {
		fakeWriteError(w, http.StatusBadRequest, "Invalid request body: "+req.malformed.Error())
		return nil, false
	}
	return fakeCollapseParams(req.Params), true
}

// checkSigned answers as Cloudinary does a signed request whose api_key, signature or timestamp
// is missing or wrong; ok is true when the request may go on.
func (f *Server) checkSigned(w http.ResponseWriter, params url.Values) bool {
	if key := params.Get("api_key"); key != APIKey {
		fakeWriteError(w, http.StatusUnauthorized, "Unknown API key "+key)
		return false
	}
	timestamp := params.Get("timestamp")
	if timestamp == "" {
		fakeWriteError(w, http.StatusBadRequest, "Missing required parameter - timestamp")
		return false
	}
	if want, toSign := Sign(params, APISecret); params.Get("signature") != want {
		fakeWriteError(w, http.StatusUnauthorized, fmt.Sprintf("Invalid Signature %s. String to sign - '%s'.", params.Get("signature"), toSign))
		return false
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		fakeWriteError(w, http.StatusBadRequest, "Invalid timestamp "+timestamp)
		return false
	}
	if reported := time.Unix(ts, 0); f.clock().Sub(reported) > fakeSignatureTTL {
		fakeWriteError(w, http.StatusBadRequest, fmt.Sprintf("Stale request - reported time is %s which is more than 1 hour ago",
			reported.UTC().Format("2006-01-02 15:04:05 -0700")))
		return false
	}
	return true
}

// handleDestroy is the Upload API's destroy: signed; public_id required; type (default upload)
// and the path's resource_type must be the asset's. It answers 200 with {"result":"ok"}, or
// {"result":"not found"} when there is no such asset, as Cloudinary does. invalidate is accepted
// (the fake has no CDN).
func (f *Server) handleDestroy(w http.ResponseWriter, r *http.Request) {
	params, ok := f.readParams(w, r)
	if !ok || !f.checkSigned(w, params) {
		return
	}
	resourceType := r.PathValue("resource_type")
	switch resourceType {
	case "image", "video", "raw":
	default:
		fakeWriteError(w, http.StatusBadRequest, "Invalid resource type "+resourceType)
		return
	}
	publicID := params.Get("public_id")
	if publicID == "" {
		fakeWriteError(w, http.StatusBadRequest, "Missing required parameter - public_id")
		return
	}
	deliveryType := params.Get("type")
	if deliveryType == "" {
		deliveryType = "upload"
	}
	f.mu.Lock()
	a, found := f.assets[publicID]
	found = found && a["resource_type"] == resourceType && a["type"] == deliveryType
	if found {
		delete(f.assets, publicID)
	}
	f.mu.Unlock()
	if !found {
		fakeWriteJSON(w, http.StatusOK, map[string]string{"result": "not found"})
		return
	}
	fakeWriteJSON(w, http.StatusOK, map[string]string{"result": "ok"})
}

// handleDeleteByToken is delete_by_token: unsigned, with the token an upload answered (asked for
// with return_delete_token), for 10 minutes after that upload. An unknown or expired token is
// refused with 401 in Cloudinary's error shape (the status and words are the fake's: Cloudinary
// documents neither); a token whose asset is already gone answers {"result":"not found"}.
func (f *Server) handleDeleteByToken(w http.ResponseWriter, r *http.Request) {
	params, ok := f.readParams(w, r)
	if !ok {
		return
	}
	token := params.Get("token")
	if token == "" {
		fakeWriteError(w, http.StatusBadRequest, "Missing required parameter - token")
		return
	}
	f.mu.Lock()
	t, known := f.tokens[token]
	now := f.now()
	_, exists := f.assets[t.publicID]
	valid := known && now.Before(t.expires)
	if valid && exists {
		delete(f.assets, t.publicID)
	}
	f.mu.Unlock()
	switch {
	case !known:
		fakeWriteError(w, http.StatusUnauthorized, "Invalid delete token")
	case !valid:
		fakeWriteError(w, http.StatusUnauthorized, "Expired delete token")
	case !exists:
		fakeWriteJSON(w, http.StatusOK, map[string]string{"result": "not found"})
	default:
		fakeWriteJSON(w, http.StatusOK, map[string]string{"result": "ok"})
	}
}

// fakeParseContext reads Cloudinary's context parameter: key=value pairs separated by '|', where
// '\' makes the next character (a '=', '|' or '\') part of the key or value.
func fakeParseContext(raw string) map[string]string {
	out := map[string]string{}
	var key, val []byte
	cur := &key
	flush := func() {
		if len(key) > 0 {
			out[string(key)] = string(val)
		}
		key, val, cur = nil, nil, &key
	}
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c == '\\' && i+1 < len(raw):
			i++
			*cur = append(*cur, raw[i])
		case c == '|':
			flush()
		case c == '=' && cur == &key:
			cur = &val
		default:
			*cur = append(*cur, c)
		}
	}
	flush()
	return out
}
