package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/cloudinary/cloudinary-go/v2/api"
	cldupload "github.com/cloudinary/cloudinary-go/v2/api/uploader"
	cldconfig "github.com/cloudinary/cloudinary-go/v2/config"
)

// The SDK's Upload streams a reader through io.Pipe and a multipart.Writer in its own goroutine:
// three more copies of every byte, a goroutine that can outlive the call, no HTTP status, and no
// way to add the chunk headers. So the request is built here, the way the SDK builds it: fields
// from the SDK's UploadParams, signed with the SDK's signing function, the file part last with
// the SDK's file name, sent as a chunked stream. The file goes from the client's connection to
// Cloudinary's without a copy in between (uploadBody.WriteTo).

// uploadEndpoint is where an upload request goes, and how it is signed.
type uploadEndpoint struct {
	url           string // {upload_prefix}/v1_1/{cloud}/auto/upload, as the SDK builds it
	apiKey        string
	apiSecret     secret
	algorithm     string
	version       int
	uploadTimeout time.Duration // CLOUDINARY_URL's upload_timeout: per request, as the SDK applies it; 0: none
}

func newUploadEndpoint(conf *cldconfig.Configuration, creds *credentials) uploadEndpoint {
	return uploadEndpoint{
		url:           fmt.Sprintf("%s/%s/%s", api.BaseURL(conf.API.UploadPrefix, ""), conf.Cloud.CloudName, api.BuildPath(api.Auto, "upload")),
		apiKey:        conf.Cloud.APIKey,
		apiSecret:     creds.apiSecret,
		algorithm:     conf.Cloud.GetSignatureAlgorithm(),
		version:       conf.Cloud.GetSignatureVersion(),
		uploadTimeout: time.Duration(conf.API.UploadTimeout) * time.Second,
	}
}

// signedFields are the form fields of one upload, with timestamp, signature and api_key, as the
// SDK's signRequest makes them; extra adds fields UploadParams does not carry as they are. (UploadParams' lists are api.CldAPIArray: one comma-joined field
// each, so every field is signed as it is sent.)
func (e uploadEndpoint) signedFields(params cldupload.UploadParams, extra map[string]string, now time.Time) (url.Values, error) {
	fields, err := api.StructToParams(params)
	if err != nil {
		return nil, fmt.Errorf("upload parameters: %w", err)
	}
	for k, v := range extra { // the client's other signable parameters, as POST /sign signs them
		if !fields.Has(k) {
			fields.Set(k, v)
		}
	}
	fields.Set("timestamp", strconv.FormatInt(now.Unix(), 10))
	sig, err := api.SignParametersUsingAlgoAndVersion(fields, string(e.apiSecret), e.algorithm, e.version)
	if err != nil {
		return nil, fmt.Errorf("sign upload: %w", err)
	}
	fields.Set("signature", sig)
	fields.Set("api_key", e.apiKey)
	return fields, nil
}

// newRequest builds one signed upload request whose file part is file.
func (e uploadEndpoint) newRequest(ctx context.Context, fields url.Values, file io.Reader) (*http.Request, error) {
	form, contentType, err := newUploadForm(fields, file)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, form)
	if err != nil {
		return nil, err
	}
	req.ContentLength = -1 // a stream: sent chunked, like the SDK's pipe
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", api.GetUserAgent())
	return req, nil
}

// uploadForm is a multipart body: the fields and the file part's headers, the file, the closing
// delimiter. Its WriteTo hands the file the request's writer, so the file's own WriteTo decides
// the piece size and nothing is copied on the way.
type uploadForm struct {
	head []byte // fields, then the file part's delimiter and headers
	file io.Reader
	tail []byte // CRLF and the closing delimiter
	r    io.Reader
}

func newUploadForm(fields url.Values, file io.Reader) (*uploadForm, string, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		if err := mw.WriteField(k, fields.Get(k)); err != nil {
			return nil, "", err
		}
	}
	if _, err := mw.CreateFormFile("file", "file"); err != nil { // the SDK's name; filename_override has the client's
		return nil, "", err
	}
	head := bytes.Clone(buf.Bytes())
	buf.Reset()
	if err := mw.Close(); err != nil {
		return nil, "", err
	}
	f := &uploadForm{head: head, file: file, tail: buf.Bytes()}
	f.r = io.MultiReader(bytes.NewReader(f.head), f.file, bytes.NewReader(f.tail))
	return f, mw.FormDataContentType(), nil
}

func (f *uploadForm) Read(p []byte) (int, error) { return f.r.Read(p) }

func (f *uploadForm) Close() error { return nil } // the file's owner stops it (uploadBody.stop, chunkReader.detach)

func (f *uploadForm) WriteTo(w io.Writer) (int64, error) {
	sw := &smallWrites{w: w, buf: make([]byte, 0, smallWriteBytes)}
	n, err := sw.Write(f.head)
	total := int64(n)
	if err != nil {
		return total, err
	}
	m, err := io.Copy(sw, f.file) // the file's WriteTo
	total += m
	if err != nil {
		return total, err
	}
	n, err = sw.Write(f.tail)
	total += int64(n)
	if err != nil {
		return total, err
	}
	return total, sw.flush()
}

// smallWriteBytes bounds the writes smallWrites gathers; the transport's write buffer holds
// one such batch with its chunk framing.
const smallWriteBytes = 8 << 10

// smallWrites gathers small writes into one. Each write to the transport is a chunk and at
// least one system call; a small file is otherwise sent as a handful of tiny chunks (the form's
// head, the bytes read to sniff the type, the rest of the first read, the closing delimiter).
// Large writes go through as they are, without a copy.
type smallWrites struct {
	w   io.Writer
	buf []byte
}

func (s *smallWrites) Write(p []byte) (int, error) {
	if len(s.buf)+len(p) > cap(s.buf) {
		if err := s.flush(); err != nil {
			return 0, err
		}
		if len(p) >= cap(s.buf) {
			return s.w.Write(p)
		}
	}
	s.buf = append(s.buf, p...)
	return len(p), nil
}

func (s *smallWrites) flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	_, err := s.w.Write(s.buf)
	s.buf = s.buf[:0]
	return err
}

// readAnswer reads Cloudinary's answer to an upload: the raw JSON of a success, or an error
// that says what went wrong in the client's terms.
func readAnswer(resp *http.Response) (json.RawMessage, error) {
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamAnswer+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the answer: %w", errUpstreamUnreachable, err)
	}
	if len(raw) > maxUpstreamAnswer {
		return nil, fmt.Errorf("%w: status %d: answer longer than %d bytes", errUpstreamNotJSON, resp.StatusCode, maxUpstreamAnswer)
	}
	var answer struct {
		Error *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(raw, &answer); err != nil { // an edge's HTML 502, or not an object
		if resp.StatusCode >= 500 {
			return nil, fmt.Errorf("%w: status %d: %w", errUpstreamFailed, resp.StatusCode, err)
		}
		return nil, fmt.Errorf("%w: status %d: %w", errUpstreamNotJSON, resp.StatusCode, err)
	}
	if answer.Error != nil && answer.Error.Message != "" {
		return nil, classifyUpstreamError(resp.StatusCode, answer.Error.Message)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: status %d without an error message", errUpstreamFailed, resp.StatusCode)
	}
	return json.RawMessage(bytes.TrimSpace(raw)), nil
}

// classifyUpstreamFailure maps a request that got no answer to what the client sees.
func classifyUpstreamFailure(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err // the handler knows why its context ended
	}
	return fmt.Errorf("%w: %w", errUpstreamUnreachable, err)
}
