// Package localstore keeps uploads on local disk, for running the server without a Cloudinary
// account. It answers an upload as Cloudinary would (its field names, its etag, overwrite=false
// for public ids), and opens the stored files for the server to serve.
//
// Its layout under the directory:
//
//	files/<key>.<ext>  the file, named by the store: key is the SHA-256 of the public id (32 hex digits)
//	meta/<key>.json    what the store knows about it; its existence claims the public id
//	tmp/               files being written; renamed (linked) into place only once complete
//	tmp/chunks-<hash>  a chunked upload's chunks so far (SendChunk), kept across restarts
//
// No client input ever becomes a path: the key is a hash and ext comes from the sniffed type.
// Everything goes through an os.Root, so no name or symlink inside the directory can reach outside it.
//
// Deleting is Cloudinary's two ways: Destroy by public id (the caller has decided who may), and
// DeleteByToken with the delete_token an upload answered when asked (store.Params.DeleteToken),
// for store.DeleteTokenTTL after the upload. A token is the file's key and 16 random bytes, in
// hex; the record keeps only its SHA-256 and its expiry, so nothing on disk deletes a file, and a
// token outlives a restart as Cloudinary's does.
package localstore

import (
	"bytes"
	"cmp"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/gif" // registers GIF for image.DecodeConfig (width and height)
	_ "image/jpeg"
	_ "image/png"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/gabriel-vasile/mimetype"

	"cloudinary-upload-api/internal/store"
)

// Store keeps uploads in one directory.
type Store struct {
	root      *os.Root
	dir       string // absolute, for the start-up log
	folder    string // put in front of public ids as Cloudinary does
	publicURL string // without the trailing slash; empty: the request's base URL
	warn      func(ctx context.Context, msg string, err error)
	now       func() time.Time // dates uploads and delete tokens
	// chunkLocks keep two chunks of one chunked upload from being appended at once.
	chunkLocks [chunkLockStripes]sync.Mutex
}

// The ways a deletion is refused.
var (
	ErrNotFound     = store.NewError(store.NotFound, "local store: no such file")
	ErrTokenRefused = store.NewError(store.TokenRefused, "local store: the delete token is wrong or has expired")
)

// Meta is what an upload answers, less the URLs; its JSON fields are Cloudinary's names.
type Meta struct {
	PublicID         string   `json:"public_id"`
	Version          int64    `json:"version"`
	Format           string   `json:"format"`
	ResourceType     string   `json:"resource_type"`
	Bytes            int64    `json:"bytes"`
	Width            int      `json:"width,omitempty"`
	Height           int      `json:"height,omitempty"`
	CreatedAt        string   `json:"created_at"`
	Tags             []string `json:"tags"`
	Etag             string   `json:"etag"`
	OriginalFilename string   `json:"original_filename"`
	Type             string   `json:"type"`
	// Context is the file's context as Cloudinary answers it: {"custom": {"uploaded_by": …}}.
	Context map[string]map[string]string `json:"context,omitempty"`
}

// Record is what meta/<key>.json holds: the result, and what only the store needs.
type Record struct {
	Result      Meta   `json:"result"`
	File        string `json:"file"`         // the name under files/
	ContentType string `json:"content_type"` // sniffed when stored
	// The delete token's SHA-256 (hex) and when it stops deleting; empty when none was asked for.
	DeleteTokenSHA256  string    `json:"delete_token_sha256,omitempty"`
	DeleteTokenExpires time.Time `json:"delete_token_expires,omitzero"`
}

// localResult is the upload answer: the record plus the URLs, in Cloudinary's field names.
type localResult struct {
	Meta
	URL         string `json:"url"`
	SecureURL   string `json:"secure_url"`
	Existing    bool   `json:"existing,omitempty"`
	DeleteToken string `json:"delete_token,omitempty"`
}

const (
	localFilesDir = "files"
	metaDir       = "meta"
	localTmpDir   = "tmp"
	localTmpGlob  = ".upload-"
	FilesRoute    = "/files/" // the path under which the answers' URLs say the files are served
)

// localFileName is the only shape of name that GET /files/ will look up.
var (
	localFileName = regexp.MustCompile(`^([0-9a-f]{32})\.([a-z0-9]{1,12})$`)
	localExt      = regexp.MustCompile(`^[a-z0-9]{1,12}$`)
)

