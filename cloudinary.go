package main

import (
	"context"
	"encoding/json"
	"io"
	"time"

	"cloudinary-upload-api/internal/cloudinary"
	"cloudinary-upload-api/internal/store"
)

// uploadParams are the per-upload choices a client may make.
type uploadParams struct {
	publicID string            // empty: the store picks one
	tags     []string          // may be empty
	extra    map[string]string // the other parameters of SIGNABLE_PARAMS the client set (context, …), checked by clientParam
	filename string            // the client's file name, base name only; may be empty
	baseURL  string            // this server as the client reached it, e.g. http://localhost:8080; for stores that serve files themselves
	chunked  bool              // the file may not fit one request (size unknown or too large): send it in chunks
}

func (p uploadParams) store() store.Params {
	return store.Params{PublicID: p.publicID, Tags: p.tags, Extra: p.extra, Filename: p.filename, BaseURL: p.baseURL, Chunked: p.chunked}
}

// uploader stores one file and answers with the upload result as JSON, in Cloudinary's field
// names. Its errors are the store's own values, or wrap an apiError; errors.go says what the client sees.
type uploader interface {
	upload(ctx context.Context, file io.Reader, p uploadParams) (json.RawMessage, error)
}

const (
	minChunkBytes         = cloudinary.MinChunkBytes
	maxSingleRequestBytes = cloudinary.MaxRequestBytes
	chunkRetries          = cloudinary.ChunkRetries
	copyBufferBytes       = 256 << 10 // piece size where a file is copied: fewer, larger writes
	requestBufferBytes    = 1 << 20   // read buffer under each upload's form: the file goes upstream from it in pieces of up to this
)

// cloudinaryUploader uploads to Cloudinary through internal/cloudinary's Client.
type cloudinaryUploader struct {
	client *cloudinary.Client
}

func newCloudinaryUploader(creds *cloudinary.Credentials, opts cloudinary.Options) (*cloudinaryUploader, error) {
	c, err := cloudinary.New(creds, opts)
	if err != nil {
		return nil, err
	}
	return &cloudinaryUploader{client: c}, nil
}

func (c *cloudinaryUploader) upload(ctx context.Context, file io.Reader, p uploadParams) (json.RawMessage, error) {
	return c.client.Upload(ctx, file, p.store())
}

// cloudinaryOptions say where uploads go in the cloud and how files that may not fit one request are sent.
func (cfg config) cloudinaryOptions() cloudinary.Options {
	base := cfg.retryBackoff
	return cloudinary.Options{
		Folder:       cfg.uploadFolder,
		Preset:       cfg.uploadPreset,
		ChunkSize:    cfg.chunkSize,
		KeepBuffers:  0, // none kept between uploads: a kept buffer would hold memory outside UPLOAD_MEMORY
		StallTimeout: cfg.uploadTimeout,
		Backoff:      func(retry int) time.Duration { return base << retry },
		Retrying: func(ctx context.Context, contentRange string, retry int, err error) {
			loggerFrom(ctx).WarnContext(ctx, "retrying chunk", "range", contentRange, "retry", retry, "err", err)
		},
	}
}
