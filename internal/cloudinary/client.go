package cloudinary

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/cloudinary/cloudinary-go/v2/api"
	cldupload "github.com/cloudinary/cloudinary-go/v2/api/uploader"
	cldconfig "github.com/cloudinary/cloudinary-go/v2/config"

	"cloudinary-upload-api/internal/store"
)

// The SDK's Upload streams a reader through io.Pipe and a multipart.Writer in its own goroutine:
// three more copies of every byte, a goroutine that can outlive the call, no HTTP status, and no
// way to add the chunk headers. So the request is built here, the way the SDK builds it: fields
// from the SDK's UploadParams, signed with the SDK's signing function (Signer), the file part
// last with the SDK's file name, sent as a chunked stream. The file goes from the caller's
// reader to Cloudinary's connection without a copy in between when the reader has a WriteTo.

const (
	MinChunkBytes   = 5242880   // Cloudinary: "All parts except EOF-chunk must be larger than 5mb"
	MaxRequestBytes = 104857600 // Cloudinary refuses larger single requests (and chunks)
	ChunkRetries    = 3         // retries of one chunk after its first attempt
	chunkPieceBytes = 1 << 20   // a chunk is written upstream in pieces of this, each a sign of progress
	maxAnswer       = 4 << 20   // bounds how much of Cloudinary's answer is kept
)

// Options say where uploads go in the cloud and how files that may not fit one request are sent.
type Options struct {
	Folder       string // UPLOAD_FOLDER; empty: none
	Preset       string // UPLOAD_PRESET; empty: none
	ChunkSize    int64  // bytes per chunk but the last, MinChunkBytes to MaxRequestBytes
	KeepBuffers  int    // chunk buffers' worth of blocks kept for reuse between chunks (0: none, so memory in use is only the uploads')
	StallTimeout time.Duration
	// Backoff is the wait before retry number retry (0, 1, …) of a chunk.
	Backoff func(retry int) time.Duration
	// Wait sleeps for d, or returns early with ctx's cause; nil: a timer.
	Wait func(ctx context.Context, d time.Duration) error
	// Now is the clock that dates each request's signature; nil: time.Now.
	Now func() time.Time
	// Retrying, when not nil, hears of each chunk attempt that failed and is about to be retried.
	Retrying func(ctx context.Context, contentRange string, retry int, err error)
}

// Client uploads files to Cloudinary.
type Client struct {
	signer        *Signer
	url           string        // where the requests go: the auto upload URL
	uploadTimeout time.Duration // CLOUDINARY_URL's upload_timeout: per request, as the SDK applies it; 0: none
	http          *http.Client
	opts          Options
	buffers       *bufferPool // the blocks of chunk buffers
}

// New builds a Client for the credentials, reading their query parameters as the SDK does.
func New(creds *Credentials, opts Options) (*Client, error) {
	// NewFromQueryParams does not read the process environment, unlike config.New.
	conf, err := cldconfig.NewFromQueryParams(creds.CloudName, creds.APIKey, string(creds.APISecret), creds.Params)
	if err != nil { // not wrapped: the SDK's parse errors may quote the parameters
		return nil, errors.New("a query parameter has a value the SDK cannot read")
	}
	if opts.Wait == nil {
		opts.Wait = sleep
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	signer := newSigner(creds)
	return &Client{
		signer:        signer,
		url:           signer.UploadURL(api.Auto),
		uploadTimeout: time.Duration(conf.API.UploadTimeout) * time.Second,
		http:          &http.Client{Transport: newTransport()},
		opts:          opts,
		buffers:       newBufferPool(opts.KeepBuffers*int(ChunkBufferBytes(opts.ChunkSize)/ChunkBlockBytes), ChunkBlockBytes),
	}, nil
}

// Signer is the Client's signer, for signing what browsers upload themselves.
func (c *Client) Signer() *Signer { return c.signer }

// CloseIdleConnections closes the Client's idle connections to Cloudinary.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// newTransport is tuned for streaming large bodies to one host.
func newTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConns:          32,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		// Holds the request's headers, or a batch of small writes (smallWriteBytes) with its chunk
		// framing. The file's pieces, far larger, go to the socket from the caller's buffer,
		// less the start of each, which fills this buffer first: a larger one would copy more.
		WriteBufferSize:   2 * smallWriteBytes,
		ReadBufferSize:    64 << 10,
		ForceAttemptHTTP2: true,
	}
}

// Upload stores file and answers with Cloudinary's upload result, the raw JSON of its answer.
// A file of known size (p.Size, exact or a bound) that fits one request is sent in one,
// streamed; any other in chunks of Options.ChunkSize, each kept whole (see uploadChunked). A file's WriteTo,
// when it has one, is handed the request's writer, which has a Flush method: the file calls it
// before it waits for more bytes, so that nothing gathered in the writer waits with it.
func (c *Client) Upload(ctx context.Context, file io.Reader, p store.Params) (json.RawMessage, error) {
	if chunked(p.Size) {
		return c.uploadChunked(ctx, file, p)
	}
	return c.send(ctx, file, p, nil)
}

// chunked says whether a file of size bytes (−1: unknown) goes in chunks: when it may not fit
// one request.
func chunked(size int64) bool { return size < 0 || size > MaxRequestBytes }

// Holds is the most an upload of a file of size bytes holds through store.Params.Memory: a chunk
// buffer when the file goes in chunks (ChunkBufferBytes), else nothing (store.Holding).
func (c *Client) Holds(size int64) int64 {
	if !chunked(size) {
		return 0
	}
	return ChunkBufferBytes(c.opts.ChunkSize)
}