// New opens (creating if needed) the directory, and removes files that an interrupted process
// left half-written in tmp/. folder goes in front of every public id whose upload names no
// folder of its own (store.Params.Folder), as Cloudinary's folder does; publicURL, when not empty, is the base of the URLs in the answers instead of the
// request's. warn hears of what went wrong without failing an upload (nil: nothing is told).
func New(dir, folder, publicURL string, warn func(ctx context.Context, msg string, err error)) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return nil, fmt.Errorf("%q: %w", dir, err)
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", dir, err)
	}
	for _, sub := range []string{localFilesDir, metaDir, localTmpDir} {
		if err := root.MkdirAll(sub, 0o750); err != nil {
			return nil, errors.Join(fmt.Errorf("%q: %w", dir, err), root.Close())
		}
	}
	if warn == nil {
		warn = func(context.Context, string, error) {}
	}
	s := &Store{root: root, dir: abs, folder: folder, publicURL: publicURL, warn: warn, now: time.Now}
	if err := s.removeStaleTemps(); err != nil {
		return nil, errors.Join(fmt.Errorf("%q: %w", dir, err), root.Close())
	}
	return s, nil
}

// SetClock replaces the store's clock (time.Now), which dates uploads and delete tokens: for
// tests, before the store is used.
func (s *Store) SetClock(now func() time.Time) { s.now = now }

// Close releases the directory; every later use fails.
func (s *Store) Close() error { return s.root.Close() }

// Dir is the store's directory, as an absolute path.
func (s *Store) Dir() string { return s.dir }

func (s *Store) removeStaleTemps() error {
	entries, err := fs.ReadDir(s.root.FS(), localTmpDir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), localTmpGlob) {
			errs = append(errs, s.root.Remove(path.Join(localTmpDir, e.Name())))
		}
	}
	return errors.Join(errs...)
}

// ctxReader stops reading once ctx is done (upload timeout, client gone).
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := context.Cause(c.ctx); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// prefixBuffer keeps the first bytes written to it, for sniffing and image dimensions.
type prefixBuffer struct {
	buf []byte
	max int
}

func (p *prefixBuffer) Write(b []byte) (int, error) {
	if room := p.max - len(p.buf); room > 0 {
		p.buf = append(p.buf, b[:min(room, len(b))]...)
	}
	return len(b), nil
}

// Upload stores file, reading it to its end or until ctx ends, and answers with the upload
// result in Cloudinary's field names. The file becomes visible only once complete. A public id
// that is taken is never overwritten: the answer is the existing file's, with "existing": true.
func (s *Store) Upload(ctx context.Context, file io.Reader, p store.Params) (json.RawMessage, error) {
	tmpName := path.Join(localTmpDir, localTmpGlob+randomHex(16))
	tmp, err := s.root.OpenFile(tmpName, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, fmt.Errorf("local store: create temp file: %w", err)
	}
	defer func() {
		// The temp name is only ever a second link (or nothing): removing it is always right.
		if err := s.root.Remove(tmpName); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.warn(ctx, "local store: remove temp file", err)
		}
	}()
	hash := md5.New() // Cloudinary's etag is the MD5 of the file
	head := &prefixBuffer{max: headBytes}
	n, err := io.Copy(io.MultiWriter(tmp, hash, head), ctxReader{ctx, file})
	if err == nil {
		err = tmp.Sync()
	}
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return nil, fmt.Errorf("local store: write: %w", err)
	}
	return s.place(tmpName, n, hash.Sum(nil), head.buf, p)
}

// headBytes is how much of a file's start is kept to sniff its type and read its dimensions.
const headBytes = 64 << 10

