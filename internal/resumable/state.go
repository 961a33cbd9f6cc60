// Package resumable keeps what a resumable (tus) upload needs between requests, with no HTTP in
// it: the state of each upload (its length, the offset the client was told, the store's chunked
// upload it feeds, its owner and expiry, and how the client's bytes map onto the stored ones), in
// this process's memory or in Redis for several instances; a lock per upload, so that one request
// at a time writes to it; the Feed that carries one request's bytes after another into a single
// stream; and the Cutter that cuts that stream into the store's chunks.
//
// The HTTP layer (the root's resumable.go) speaks the tus protocol and decides what a client sees
// of this package's errors.
package resumable

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

	"cloudinary-upload-api/internal/store"
)

// Errors of the state stores.
var (
	ErrNotFound = errors.New("resumable: no such upload") // never created, expired, ended or terminated
	ErrLocked   = errors.New("resumable: another request is writing to this upload")
)

// Unknown is the Length of an upload created with Upload-Defer-Length, and the Delta of an upload
// whose stored bytes cannot (yet) be mapped onto the client's.
const Unknown = -1

// Upload is the state of one resumable upload.
type Upload struct {
	ID      string       `json:"id"`
	Owner   string       `json:"owner"`  // who created it: only they may use it
	Length  int64        `json:"length"` // the file's size in bytes as the client declared it; Unknown until it does
	Params  store.Params `json:"params"` // what the store is told for every chunk (Memory is not kept)
	StoreID string       `json:"store_id"`
	// Stored is how many bytes of the stored file (after the image guard) the store has taken,
	// in whole chunks; Delta maps them onto the client's: once the guard has decided that the
	// rest of the file passes unchanged, client offset = Stored + Delta. Unknown before then, or
	// when it never does (a file rewritten as it streams): such an upload resumes only where its
	// stream lives, and restarts at 0 elsewhere.
	Stored  int64           `json:"stored"`
	Delta   int64           `json:"delta"`
	Removed string          `json:"removed,omitempty"` // what the guard removed: gps, all or none; once decided
	Result  json.RawMessage `json:"result,omitempty"`  // the store's answer once the upload is complete
	Expires time.Time       `json:"expires"`
	// Gen counts the streams that have fed the upload: an instance that takes an upload over
	// from another bumps it, and the stream of an older Gen is stale.
	Gen int64 `json:"gen"`
}

// Resumable is the client offset that any instance can resume from, without the stream that
// began the upload: Stored + Delta once Delta is known, else 0.
func (u *Upload) Resumable() int64 {
	if u.Delta == Unknown {
		return 0
	}
	return u.Stored + u.Delta
}

// Complete says whether the store has answered the last chunk.
func (u *Upload) Complete() bool { return len(u.Result) > 0 }

// NewID returns a fresh upload id: 32 hex digits, unguessable.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// State keeps the uploads. Get returns a copy: changes are kept by Save.
type State interface {
	Create(ctx context.Context, u Upload) error
	Get(ctx context.Context, id string) (Upload, error)
	Save(ctx context.Context, u Upload) error
	Delete(ctx context.Context, id string) error
	// Lock takes the upload's lock, or returns ErrLocked at once. unlock gives it back; the lock
	// lapses by itself if its holder dies (Redis) and is kept while the holder lives.
	Lock(ctx context.Context, id string) (unlock func(), err error)
	// Expired removes the uploads whose expiry is before now and returns them (at least their
	// StoreID, every one they had), so that what a store holds of them can be dropped.
	Expired(ctx context.Context, now time.Time) ([]Upload, error)
}

// Memory is a State in this process's memory.
type Memory struct {
	mu      sync.Mutex
	uploads map[string]Upload
	locked  map[string]bool
}

// NewMemory returns an empty Memory.
func NewMemory() *Memory {
	return &Memory{uploads: map[string]Upload{}, locked: map[string]bool{}}
}

func (m *Memory) Create(_ context.Context, u Upload) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	u.Params.Memory = nil
	m.uploads[u.ID] = u
	return nil
}

func (m *Memory) Get(_ context.Context, id string) (Upload, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.uploads[id]
	if !ok {
		return Upload{}, ErrNotFound
	}
	u.Result = slices.Clone(u.Result)
	return u, nil
}

func (m *Memory) Save(_ context.Context, u Upload) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.uploads[u.ID]; !ok {
		return ErrNotFound
	}
	u.Params.Memory = nil
	m.uploads[u.ID] = u
	return nil
}

func (m *Memory) Delete(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.uploads, id)
	return nil
}

func (m *Memory) Lock(_ context.Context, id string) (func(), error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.locked[id] {
		return nil, ErrLocked
	}
	m.locked[id] = true
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			delete(m.locked, id)
		})
	}, nil
}

func (m *Memory) Expired(_ context.Context, now time.Time) ([]Upload, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Upload
	for id, u := range m.uploads {
		if u.Expires.Before(now) && !m.locked[id] {
			out = append(out, u)
			delete(m.uploads, id)
		}
	}
	return out, nil
}
