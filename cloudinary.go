package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/cloudinary/cloudinary-go/v2/api"
	cldupload "github.com/cloudinary/cloudinary-go/v2/api/uploader"
	cldconfig "github.com/cloudinary/cloudinary-go/v2/config"
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

// uploader stores one file and answers with the upload result as JSON,
// in Cloudinary's field names. Errors that the client may see wrap an apiError.
type uploader interface {
	upload(ctx context.Context, file io.Reader, p uploadParams) (json.RawMessage, error)
}

// cloudinaryUploader uploads to Cloudinary: the SDK reads the configuration and signs, and
// the requests are built and sent here (upstream.go says why).
type cloudinaryUploader struct {
	endpoint uploadEndpoint
	client   *http.Client
	folder   string
	preset   string
	chunking chunkOptions
	buffers  *bufferPool // chunk buffers, at most one per upload in flight
}

// maxUpstreamAnswer bounds how much of Cloudinary's answer we keep.
const maxUpstreamAnswer = 4 << 20

func newCloudinaryUploader(creds *credentials, folder, preset string, chunking chunkOptions) (*cloudinaryUploader, error) {
	// NewFromQueryParams does not read the process environment, unlike config.New.
	conf, err := cldconfig.NewFromQueryParams(creds.cloudName, creds.apiKey, string(creds.apiSecret), creds.params)
	if err != nil { // not wrapped: the SDK's parse errors may quote the parameters
		return nil, errors.New("CLOUDINARY_URL: a query parameter has a value the SDK cannot read")
	}
	return &cloudinaryUploader{
		endpoint: newUploadEndpoint(conf, creds),
		client:   &http.Client{Transport: newUpstreamTransport()},
		folder:   folder, preset: preset, chunking: chunking,
		buffers: newBufferPool(chunking.maxBuffers, int(chunking.size)+1), // +1: the byte that tells whether more follows
	}, nil
}

// newUpstreamTransport is tuned for streaming large bodies to one host.
func newUpstreamTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConns:          32,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		// Holds the request's headers, or a batch of small writes (smallWriteBytes) with its chunk
		// framing. The file's pieces, far larger, go to the socket from the request's read buffer,
		// less the start of each, which fills this buffer first: a larger one would copy more.
		WriteBufferSize:   2 * smallWriteBytes,
		ReadBufferSize:    64 << 10,
		ForceAttemptHTTP2: true,
	}
}

func (c *cloudinaryUploader) upload(ctx context.Context, file io.Reader, p uploadParams) (json.RawMessage, error) {
	if p.chunked {
		return c.uploadChunked(ctx, file, p)
	}
	return c.send(ctx, file, p, nil)
}

// send makes one upload request with file as the file part: a whole file, or one chunk
// when chunk is not nil.
func (c *cloudinaryUploader) send(ctx context.Context, file io.Reader, p uploadParams, chunk *chunkHeaders) (json.RawMessage, error) {
	params := cldupload.UploadParams{
		PublicID:         p.publicID,
		Tags:             p.tags,
		Folder:           c.folder,
		UploadPreset:     c.preset,
		FilenameOverride: p.filename,
	}
	if p.publicID != "" {
		params.Overwrite = api.Bool(false) // a client must not replace someone else's file
	}
	fields, err := c.endpoint.signedFields(params, p.extra, time.Now()) // signed afresh for every chunk: never stale
	if err != nil {
		return nil, err
	}
	if c.endpoint.uploadTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.endpoint.uploadTimeout)
		defer cancel()
	}
	req, err := c.endpoint.newRequest(ctx, fields, file)
	if err != nil {
		return nil, err
	}
	if chunk != nil {
		req.Header.Set("X-Unique-Upload-Id", chunk.uploadID)
		req.Header.Set("Content-Range", chunk.contentRange)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, classifyUpstreamFailure(err)
	}
	defer resp.Body.Close()
	return readAnswer(resp)
}

// classifyUpstreamError maps Cloudinary's error answer to what the client sees.
func classifyUpstreamError(status int, message string) error {
	cause := fmt.Errorf("cloudinary answered %d: %s", status, message)
	switch {
	case status == http.StatusUnauthorized, status == http.StatusForbidden, status == http.StatusNotFound:
		// Bad key, signature or cloud name: the operator's problem, not the client's.
		return fmt.Errorf("%w: %w", errUpstreamCredentials, cause)
	case status == 420, status == http.StatusTooManyRequests:
		return fmt.Errorf("%w: %w", errUpstreamRateLimited, cause)
	case status >= 400 && status < 500:
		return fmt.Errorf("%w: %w", errUpstreamRejected(message), cause)
	}
	return fmt.Errorf("%w: %w", errUpstreamFailed, cause)
}