// place records the complete file at tmpName (n bytes, of MD5 sum, starting with head) under
// its public id and links it into files/; the caller removes tmpName. It answers as Upload does.
func (s *Store) place(tmpName string, n int64, sum, head []byte, p store.Params) (json.RawMessage, error) {
	publicID := p.PublicID
	if publicID == "" {
		publicID = randomID(20)
	}
	if folder := cmp.Or(p.Folder, s.folder); folder != "" {
		publicID = folder + "/" + publicID
	}
	key := localKey(publicID)
	mt := mimetype.Detect(head)
	ext := strings.TrimPrefix(mt.Extension(), ".")
	if !localExt.MatchString(ext) {
		ext = "bin"
	}
	now := s.now().UTC()
	rec := Record{File: key + "." + ext, ContentType: mt.String()}
	var token string
	if p.DeleteToken {
		token = key + randomHex(16)
		rec.DeleteTokenSHA256 = tokenDigest(token)
		rec.DeleteTokenExpires = now.Add(store.DeleteTokenTTL)
	}
	meta := Meta{
		PublicID:         publicID,
		Version:          now.Unix(),
		Format:           ext,
		ResourceType:     resourceTypeOf(mt),
		Bytes:            n,
		CreatedAt:        now.Format(time.RFC3339),
		Tags:             p.Tags,
		Etag:             hex.EncodeToString(sum),
		OriginalFilename: strings.TrimSuffix(p.Filename, path.Ext(p.Filename)),
		Type:             "upload",
	}
	if p.UploadedBy != "" {
		meta.Context = map[string]map[string]string{"custom": {store.UploadedByKey: p.UploadedBy}}
	}
	if meta.Tags == nil {
		meta.Tags = []string{}
	}
	if meta.ResourceType == "image" {
		if c, _, err := image.DecodeConfig(bytes.NewReader(head)); err == nil {
			meta.Width, meta.Height = c.Width, c.Height
		}
	}

	rec.Result = meta
	existing, err := s.claim(key, rec)
	if err != nil {
		return nil, err
	}
	if existing != nil { // never overwritten, as with Cloudinary's overwrite=false; no token for it
		return s.answer(*existing, p.BaseURL, true, "")
	}
	if err := s.root.Link(tmpName, path.Join(localFilesDir, rec.File)); err != nil {
		// Only a leftover from a crash between claim and link can be in the way: keep the claim
		// consistent by giving it up.
		return nil, errors.Join(fmt.Errorf("local store: place file: %w", err), s.root.Remove(path.Join(metaDir, key+".json")))
	}
	return s.answer(rec, p.BaseURL, false, token)
}

// claim records meta under key unless the public id is taken, in which case it returns the existing record.
// The record is written to a temp file and linked into place: link never replaces, so two uploads
// racing for one public id cannot both win.
func (s *Store) claim(key string, rec Record) (*Record, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("local store: encode record: %w", err)
	}
	tmpName := path.Join(localTmpDir, localTmpGlob+randomHex(16)+".json")
	defer func() { _ = s.root.Remove(tmpName) }() // gone once linked or failed; nothing to report
	if err := s.root.WriteFile(tmpName, b, 0o640); err != nil {
		return nil, fmt.Errorf("local store: write record: %w", err)
	}
	err = s.root.Link(tmpName, path.Join(metaDir, key+".json"))
	if errors.Is(err, fs.ErrExist) {
		old, err := s.readMeta(key)
		if err != nil {
			return nil, err
		}
		return &old, nil
	}
	if err != nil {
		return nil, fmt.Errorf("local store: record: %w", err)
	}
	return nil, nil
}

