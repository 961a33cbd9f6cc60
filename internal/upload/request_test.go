package upload

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"cloudinary-upload-api/internal/admission"
)

// clockReader gives 10 bytes per Read, each after wait on the fake clock.
type clockReader struct {
	now  *time.Time
	wait time.Duration
}

func (r *clockReader) Read(p []byte) (int, error) {
	*r.now = r.now.Add(r.wait)
	return copy(p, "0123456789"), nil
}

func (r *clockReader) Close() error { return nil }

// deadlines records the read deadlines set.
type deadlines struct{ set []time.Time }

func (d *deadlines) SetReadDeadline(t time.Time) error {
	d.set = append(d.set, t)
	return nil
}

// The pace's clock runs only while a Read waits on the client: time the server spends sending
// upstream between reads (while TCP holds the client back) is never held against the client.
func TestRequestBodyPaceCountsOnlyWaits(t *testing.T) {
	t.Parallel()
	now := time.Unix(1e9, 0)
	rule := admission.Rule{BytesPerSecond: 1000, Grace: time.Second, Window: 2 * time.Second}
	dl := &deadlines{}
	body := NewRequestBody(&clockReader{now: &now, wait: 100 * time.Millisecond}, dl, func() time.Time { return now })
	body.Pace(rule)
	buf := make([]byte, 64)
	for range 5 {
		if _, err := body.Read(buf); err != nil {
			t.Fatal(err)
		}
		now = now.Add(10 * time.Second) // upstream busy: the client is not being waited on
	}
	// 50 bytes in 500 ms of waiting: too slow, but the grace (1 s of waiting) is not over.
	start := now
	if _, err := body.Read(buf); err != nil {
		t.Fatal(err)
	}
	if got, want := dl.set[len(dl.set)-1], start.Add(500*time.Millisecond); !got.Equal(want) {
		t.Fatalf("deadline %s after the read's start, want %s", got.Sub(start), want.Sub(start))
	}
	if body.Bytes() != 60 {
		t.Fatalf("counted %d bytes, want 60", body.Bytes())
	}

	off := &deadlines{}
	body = NewRequestBody(&clockReader{now: &now}, off, func() time.Time { return now })
	body.Pace(admission.Rule{})
	if _, err := body.Read(buf); err != nil {
		t.Fatal(err)
	}
	if len(off.set) != 0 {
		t.Fatalf("no rule, yet deadlines %v", off.set)
	}
}

// deadlineReader fails each read as a connection past its read deadline does.
type deadlineReader struct{}

func (deadlineReader) Read([]byte) (int, error) { return 0, os.ErrDeadlineExceeded }
func (deadlineReader) Close() error             { return nil }

func TestRequestBodyIdleAndSlow(t *testing.T) {
	t.Parallel()
	body := NewRequestBody(deadlineReader{}, &deadlines{}, time.Now)
	body.Idle(time.Second)
	if _, err := body.Read(make([]byte, 10)); !errors.Is(err, ErrIdle) {
		t.Fatalf("idle: %v", err)
	}
	body = NewRequestBody(deadlineReader{}, &deadlines{}, time.Now)
	body.Idle(time.Hour)
	body.Pace(admission.Rule{BytesPerSecond: 1000, Window: time.Second})
	if _, err := body.Read(make([]byte, 10)); !errors.Is(err, admission.ErrTooSlow) {
		t.Fatalf("slow: %v", err)
	}
	// Interrupted: the read's failure is the stop's, and later reads fail at once.
	body = NewRequestBody(deadlineReader{}, &deadlines{}, time.Now)
	body.Idle(time.Second)
	body.Interrupt()
	if _, err := body.Read(make([]byte, 10)); !errors.Is(err, ErrStopped) {
		t.Fatalf("interrupted: %v", err)
	}
}

// The bound as http.MaxBytesReader has it: the bytes up to it, then the error; Rest reads past.
func TestRequestBodyLimit(t *testing.T) {
	t.Parallel()
	body := NewRequestBody(io.NopCloser(strings.NewReader(strings.Repeat("x", 100))), nil, time.Now)
	body.Limit(60)
	got, err := io.ReadAll(body)
	var tooLarge *BodyTooLargeError
	if len(got) != 60 || !errors.As(err, &tooLarge) || tooLarge.Limit != 60 {
		t.Fatalf("read %d bytes, %v; want 60 and BodyTooLargeError", len(got), err)
	}
	rest, err := io.ReadAll(body.Rest())
	if err != nil || len(rest) != 39 || !body.Ended() || !body.Whole() || body.Bytes() != 100 {
		t.Fatalf("rest %d bytes, %v; ended %v, counted %d", len(rest), err, body.Ended(), body.Bytes())
	}
	if body.Started() != true {
		t.Fatal("not started")
	}
	var nilBody *RequestBody
	if nilBody.Started() || nilBody.Ended() || nilBody.Whole() {
		t.Fatal("a nil body says it was read")
	}
	within := NewRequestBody(io.NopCloser(bytes.NewReader(make([]byte, 60))), nil, time.Now)
	within.Limit(60)
	if got, err := io.ReadAll(within); err != nil || len(got) != 60 {
		t.Fatalf("at the bound: %d bytes, %v", len(got), err)
	}
}
