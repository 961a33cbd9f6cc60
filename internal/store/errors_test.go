package store

import (
	"errors"
	"fmt"
	"testing"
)

type refusal struct{ msg string }

func (r refusal) Error() string          { return "refused: " + r.msg }
func (refusal) StoreKind() Kind          { return Refused }
func (r refusal) RefusalMessage() string { return r.msg }

// KindOf answers the first kind in Kind's order among those err wraps, through single and
// multiple wrapping; Message finds the refusal's words.
func TestKindOf(t *testing.T) {
	t.Parallel()
	for k := Unknown; k <= Empty; k++ {
		if k.String() == "unknown" && k != Unknown {
			t.Errorf("kind %d has no name", k)
		}
	}
	timeout, failed := NewError(Timeout, "timed out"), NewError(Failed, "failed")
	for _, tc := range []struct {
		err  error
		want Kind
	}{
		{nil, Unknown},
		{errors.New("plain"), Unknown},
		{failed, Failed},
		{fmt.Errorf("chunk 3: %w", failed), Failed},
		{fmt.Errorf("%w: %w", failed, timeout), Timeout}, // a timeout wraps the failure it cut short, in either order
		{fmt.Errorf("%w: %w", timeout, fmt.Errorf("x: %w", failed)), Timeout},
		{errors.Join(errors.New("x"), fmt.Errorf("y: %w", refusal{"bad image"})), Refused},
		{fmt.Errorf("%w: %w", NewError(TokenRefused, "token refused"), NewError(Credentials, "401")), TokenRefused},
	} {
		if got := KindOf(tc.err); got != tc.want {
			t.Errorf("KindOf(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if msg, ok := Message(fmt.Errorf("upload: %w", refusal{"Invalid image file"})); !ok || msg != "Invalid image file" {
		t.Errorf("Message = %q, %v", msg, ok)
	}
	if _, ok := Message(failed); ok {
		t.Error("Message of a failure found a refusal")
	}
	if !errors.Is(fmt.Errorf("x: %w", timeout), timeout) || errors.Is(NewError(Timeout, "timed out"), timeout) {
		t.Error("each NewError is its own value for errors.Is")
	}
}