func (s *Store) readMeta(key string) (Record, error) {
	var m Record
	b, err := s.root.ReadFile(path.Join(metaDir, key+".json"))
	if err != nil {
		return m, fmt.Errorf("local store: read record: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("local store: record %s: %w", key, err)
	}
	return m, nil
}

// answer renders a record as the upload result, with URLs on this server.
func (s *Store) answer(rec Record, baseURL string, existing bool, deleteToken string) (json.RawMessage, error) {
	if s.publicURL != "" {
		baseURL = s.publicURL
	}
	u := baseURL + FilesRoute + rec.File
	b, err := json.Marshal(localResult{Meta: rec.Result, URL: u, SecureURL: u, Existing: existing, DeleteToken: deleteToken})
	if err != nil {
		return nil, fmt.Errorf("local store: encode result: %w", err)
	}
	return b, nil
}

// Open returns a stored file and its record by the name in its URL. Anything that the store
// did not write, including a symlink planted in files/, is fs.ErrNotExist.
func (s *Store) Open(name string) (*os.File, Record, error) {
	m := localFileName.FindStringSubmatch(name)
	if m == nil {
		return nil, Record{}, fs.ErrNotExist
	}
	meta, err := s.readMeta(m[1])
	if err != nil || meta.File != name {
		return nil, Record{}, fs.ErrNotExist
	}
	p := path.Join(localFilesDir, name)
	linfo, err := s.root.Lstat(p)
	if err != nil || !linfo.Mode().IsRegular() {
		return nil, Record{}, fs.ErrNotExist
	}
	f, err := s.root.Open(p)
	if err != nil {
		return nil, Record{}, fs.ErrNotExist
	}
	info, err := f.Stat()
	if err != nil || !os.SameFile(linfo, info) { // replaced between Lstat and Open
		_ = f.Close() // read-only: closing cannot lose data
		return nil, Record{}, fs.ErrNotExist
	}
	return f, meta, nil
}

// OpenStored opens a stored file by the name in its URL for serving (store.Serving); anything
// Open refuses is fs.ErrNotExist.
func (s *Store) OpenStored(name string) (*store.Stored, error) {
	f, rec, err := s.Open(name)
	if err != nil {
		return nil, err
	}
	st := &store.Stored{ReadSeekCloser: f, ContentType: rec.ContentType, Etag: rec.Result.Etag}
	if fn := rec.Result.OriginalFilename; fn != "" {
		st.Filename = fn + "." + rec.Result.Format
	}
	st.Created, _ = time.Parse(time.RFC3339, rec.Result.CreatedAt) // zero on a bad record: no Last-Modified
	return st, nil
}

// Destroy deletes the file of publicID, as Cloudinary's destroy does: the caller has decided
// that the client may. resourceType, when not empty, must be the file's (image, video or raw),
// else there is no such file, as with Cloudinary. No such file is ErrNotFound.
func (s *Store) Destroy(ctx context.Context, publicID, resourceType string) error {
	key := localKey(publicID)
	rec, err := s.readMeta(key)
	if errors.Is(err, fs.ErrNotExist) || err == nil && (rec.Result.PublicID != publicID || resourceType != "" && rec.Result.ResourceType != resourceType) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	return s.remove(ctx, key, rec)
}

// tokenShape is the only shape of token the store issues: the key, then 16 random bytes, in hex.
var tokenShape = regexp.MustCompile(`^[0-9a-f]{64}$`)

// DeleteByToken deletes the file whose upload answered token as its delete_token, until
// store.DeleteTokenTTL after that upload. A token that is not the file's, or too late, is
// ErrTokenRefused; a token whose file is gone, ErrNotFound.
func (s *Store) DeleteByToken(ctx context.Context, token string) error {
	if !tokenShape.MatchString(token) {
		return ErrTokenRefused
	}
	key := token[:32]
	rec, err := s.readMeta(key)
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	match := subtle.ConstantTimeCompare([]byte(tokenDigest(token)), []byte(rec.DeleteTokenSHA256)) == 1
	if !match || !s.now().Before(rec.DeleteTokenExpires) {
		return ErrTokenRefused
	}
	return s.remove(ctx, key, rec)
}

// remove deletes a file and its record. The record goes first: it is what claims the public id and
// what GET /files/ looks up, so from then on the file is not served, and of two deletions at
// once only one removes it (the other finds no record: ErrNotFound).
func (s *Store) remove(ctx context.Context, key string, rec Record) error {
	if err := s.root.Remove(path.Join(metaDir, key+".json")); errors.Is(err, fs.ErrNotExist) {
		return ErrNotFound
	} else if err != nil {
		return fmt.Errorf("local store: remove record: %w", err)
	}
	if err := s.root.Remove(path.Join(localFilesDir, rec.File)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		// The record is gone, so the file is no longer served nor claimed; say what is left behind.
		s.warn(ctx, "local store: remove file of a deleted record", err)
	}
	return nil
}

// tokenDigest is what the record keeps of a delete token.
func tokenDigest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// localKey maps a public id to the name the store uses for it.
func localKey(publicID string) string {
	sum := sha256.Sum256([]byte(publicID))
	return hex.EncodeToString(sum[:16])
}

// resourceTypeOf is Cloudinary's resource_type for a sniffed type.
func resourceTypeOf(m *mimetype.MIME) string {
	switch base, _, _ := strings.Cut(m.String(), "/"); base {
	case "image":
		return "image"
	case "video", "audio":
		return "video"
	}
	return "raw"
}

// randomID is n characters of [a-z0-9], like Cloudinary's generated public ids.
func randomID(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}
