package store

import "errors"

// Kind says what went wrong in a store, in terms that every store shares: the HTTP layer maps
// kinds to what a client sees, and the metrics count them, without naming a store's own values.
// The kinds are ordered: when one error wraps several, KindOf answers the first of them in this
// order. A timeout wraps the failure it cut short; a refused delete token, the refusal it was
// told by.
type Kind uint8

const (
	Unknown      Kind = iota // not a store's error of a known kind (a bug, a full disk…)
	Timeout                  // the store did not answer in time
	NotFound                 // no such file (a deletion)
	TokenRefused             // the delete token is wrong or has expired
	Conflict                 // a chunk does not start where the store's part of the upload ends
	Credentials              // the store refused the server's credentials
	Failed                   // the store failed to process the request (a 5xx)
	Unreachable              // the store could not be reached, or the answer broke off
	BadAnswer                // the store's answer could not be understood
	RateLimited              // the store is limiting the rate of requests
	Refused                  // the store refused the file, with a message for whoever sent it (see Message)
	Empty                    // the file is empty
)

var kindNames = [...]string{"unknown", "timeout", "not_found", "token_refused", "conflict", "credentials",
	"failed", "unreachable", "bad_answer", "rate_limited", "refused", "empty"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Kinded is what a store's error implements to say its kind.
type Kinded interface {
	StoreKind() Kind
}

// Refusal is what an error of kind Refused implements besides: the store's own words about the
// file, meant for whoever sent it.
type Refusal interface {
	Kinded
	RefusalMessage() string
}

// Error is an error of a kind; stores make their error values with NewError.
type Error struct {
	kind Kind
	text string
}

// NewError returns an error of kind k whose text is text. Each call is a distinct value, for
// errors.Is.
func NewError(k Kind, text string) error { return &Error{kind: k, text: text} }

func (e *Error) Error() string   { return e.text }
func (e *Error) StoreKind() Kind { return e.kind }

// KindOf is the kind of err: of the errors it wraps that say a kind (Kinded), the first in Kind's
// order; Unknown when none does.
func KindOf(err error) Kind {
	best := Unknown
	walk(err, func(e error) {
		if k, ok := e.(Kinded); ok && k.StoreKind() != Unknown && (best == Unknown || k.StoreKind() < best) {
			best = k.StoreKind()
		}
	})
	return best
}

// Message is the message for the client of the first Refusal that err wraps, and whether there
// is one.
func Message(err error) (string, bool) {
	var r Refusal
	if errors.As(err, &r) {
		return r.RefusalMessage(), true
	}
	return "", false
}

// walk calls visit with err and every error it wraps, depth first.
func walk(err error, visit func(error)) {
	if err == nil {
		return
	}
	visit(err)
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		walk(u.Unwrap(), visit)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			walk(e, visit)
		}
	}
}
