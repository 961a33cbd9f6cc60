package main

// The request body's watch, and every timer that can end a request.
//
// The byte path of POST /upload, from the connection up:
//
//	layer              file                 what it does
//	r.Body (net/http)                       the connection's bytes, de-chunked
//	upload.RequestBody internal/upload      the one layer over the connection (installed by logRequests for every
//	                   request.go           request): counts the bytes once (the log's bytes_in, the pace, the bound);
//	                                        bounds the whole body (MAX_FILES_PER_REQUEST x MAX_UPLOAD_BYTES plus
//	                                        formOverhead); moves the read deadline before each read: BODY_IDLE_TIMEOUT,
//	                                        or sooner when MIN_UPLOAD_RATE's next bytes are due (a clock that runs only
//	                                        while the client is waited on); watches whether the body was read at all
//	                                        (100-continue) and whether it arrived whole; Interrupt wakes a read blocked
//	                                        on the client; Rest reads past all that (the drain after an early answer)
//	formstream.Reader  internal/formstream  large reads of the connection into its own buffer (requestBufferBytes,
//	                                        pooled); part headers and text fields within formOverhead
//	formstream.Part    internal/formstream  the file's bytes as pieces of that buffer (NextPiece): the fast path
//	upload.Pipeline    internal/upload      sniff, type policy (ALLOWED_TYPES), then the image guard: pixel and frame
//	                   upload.go            limits, metadata stripping (internal/imageguard); a JPEG, or any file with
//	                                        nothing to strip or count, is the part itself; a PNG or WebP being stripped,
//	                                        an animation, a GIF, and a TIFF, ICO or PSD whose parts lie past the head,
//	                                        come through the guard's walker (its NextPiece hands out the part's pieces,
//	                                        no longer than the chunk walked)
//	upload's body      internal/upload      caps the file (MAX_UPLOAD_BYTES), times the store (UPLOAD_TIMEOUT), counts
//	                   body.go              it against USER_QUOTA (File.Spend, quota.go) and stops (File.Waker: the
//	                                        RequestBody); its WriteTo hands pieces upstream without a copy
//	                                        (upload.HandsOutPieces, TestUploadTakesTheFastPath)
//	countingReader     metrics.go           counts the bytes the store took; keeps WriteTo (and the writer's Flush) visible
//	uploadForm         internal/cloudinary  the multipart request around the file; WriteTo hands the file the
//	                                        transport's writer (smallWrites, whose Flush the file calls before it waits)
//	chunkReader        internal/cloudinary  chunked uploads only: the file is Read into a chunk buffer of 1 MiB blocks,
//	                                        each reserved from UPLOAD_MEMORY (store.Memory) as the chunk's bytes arrive,
//	                                        reused by the next chunks, given back when the upload ends; written upstream
//	                                        block by block (a retry resends it from the buffer)
//
// The RequestBody under the form reader sees only its large reads, so it costs nothing per
// piece; the fast path above it (WriteTo, NextPiece, Flush) never goes through it. A layer that
// hid WriteTo would fail TestUploadTakesTheFastPath, not only a benchmark. No layer holds a
// mutex while it waits on the client: stopping an upload wakes the read under way (a past
// read deadline) and waits for it.
//
// The timers:
//
//	timer                 starts                                  ends                                  client sees
//	READ_HEADER_TIMEOUT   connection accepted / previous answer   request headers read                  connection closed (net/http)
//	origin check          -                                       at once, before the body              403 JSON
//	MAX_UPLOADS_PER_CLIENT (no timer)                             at once                               429 JSON, Retry-After
//	MAX_CONNECTIONS (no timer)  connection past the limit         another connection closes             waits in the listen queue
//	MAX_MEMORY_PER_CLIENT (no timer)                              at once                               429 JSON, Retry-After
//	ADMISSION_WAIT        upload finds UPLOAD_MEMORY (or the      memory given back by another upload  503 JSON, Retry-After
//	                      MAX_CONCURRENT_UPLOADS cap) spent;
//	                      a chunk's next 1 MiB block finds the    memory given back (the banker's      503 (429 for the client's own
//	                      budget (or the client's share) spent    rule: some chunk can always finish)  share), at once; the rest is drained
//	MIN_UPLOAD_RATE       body's first read (grace, then window;  body's end                            408 JSON; the reservation is returned,
//	                      only time spent waiting on the client)                                        the rest of the body is not read
//	BODY_IDLE_TIMEOUT     each read of the body                   the read brings bytes                 408 JSON
//	UPLOAD_TIMEOUT        streamed: Cloudinary holds the file     Cloudinary reads more / answers       504 JSON
//	                      and is not reading it; chunked: each
//	                      chunk attempt without progress          progress; after 3 retries:            504 JSON
//	CLOUDINARY_URL        each request to Cloudinary (a whole     its answer                            504 JSON
//	  upload_timeout      upload or one chunk)
//	CHUNK_RETRY_BACKOFF   a chunk attempt failed (5xx, reset,     the wait is over: next attempt        nothing (502/504 once retries run out)
//	                      stall)
//	drainTimeout (15 s)   an early answer has been sent (at once,  body read to its end (≤ 32 MiB)       the answer at once; the drain keeps a
//	                      flushed, full duplex) while the client                                        browser still sending from a reset
//	                      still sends (refuseEarly)
//	Expect: 100-continue  refused before the body                 at once: nothing read, no 100         the answer; connection closed
//	half-close            the body arrived whole                  (none: the upload goes on)            the upload's answer
//	SHUTDOWN_TIMEOUT      SIGTERM                                 every request answered                uploads in flight finish; then closed
//	IdleTimeout (120 s)   keep-alive connection idle              next request                          connection closed