// chunkHeaders say which file a chunk belongs to and where it goes in it.
type chunkHeaders struct {
	uploadID     string
	contentRange string
}

// Fields are the signed form fields of one upload of p at now, as the SDK's signRequest makes
// them: p's choices, the Options' folder and preset, timestamp, signature and api_key.
// (UploadParams' lists are api.CldAPIArray: one comma-joined field each, so every field is
// signed as it is sent.)
func (c *Client) Fields(p store.Params, now time.Time) (url.Values, error) {
	params := cldupload.UploadParams{
		PublicID:         p.PublicID,
		Tags:             p.Tags,
		Folder:           cmp.Or(p.Folder, c.opts.Folder),
		UploadPreset:     c.opts.Preset,
		FilenameOverride: p.Filename,
	}
	if p.PublicID != "" {
		params.Overwrite = api.Bool(false) // a client must not replace someone else's file
	}
	if p.DeleteToken {
		params.ReturnDeleteToken = api.Bool(true)
	}
	fields, err := api.StructToParams(params)
	if err != nil {
		return nil, fmt.Errorf("upload parameters: %w", err)
	}
	for k, v := range p.Extra { // the client's other signable parameters, as POST /sign signs them
		if !fields.Has(k) {
			fields.Set(k, v)
		}
	}
	if p.UploadedBy != "" {
		fields.Set("context", AddContext(fields.Get("context"), store.UploadedByKey, p.UploadedBy))
	}
	sig, err := c.signer.Sign(fields, now)
	if err != nil {
		return nil, err
	}
	fields.Set("signature", sig)
	fields.Set("api_key", c.signer.APIKey())
	return fields, nil
}

// send makes one upload request with file as the file part: a whole file, or one chunk
// when chunk is not nil.
func (c *Client) send(ctx context.Context, file io.Reader, p store.Params, chunk *chunkHeaders) (json.RawMessage, error) {
	fields, err := c.Fields(p, c.opts.Now()) // signed afresh for every chunk: never stale
	if err != nil {
		return nil, err
	}
	if c.uploadTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, c.uploadTimeout, ErrUploadTimer)
		defer cancel()
	}
	req, err := c.newRequest(ctx, fields, file)
	if err != nil {
		return nil, err
	}
	if chunk != nil {
		req.Header.Set("X-Unique-Upload-Id", chunk.uploadID)
		req.Header.Set("Content-Range", chunk.contentRange)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, timedOut(ctx, noAnswer(err))
	}
	defer resp.Body.Close()
	result, err := readAnswer(resp)
	return result, timedOut(ctx, err)
}

// newRequest builds one signed upload request whose file part is file.
func (c *Client) newRequest(ctx context.Context, fields url.Values, file io.Reader) (*http.Request, error) {
	form, contentType, err := newUploadForm(fields, file)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, form)
	if err != nil {
		return nil, err
	}
	req.ContentLength = -1 // a stream: sent chunked, like the SDK's pipe
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", api.GetUserAgent())
	return req, nil
}

// timedOut makes a failure caused by upload_timeout an ErrTimeout.
func timedOut(ctx context.Context, err error) error {
	if err != nil && errors.Is(context.Cause(ctx), ErrUploadTimer) {
		return fmt.Errorf("%w: %w: %w", ErrTimeout, ErrUploadTimer, err)
	}
	return err
}

// noAnswer explains a request that got no answer.
func noAnswer(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err // the caller knows why its context ended
	}
	return fmt.Errorf("%w: %w", ErrUnreachable, err)
}

// readAnswer reads Cloudinary's answer to an upload: the raw JSON of a success, or an error
// that says what went wrong.
func readAnswer(resp *http.Response) (json.RawMessage, error) {
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the answer: %w", ErrUnreachable, err)
	}
	if len(raw) > maxAnswer {
		return nil, fmt.Errorf("%w: status %d: answer longer than %d bytes", ErrNotJSON, resp.StatusCode, maxAnswer)
	}
	var answer struct {
		Error *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(raw, &answer); err != nil { // an edge's HTML 502, or not an object
		if resp.StatusCode >= 500 {
			return nil, fmt.Errorf("%w: status %d: %w", ErrFailed, resp.StatusCode, err)
		}
		return nil, fmt.Errorf("%w: status %d: %w", ErrNotJSON, resp.StatusCode, err)
	}
	if answer.Error != nil && answer.Error.Message != "" {
		return nil, answerError(resp.StatusCode, answer.Error.Message)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: status %d without an error message", ErrFailed, resp.StatusCode)
	}
	return json.RawMessage(bytes.TrimSpace(raw)), nil
}

// answerError sorts Cloudinary's error answer into this package's errors.
func answerError(status int, message string) error {
	cause := fmt.Errorf("cloudinary answered %d: %s", status, message)
	switch {
	case status == http.StatusUnauthorized, status == http.StatusForbidden, status == http.StatusNotFound:
		return fmt.Errorf("%w: %w", ErrCredentials, cause)
	case status == 420, status == http.StatusTooManyRequests:
		return fmt.Errorf("%w: %w", ErrRateLimited, cause)
	case status >= 400 && status < 500:
		return &RejectedError{Status: status, Message: message}
	}
	return fmt.Errorf("%w: %w", ErrFailed, cause)
}
