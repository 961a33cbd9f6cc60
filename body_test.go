package main

import (
	"io"
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

// The pace's clock runs only while a Read waits on the client: time the server spends sending
// upstream between reads (while TCP holds the client back) is never held against the client.
func TestPacedBodyCountsOnlyWaits(t *testing.T) {
	now := time.Unix(1e9, 0)
	rule := admission.Rule{BytesPerSecond: 1000, Grace: time.Second, Window: 2 * time.Second}
	body := newPacedBody(&clockReader{now: &now, wait: 100 * time.Millisecond}, rule, func() time.Time { return now })
	buf := make([]byte, 64)
	for range 5 {
		if _, err := body.Read(buf); err != nil {
			t.Fatal(err)
		}
		now = now.Add(10 * time.Second) // upstream busy: the client is not being waited on
	}
	// 50 bytes in 500 ms of waiting: too slow, but the grace (1 s of waiting) is not over.
	if got, want := body.due(now), now.Add(500*time.Millisecond); !got.Equal(want) {
		t.Fatalf("due %s after the start, want %s", got.Sub(now), want.Sub(now))
	}
	off := newPacedBody(&clockReader{now: &now}, admission.Rule{}, func() time.Time { return now })
	if _, err := off.Read(buf); err != nil {
		t.Fatal(err)
	}
	if d := off.due(now); !d.IsZero() {
		t.Fatalf("no rule, yet due at %s", d)
	}
}

var _ io.ReadCloser = (*pacedBody)(nil)
