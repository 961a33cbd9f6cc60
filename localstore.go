package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
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
	"time"

	"github.com/gabriel-vasile/mimetype"
)

// localStore keeps uploads on disk, for running without Cloudinary. Its layout under UPLOAD_DIR:
//
//	files/<key>.<ext>  the file, named by the store: key is the SHA-256 of the public id (32 hex digits)
//	meta/<key>.json    what the store knows about it; its existence claims the public id
//	tmp/               files being written; renamed (linked) into place only once complete
//
// No client input ever becomes a path: the key is a hash and ext comes from the sniffed type.
// Everything goes through an os.Root, so no name or symlink inside the directory can reach outside it.
type localStore struct {
	root      *os.Root
	dir       string // absolute, for the start-up log
	folder    string // UPLOAD_FOLDER, put in front of public ids as Cloudinary does
	publicURL string // PUBLIC_URL without the trailing slash; empty: the request's base URL
}

// localMeta is the meta/<key>.json record; its JSON fields are Cloudinary's names.
type localMeta struct {
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
}

// localRecord is what meta/<key>.json holds: the result, and what only the store needs.
type localRecord struct {
	Result      localMeta `json:"result"`
	File        string    `json:"file"`         // the name under files/
	ContentType string    `json:"content_type"` // sniffed when stored
}

// localResult is the upload answer: the record plus the URLs, in Cloudinary's field names.
type localResult struct {
	localMeta
	URL       string `json:"url"`
	SecureURL string `json:"secure_url"`
	Existing  bool   `json:"existing,omitempty"`
}

const (
	localFilesDir = "files"
	localMetaDir  = "meta"
	localTmpDir   = "tmp"
	localTmpGlob  = ".upload-"
	filesRoute    = "/files/"
)

// localFileName is the only shape of name that GET /files/ will look up.
var (
	localFileName = regexp.MustCompile(`^([0-9a-f]{32})\.([a-z0-9]{1,12})$`)
	localExt      = regexp.MustCompile(`^[a-z0-9]{1,12}$`)
)

// newLocalStore opens (creating if needed) the directory, and removes files that an
// interrupted process left half-written in tmp/.
func newLocalStore(dir, folder, publicURL string) (*localStore, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("UPLOAD_DIR=%q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return nil, fmt.Errorf("UPLOAD_DIR=%q: %w", dir, err)
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("UPLOAD_DIR=%q: %w", dir, err)
	}
	for _, sub := range []string{localFilesDir, localMetaDir, localTmpDir} {
		if err := root.MkdirAll(sub, 0o750); err != nil {
			return nil, errors.Join(fmt.Errorf("UPLOAD_DIR=%q: %w", dir, err), root.Close())
		}
	}
	s := &localStore{root: root, dir: abs, folder: folder, publicURL: publicURL}
	if err := s.removeStaleTemps(); err != nil {
		return nil, errors.Join(fmt.Errorf("UPLOAD_DIR=%q: %w", dir, err), root.Close())
	}
	return s, nil
}

func (s *localStore) Close() error { return s.root.Close() }

