package main

// The request body's wrappers, and every timer that can end a request.
//
// The byte path of POST /upload, from the connection up:
//
//	layer            file         what it does
//	r.Body (net/http)             the connection's bytes, de-chunked
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
//	chunkReader      internal/cloudinary  chunked uploads only: the file is Read into a chunk buffer, which this
//	                              writes upstream in 1 MiB pieces (a retry resends it from the buffer)
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
//	ADMISSION_WAIT        upload finds UPLOAD_MEMORY (or the      memory given back by another upload  503 JSON, Retry-After
//	                      MAX_CONCURRENT_UPLOADS cap) spent
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
//	drainTimeout (15 s)   an early error is answered while the    body read to its end (≤ 32 MiB)       the answer (else a reset)
//	                      client still sends
//	SHUTDOWN_TIMEOUT      SIGTERM                                 every request answered                uploads in flight finish; then closed
//	IdleTimeout (120 s)   keep-alive connection idle              next request                          connection closed

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"cloudinary-upload-api/internal/admission"
)

// idleBody is the request body with an idle timeout: each read must bring something within
// timeout, or it fails with errBodyIdle. It moves the connection's read deadline before each read;
// when the body beneath is a pacer whose bytes are due sooner, to then, failing with errTooSlow.
type idleBody struct {
	body        io.ReadCloser
	rc          *http.ResponseController
	timeout     time.Duration
	unsupported bool        // no deadlines here (httptest recorders): reads just wait
	interrupted atomic.Bool // stop set a past deadline on purpose
}

func (b *idleBody) Read(p []byte) (int, error) {
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
		return 0, errUploadStopped
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

// interrupt wakes a Read blocked on the client.
func (b *idleBody) interrupt() {
	b.interrupted.Store(true)
	_ = b.rc.SetReadDeadline(time.Now()) // fails only when unsupported
}

// resume clears the deadline, so the server can read what is left of the body.
func (b *idleBody) resume() {
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
