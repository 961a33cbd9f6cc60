package main

import (
	"bytes"
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
	cldlogger "github.com/cloudinary/cloudinary-go/v2/logger"
)

// uploadParams are the per-upload choices a client may make.
type uploadParams struct {
	publicID string   // empty: the store picks one
	tags     []string // may be empty
	filename string   // the client's file name, base name only; may be empty
	baseURL  string   // this server as the client reached it, e.g. http://localhost:8080; for stores that serve files themselves
	chunked  bool     // the file may not fit one request (size unknown or too large): send it in chunks
}

// uploader stores one file and answers with the upload result as JSON,
// in Cloudinary's field names. Errors that the client may see wrap an apiError.
type uploader interface {
	upload(ctx context.Context, file io.Reader, p uploadParams) (json.RawMessage, error)
}

// cloudinaryUploader uploads through the Cloudinary Go SDK.
type cloudinaryUploader struct {
	sdk      *cldupload.API
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
	sdk, err := cldupload.NewWithConfiguration(conf)
	if err != nil {
		return nil, fmt.Errorf("cloudinary client: %w", err)
	}
	sdk.Logger.SetLevel(cldlogger.NONE) // its debug lines print whole answers; we log what matters ourselves
	sdk.Client = http.Client{Transport: recordingTransport{base: newUpstreamTransport()}}
	return &cloudinaryUploader{
		sdk: sdk, folder: folder, preset: preset, chunking: chunking,
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
		WriteBufferSize:       copyBufferBytes + 64, // one piece, its chunk header and CRLF: one write per piece
		ReadBufferSize:        64 << 10,
		ForceAttemptHTTP2:     true,
	}
}

// upstreamExchange records what the SDK does not tell: the HTTP status and the raw answer.
type upstreamExchange struct {
	status int
	header http.Header
	body   bytes.Buffer
}

type exchangeKey struct{}

// recordingTransport fills in the upstreamExchange found in the request's context.
type recordingTransport struct {
	base http.RoundTripper
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the real transport.
func (t recordingTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (t recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if ch, ok := req.Context().Value(chunkKey{}).(chunkHeaders); ok {
		// The SDK cannot send these headers for a plain reader; a RoundTripper must not change its request.
		req = req.Clone(req.Context())
		req.Header.Set("X-Unique-Upload-Id", ch.uploadID)
		req.Header.Set("Content-Range", ch.contentRange)
	}
	if req.Body != nil && req.ContentLength <= 0 {
		// The SDK's body is a pipe of unknown length: the transport would copy it in 32 KiB pieces,
		// each its own chunk and its own write to the socket. Large pieces cost far less CPU per byte.
		req = req.Clone(req.Context())
		req.Body = &largeWritesBody{ReadCloser: req.Body}
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if ex, ok := req.Context().Value(exchangeKey{}).(*upstreamExchange); ok {
		ex.status, ex.header = resp.StatusCode, resp.Header
		ex.body.Reset()
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.TeeReader(io.LimitReader(resp.Body, maxUpstreamAnswer), &ex.body), resp.Body}
	}
	return resp, nil
}

func (c *cloudinaryUploader) upload(ctx context.Context, file io.Reader, p uploadParams) (json.RawMessage, error) {
	if p.chunked {
		return c.uploadChunked(ctx, file, p)
	}
	return c.send(ctx, file, p)
}

// send makes one upload request with file as the file part: a whole file, or one chunk
// when ctx carries chunkHeaders.
func (c *cloudinaryUploader) send(ctx context.Context, file io.Reader, p uploadParams) (json.RawMessage, error) {
	ex := &upstreamExchange{}
	ctx = context.WithValue(ctx, exchangeKey{}, ex)
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
	result, err := c.sdk.Upload(ctx, file, params)
	if err != nil {
		return nil, classifyUpstreamFailure(ex, err)
	}
	if result.Error.Message != "" { // the SDK reports Cloudinary's errors here, with err == nil
		return nil, classifyUpstreamError(ex.status, result.Error.Message)
	}
	if ex.status != http.StatusOK {
		return nil, fmt.Errorf("%w: status %d without an error message", errUpstreamFailed, ex.status)
	}
	return json.RawMessage(bytes.TrimSpace(ex.body.Bytes())), nil
}

// classifyUpstreamFailure maps an error from the SDK (no usable answer) to what the client sees.
func classifyUpstreamFailure(ex *upstreamExchange, err error) error {
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err // the handler knows why its context ended
	case errors.As(err, &syntaxErr), errors.As(err, &typeErr):
		if ex.status >= 500 {
			return fmt.Errorf("%w: status %d: %w", errUpstreamFailed, ex.status, err)
		}
		return fmt.Errorf("%w: status %d: %w", errUpstreamNotJSON, ex.status, err)
	}
	return fmt.Errorf("%w: %w", errUpstreamUnreachable, err)
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

// largeWritesBody hands the transport's io.Copy pieces of up to copyBufferBytes.
type largeWritesBody struct {
	io.ReadCloser
}

func (b *largeWritesBody) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, copyBufferBytes)         // per request: the transport may still hold w's last piece
	return copyPieces(w, b.ReadCloser.Read, buf) // a pipe read returns what one write offered: no waiting for more
}