func (s *localStore) removeStaleTemps() error {
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

// upload writes the file through a temp file that becomes visible only once complete.
func (s *localStore) upload(ctx context.Context, file io.Reader, p uploadParams) (json.RawMessage, error) {
	tmpName := path.Join(localTmpDir, localTmpGlob+randomHex(16))
	tmp, err := s.root.OpenFile(tmpName, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, fmt.Errorf("local store: create temp file: %w", err)
	}
	defer func() {
		// The temp name is only ever a second link (or nothing): removing it is always right.
		if err := s.root.Remove(tmpName); err != nil && !errors.Is(err, fs.ErrNotExist) {
			loggerFrom(ctx).WarnContext(ctx, "local store: remove temp file", "err", err)
		}
	}()
	hash := md5.New() // Cloudinary's etag is the MD5 of the file
	head := &prefixBuffer{max: 64 << 10}
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

	publicID := p.publicID
	if publicID == "" {
		publicID = randomID(20)
	}
	if s.folder != "" {
		publicID = s.folder + "/" + publicID
	}
	key := localKey(publicID)
	mt := mimetype.Detect(head.buf)
	ext := strings.TrimPrefix(mt.Extension(), ".")
	if !localExt.MatchString(ext) {
		ext = "bin"
	}
	now := time.Now().UTC()
	rec := localRecord{File: key + "." + ext, ContentType: mt.String()}
	meta := localMeta{
		PublicID:         publicID,
		Version:          now.Unix(),
		Format:           ext,
		ResourceType:     resourceTypeOf(mt),
		Bytes:            n,
		CreatedAt:        now.Format(time.RFC3339),
		Tags:             p.tags,
		Etag:             hex.EncodeToString(hash.Sum(nil)),
		OriginalFilename: strings.TrimSuffix(p.filename, path.Ext(p.filename)),
		Type:             "upload",
	}
	if meta.Tags == nil {
		meta.Tags = []string{}
	}
	if meta.ResourceType == "image" {
		if c, _, err := image.DecodeConfig(bytes.NewReader(head.buf)); err == nil {
			meta.Width, meta.Height = c.Width, c.Height
		}
	}

	rec.Result = meta
	existing, err := s.claim(key, rec)
	if err != nil {
		return nil, err
	}
	if existing != nil { // never overwritten, as with Cloudinary's overwrite=false
		return s.answer(*existing, p.baseURL, true)
	}
	if err := s.root.Link(tmpName, path.Join(localFilesDir, rec.File)); err != nil {
		// Only a leftover from a crash between claim and link can be in the way: keep the claim
		// consistent by giving it up.
		return nil, errors.Join(fmt.Errorf("local store: place file: %w", err), s.root.Remove(path.Join(localMetaDir, key+".json")))
	}
	return s.answer(rec, p.baseURL, false)
}

// claim records meta under key unless the public id is taken, in which case it returns the existing record.
// The record is written to a temp file and linked into place: link never replaces, so two uploads
// racing for one public id cannot both win.
func (s *localStore) claim(key string, rec localRecord) (*localRecord, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("local store: encode record: %w", err)
	}
	tmpName := path.Join(localTmpDir, localTmpGlob+randomHex(16)+".json")
	defer func() { _ = s.root.Remove(tmpName) }() // gone once linked or failed; nothing to report
	if err := s.root.WriteFile(tmpName, b, 0o640); err != nil {
		return nil, fmt.Errorf("local store: write record: %w", err)
	}
	err = s.root.Link(tmpName, path.Join(localMetaDir, key+".json"))
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

func (s *localStore) readMeta(key string) (localRecord, error) {
	var m localRecord
	b, err := s.root.ReadFile(path.Join(localMetaDir, key+".json"))
	if err != nil {
		return m, fmt.Errorf("local store: read record: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("local store: record %s: %w", key, err)
	}
	return m, nil
}

// answer renders a record as the upload result, with URLs on this server.
func (s *localStore) answer(rec localRecord, baseURL string, existing bool) (json.RawMessage, error) {
	if s.publicURL != "" {
		baseURL = s.publicURL
	}
	u := baseURL + filesRoute + rec.File
	b, err := json.Marshal(localResult{localMeta: rec.Result, URL: u, SecureURL: u, Existing: existing})
	if err != nil {
		return nil, fmt.Errorf("local store: encode result: %w", err)
	}
	return b, nil
}

// open returns a stored file and its record, for GET /files/{name}. Anything that the store
// did not write, including a symlink planted in files/, is fs.ErrNotExist.
func (s *localStore) open(name string) (*os.File, localRecord, error) {
	m := localFileName.FindStringSubmatch(name)
	if m == nil {
		return nil, localRecord{}, fs.ErrNotExist
	}
	meta, err := s.readMeta(m[1])
	if err != nil || meta.File != name {
		return nil, localRecord{}, fs.ErrNotExist
	}
	p := path.Join(localFilesDir, name)
	linfo, err := s.root.Lstat(p)
	if err != nil || !linfo.Mode().IsRegular() {
		return nil, localRecord{}, fs.ErrNotExist
	}
	f, err := s.root.Open(p)
	if err != nil {
		return nil, localRecord{}, fs.ErrNotExist
	}
	info, err := f.Stat()
	if err != nil || !os.SameFile(linfo, info) { // replaced between Lstat and Open
		_ = f.Close() // read-only: closing cannot lose data
		return nil, localRecord{}, fs.ErrNotExist
	}
	return f, meta, nil
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
