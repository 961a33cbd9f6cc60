package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"time"

	"cloudinary-upload-api/internal/cloudinary"
	"cloudinary-upload-api/internal/localstore"
	"cloudinary-upload-api/internal/store"
)

// uploader stores one file and answers with the upload result as JSON, in Cloudinary's field
// names: internal/cloudinary's Client or internal/localstore's Store. Its errors are the store's
// own values, or wrap an apiError; errors.go says what the client sees.
type uploader interface {
	Upload(ctx context.Context, file io.Reader, p store.Params) (json.RawMessage, error)
}

const (
	minChunkBytes         = cloudinary.MinChunkBytes
	maxSingleRequestBytes = cloudinary.MaxRequestBytes
	chunkRetries          = cloudinary.ChunkRetries
	copyBufferBytes       = 256 << 10 // piece size where a file is copied: fewer, larger writes
	requestBufferBytes    = 1 << 20   // read buffer under each upload's form: the file goes upstream from it in pieces of up to this
)

// storage is where the uploads go, with what the routes need of it, passed in explicitly.
type storage struct {
	up    uploader
	del   deleter       // DELETE /upload's; nil: no such route
	name  string        // the metrics' store label: cloudinary or local (other: tests' uploaders)
	files store.Serving // the store whose files GET /files/{name} serves; nil: no such route
	// signer is the Cloudinary Client's own, which POST /sign signs with: the uploads' algorithm,
	// version and URL. nil when uploads go elsewhere: there is nothing to sign for.
	signer *cloudinary.Signer
}

func cloudinaryStorage(c *cloudinary.Client) storage {
	st := newStorage(c, c, "cloudinary")
	st.signer = c.Signer()
	return st
}

func localStorage(s *localstore.Store) storage {
	return newStorage(s, s, "local")
}

// newStorage is the storage of a store, with the routes of the optional interfaces it has.
func newStorage(up uploader, del deleter, name string) storage {
	st := storage{up: up, del: del, name: name}
	st.files, _ = up.(store.Serving)
	return st
}

// openStore builds the store that STORAGE chose and says which in one start-up line.
// The returned func releases it at shutdown.
func openStore(cfg config, logger *slog.Logger) (storage, func() error, error) {
	if cfg.Storage == "cloudinary" {
		c, err := cloudinary.New(cfg.Cloudinary, cfg.cloudinaryOptions())
		if err != nil {
			return storage{}, nil, fmt.Errorf("CLOUDINARY_URL: %w", err)
		}
		logger.Info("storing uploads in Cloudinary", "store", "cloudinary", "cloud_name", cfg.Cloudinary.CloudName, "folder", cfg.UploadFolder)
		return cloudinaryStorage(c), func() error { return nil }, nil
	}
	s, err := newLocalStore(cfg)
	if err != nil {
		return storage{}, nil, err
	}
	why := "STORAGE=local"
	if cfg.Cloudinary == nil {
		why = "no Cloudinary credentials are set"
	}
	logger.Info("storing uploads on local disk, served at /files/ ("+why+")", "store", "local", "dir", s.Dir())
	return localStorage(s), s.Close, nil
}

// newLocalStore opens UPLOAD_DIR as the local store, which logs what it cannot clean up.
func newLocalStore(cfg config) (*localstore.Store, error) {
	// No folder of the store's own: each upload names its folder (store.Params.Folder).
	s, err := localstore.New(cfg.UploadDir, "", cfg.PublicURL, func(ctx context.Context, msg string, err error) {
		loggerFrom(ctx).WarnContext(ctx, msg, "err", err)
	})
	if err != nil {
		return nil, fmt.Errorf("UPLOAD_DIR=%w", err)
	}
	return s, nil
}

// cloudinaryOptions say where uploads go in the cloud and how files that may not fit one request are sent.
func (cfg config) cloudinaryOptions() cloudinary.Options {
	base := cfg.RetryBackoff
	return cloudinary.Options{
		Folder:       "", // each upload names its folder (store.Params.Folder): UPLOAD_FOLDER or the user's
		Preset:       cfg.UploadPreset,
		ChunkSize:    cfg.ChunkSize,
		KeepBuffers:  0, // none kept between uploads: a kept buffer would hold memory outside UPLOAD_MEMORY
		StallTimeout: cfg.UploadTimeout,
		Backoff:      func(retry int) time.Duration { return base << retry },
		Retrying: func(ctx context.Context, contentRange string, retry int, err error) {
			loggerFrom(ctx).WarnContext(ctx, "retrying chunk", "range", contentRange, "retry", retry, "err", err)
		},
	}
}
