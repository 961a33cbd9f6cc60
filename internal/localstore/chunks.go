package localstore

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"

	"cloudinary-upload-api/internal/store"
)

// A chunked upload (a resumable one) is appended to tmp/chunks-<hash of its upload id>, a chunk
// at a time, and moved into place by its last chunk. These files are not the stale temps that
// New sweeps: they wait, across restarts, for their next chunk or for AbortChunks.
const chunkPrefix = "chunks-"

// The ways a chunk is refused.
var (
	ErrChunkOffset = store.NewError(store.Conflict, "local store: the chunk does not start where the upload's bytes end")
	ErrChunkRange  = errors.New("local store: a chunk's total is not where it ends")
)

// chunkLockStripes bounds the locks that keep two chunks of one upload from being appended at
// once; uploads whose ids hash alike share one.
const chunkLockStripes = 64

// chunkFile is the temp file of uploadID's chunks: no client input becomes a path.
func chunkFile(uploadID string) (name string, stripe int) {
	sum := sha256.Sum256([]byte(uploadID))
	return path.Join(localTmpDir, chunkPrefix+hex.EncodeToString(sum[:16])), int(sum[0]) % chunkLockStripes
}

// SendChunk appends bytes [offset, offset+len(chunk)) of the chunked upload uploadID (any string
// the caller picks, one per upload). offset must be what the store holds of it (0 for the first
// chunk), else the error is ErrChunkOffset (kind store.Conflict), saying what it holds; a chunk that
// fails to be written leaves what was held before. total is the file's size when this chunk is
// the last (offset+len(chunk) == total), else -1. The last chunk moves the file into place and
// answers as Upload does; the others answer nil. p is the same for every chunk of one upload.
func (s *Store) SendChunk(ctx context.Context, uploadID string, offset int64, chunk []byte, total int64, p store.Params) (json.RawMessage, error) {
	if offset < 0 || total != -1 && total != offset+int64(len(chunk)) {
		return nil, fmt.Errorf("%w: %d bytes at %d of %d", ErrChunkRange, len(chunk), offset, total)
	}
	name, stripe := chunkFile(uploadID)
	s.chunkLocks[stripe].Lock()
	defer s.chunkLocks[stripe].Unlock()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	if err := s.appendChunk(name, offset, chunk); err != nil {
		return nil, err
	}
	if total == -1 {
		return nil, nil
	}
	defer func() {
		if err := s.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.warn(ctx, "local store: remove a finished upload's chunks", err)
		}
	}()
	sum, head, err := s.digest(name)
	if err != nil {
		return nil, err
	}
	return s.place(name, total, sum, head, p)
}

// appendChunk writes chunk at offset of the file name, which must hold offset bytes (none and
// absent when offset is 0). On failure it cuts the file back to offset.
func (s *Store) appendChunk(name string, offset int64, chunk []byte) error {
	flags := os.O_WRONLY
	if offset == 0 {
		flags |= os.O_CREATE
	}
	f, err := s.root.OpenFile(name, flags, 0o640)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: it holds nothing of this upload, the chunk starts at %d", ErrChunkOffset, offset)
	}
	if err != nil {
		return fmt.Errorf("local store: open chunks: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		return errors.Join(fmt.Errorf("local store: chunks: %w", err), f.Close())
	}
	if held := info.Size(); held != offset {
		return errors.Join(fmt.Errorf("%w: it holds %d bytes, the chunk starts at %d", ErrChunkOffset, held, offset), f.Close())
	}
	_, err = f.WriteAt(chunk, offset)
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		err = errors.Join(fmt.Errorf("local store: write chunk: %w", err), f.Truncate(offset))
	}
	if closeErr := f.Close(); err == nil && closeErr != nil {
		err = fmt.Errorf("local store: write chunk: %w", closeErr)
	}
	return err
}

// digest reads the file name back for what placing it needs: its MD5 and its first bytes.
func (s *Store) digest(name string) (sum, head []byte, err error) {
	f, err := s.root.Open(name)
	if err != nil {
		return nil, nil, fmt.Errorf("local store: read chunks: %w", err)
	}
	defer func() { _ = f.Close() }() // read-only: closing cannot lose data
	hash := md5.New()
	prefix := &prefixBuffer{max: headBytes}
	if _, err := io.Copy(io.MultiWriter(hash, prefix), f); err != nil {
		return nil, nil, fmt.Errorf("local store: read chunks: %w", err)
	}
	return hash.Sum(nil), prefix.buf, nil
}

// AbortChunks drops what the store holds of the unfinished chunked upload uploadID (its
// termination, its expiry). An upload it holds nothing of is no error.
func (s *Store) AbortChunks(uploadID string) error {
	name, stripe := chunkFile(uploadID)
	s.chunkLocks[stripe].Lock()
	defer s.chunkLocks[stripe].Unlock()
	if err := s.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("local store: drop chunks: %w", err)
	}
	return nil
}