import (
	"context"
	"net/http"
	"time"

	"cloudinary-upload-api/internal/upload"
)

// requestBodyKey is the context key of the request's *upload.RequestBody.
type requestBodyKey struct{}

// watchBody installs an upload.RequestBody as r's body (logRequests does, for every request, so
// that the bytes are counted once), and in r's context: refuseEarly, uploadContext and the ways
// in find it there. It returns the one already installed, if any.
func watchBody(w http.ResponseWriter, r *http.Request) (*http.Request, *upload.RequestBody) {
	if b := watchedBody(r); b != nil {
		return r, b
	}
	b := upload.NewRequestBody(r.Body, http.NewResponseController(w), time.Now)
	r = r.WithContext(context.WithValue(r.Context(), requestBodyKey{}, b))
	r.Body = b
	return r, b
}

// watchedBody is the RequestBody watchBody installed for r, or nil.
func watchedBody(r *http.Request) *upload.RequestBody {
	b, _ := r.Context().Value(requestBodyKey{}).(*upload.RequestBody)
	return b
}

// uploadContext is the context of an upload's work upstream. It ends when the client leaves
// before its body has arrived whole (with errClientGone as its cause), not after: a client that
// half-closes once it has sent everything still waits for its answer, and the file it sent is
// stored. Work after the body is bounded by the upload's own timers (UPLOAD_TIMEOUT and
// CLOUDINARY_URL's upload_timeout).
//
// Once the body has arrived whole, net/http reads on in the background to notice the client
// leaving, and takes the end of the client's sending (a half-close) for leaving: it cancels the
// request's context. So after the body is whole, the request's context no longer says whether
// anyone waits for the answer.
func uploadContext(r *http.Request, body *upload.RequestBody) (context.Context, context.CancelCauseFunc) {
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(r.Context()))
	stop := context.AfterFunc(r.Context(), func() {
		if !body.Whole() {
			cancel(errClientGone)
		}
	})
	return ctx, func(cause error) {
		stop()
		cancel(cause)
	}
}
