package main

// The request body's wrappers, and every timer that can end a request.
//
// The byte path of POST /upload, from the connection up:
//
//	layer            file         what it does
//	r.Body (net/http)             the connection's bytes, de-chunked
//	requestBody      body.go      watches whether the body was read at all (100-continue) and whether it arrived whole
//	pacedBody        body.go      counts what arrives against MIN_UPLOAD_RATE, on a clock that runs only while the client is waited on
//	idleBody         body.go      sets the read deadline before each read: BODY_IDLE_TIMEOUT, or sooner when the pace is due
//	MaxBytesReader   upload.go    the whole body: MAX_FILES_PER_REQUEST x MAX_UPLOAD_BYTES plus formOverhead
//	formstream.Reader internal/formstream  large reads of the connection into its own buffer (requestBufferBytes,
//	                              pooled); part headers and text fields within formOverhead
//	formstream.Part  internal/formstream  the file's bytes as pieces of that buffer (NextPiece): the fast path
//	guardImage       imageguard.go  pixel and frame limits, metadata stripping (internal/imageguard); a JPEG,
//	                              or any file with nothing to strip or count, is the part itself; a PNG or
//	                              WebP being stripped, an animation, a GIF, and a TIFF, ICO or PSD whose parts
//	                              lie past the head, come through the guard's walker (Read only: one copy)
//	uploadBody       upload.go    caps, times and stops the file (and counts it against USER_QUOTA, quota.go); WriteTo hands
//	                              pieces upstream without a copy
//	countingReader   metrics.go   counts the bytes the store took; keeps WriteTo (and the writer's Flush) visible
//	uploadForm       internal/cloudinary  the multipart request around the file; WriteTo hands the file the
//	                              transport's writer (smallWrites, whose Flush the file calls before it waits)
//	chunkReader      internal/cloudinary  chunked uploads only: the file is Read into a chunk buffer of 1 MiB blocks,
//	                              each reserved from UPLOAD_MEMORY (store.Memory) as the chunk's bytes arrive,
//	                              reused by the next chunks, given back when the upload ends; written upstream block by block
//	                              (a retry resends it from the buffer)
//
// The wrappers under the form reader see only its large reads, so they cost nothing per piece;
// the fast path above it (WriteTo, NextPiece, Flush) never goes through them. A wrapper that hid
// WriteTo would fail TestUploadTakesTheFastPath, not only a benchmark.
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
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"cloudinary-upload-api/internal/admission"
	"cloudinary-upload-api/internal/upload"
)

// idleBody is the request body with an idle timeout: each read must bring something within
// timeout, or it fails with errBodyIdle. It moves the connection's read deadline before each read;
// when the body beneath is a pacer whose bytes are due sooner, to then, failing with errTooSlow.
// Over HTTP/2 (h2c) the deadline is the stream's, not the connection's: net/http closes that
// stream's body when it passes, and the other uploads on the connection go on
// (TestH2CBodyTimers).
type idleBody struct {
	body        io.ReadCloser
	rc          *http.ResponseController
	timeout     time.Duration
	request     *requestBody // the body beneath, watched (nil: not watched); once it is whole, deadlines are left alone
	unsupported bool         // no deadlines here (httptest recorders): reads just wait
	interrupted atomic.Bool  // stop set a past deadline on purpose
}

func (b *idleBody) Read(p []byte) (int, error) {
	if b.request.ended() {
		return b.body.Read(p) // nothing more comes from the client: no deadline to move
	}
	now := time.Now()
	deadline, slow := now.Add(b.timeout), false
	if pc, ok := b.body.(pacer); ok {
		if due := pc.due(now); !due.IsZero() && due.Before(deadline) {
			deadline, slow = due, true // a trickle is cut even when every read brings a byte
		}
	}
	if !b.unsupported && b.rc.SetReadDeadline(deadline) != nil {
		b.unsupported = true
	}
	if b.interrupted.Load() { // checked after moving the deadline, so interrupt's past deadline is never lost
		return 0, upload.ErrStopped
	}
	n, err := b.body.Read(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && !b.interrupted.Load() {
		if slow {
			err = fmt.Errorf("%w: %w", errTooSlow, admission.ErrTooSlow)
		} else {
			err = fmt.Errorf("%w: no bytes for %s: %w", errBodyIdle, b.timeout, err)
		}
	}
	return n, err
}

func (b *idleBody) Close() error { return b.body.Close() }

// Interrupt wakes a Read blocked on the client (upload.Waker): the upload is over.
func (b *idleBody) Interrupt() {
	b.interrupted.Store(true)
	if b.request.ended() {
		return // a Read ends at once; the connection's deadline now belongs to net/http's background read
	}
	_ = b.rc.SetReadDeadline(time.Now()) // fails only when unsupported
}

// Resume clears the deadline, so the server can read what is left of the body.
func (b *idleBody) Resume() {
	if b.request.ended() {
		return
	}
	_ = b.rc.SetReadDeadline(time.Time{}) // fails only when unsupported
}

// pacedBody counts a body's bytes against a minimum data rate. Its clock runs only while a Read
// waits on the client, so the time the server spends sending upstream (while the client, held
// back by TCP, cannot send) is never held against the client. It sets no deadline itself:
// idleBody, above it, asks it when the next bytes are due.
type pacedBody struct {
	body   io.ReadCloser
	pace   *admission.Pace
	waited time.Duration // the pace's clock: time spent in Read
	now    func() time.Time
}

func newPacedBody(body io.ReadCloser, rule admission.Rule, now func() time.Time) *pacedBody {
	return &pacedBody{body: body, pace: admission.NewPace(rule), now: now}
}

func (b *pacedBody) Read(p []byte) (int, error) {
	start := b.now()
	n, err := b.body.Read(p)
	b.waited += b.now().Sub(start)
	b.pace.Add(b.waited, n)
	return n, err
}

func (b *pacedBody) Close() error { return b.body.Close() }

// due is when a read that starts at now must have brought more bytes, or zero for never.
func (b *pacedBody) due(now time.Time) time.Time {
	d := b.pace.Deadline(b.waited)
	if d == admission.Never {
		return time.Time{}
	}
	return now.Add(d - b.waited)
}

// pacer is a body that says by when its next bytes are due (pacedBody).
type pacer interface {
	due(now time.Time) time.Time
}

// requestBody is the request's body as net/http gives it, watched: whether the server has read
// any of it (until then a client that sent Expect: 100-continue has sent none), and whether it
// arrived whole. handleUpload puts it under every other wrapper; refuseEarly, idleBody and
// uploadContext ask it.
//
// Once the body has arrived whole, net/http reads on in the background to notice the client
// leaving, and takes the end of the client's sending (a half-close) for leaving: it cancels the
// request's context. So after the body is whole, the request's context no longer says whether
// anyone waits for the answer, and no read deadline may be set on the connection (it would
// end that background read, and cancel the context too).
type requestBody struct {
	body io.ReadCloser
	mu   sync.Mutex  // held for each Read: whole, asked while the Read that ends the body runs, waits for it
	read bool        // a Read was called: net/http has sent 100 Continue, if the client asked for it
	done atomic.Bool // the body's end has been read; set under mu
}

// watchBody installs a requestBody as r's body, and in r's context for refuseEarly.
func watchBody(r *http.Request) (*http.Request, *requestBody) {
	b := &requestBody{body: r.Body}
	r = r.WithContext(context.WithValue(r.Context(), requestBodyKey{}, b))
	r.Body = b
	return r, b
}

type requestBodyKey struct{}

// watchedBody is the requestBody watchBody installed for r, or nil.
func watchedBody(r *http.Request) *requestBody {
	b, _ := r.Context().Value(requestBodyKey{}).(*requestBody)
	return b
}

func (b *requestBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.read = true
	if b.done.Load() {
		return 0, io.EOF
	}
	n, err := b.body.Read(p)
	if errors.Is(err, io.EOF) {
		b.done.Store(true)
	}
	return n, err
}

func (b *requestBody) Close() error { return b.body.Close() }

// started says whether the server has asked for any of the body. A nil body has not.
func (b *requestBody) started() bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.read
}

// whole says whether the body has been read to its end, waiting for a Read under way: net/http
// starts its background read (which may cancel the request's context) inside the Read that
// ends the body, before that Read returns. A nil body has not been read to its end.
func (b *requestBody) whole() bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.done.Load()
}

// ended is whole without waiting: for the body's own readers, which never run beside a Read.
func (b *requestBody) ended() bool { return b != nil && b.done.Load() }

// uploadContext is the context of an upload's work upstream. It ends when the client leaves
// before its body has arrived whole (with errClientGone as its cause), not after: a client that
// half-closes once it has sent everything still waits for its answer, and the file it sent is
// stored. Work after the body is bounded by the upload's own timers (UPLOAD_TIMEOUT and
// CLOUDINARY_URL's upload_timeout).
func uploadContext(r *http.Request, body *requestBody) (context.Context, context.CancelCauseFunc) {
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(r.Context()))
	stop := context.AfterFunc(r.Context(), func() {
		if !body.whole() {
			cancel(errClientGone)
		}
	})
	return ctx, func(cause error) {
		stop()
		cancel(cause)
	}
}
