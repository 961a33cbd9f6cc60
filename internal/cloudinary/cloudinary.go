// Package cloudinary uploads files to Cloudinary's Upload API and signs the parameters of
// uploads that browsers send there themselves.
//
//   - Credentials, read by ParseURL from a CLOUDINARY_URL, hold the API secret as a Secret,
//     which never prints itself.
//   - A Signer signs upload parameters the way Cloudinary checks them (the SDK's algorithm and
//     version, from the URL's signature_algorithm and signature_version), and says where an
//     upload goes. The Client signs its requests with it, and so does the server's POST /sign.
//   - A Client sends one file as one request, streamed without a copy (the file's WriteTo is
//     handed the request's writer), or in chunks with Cloudinary's chunked upload protocol, each
//     chunk kept whole and retried with backoff when it fails in a way that may pass, and sent
//     as its bytes arrive when the file surely goes on past it. It decides which from the
//     file's size (store.Params.Size). SendChunk sends one chunk at a given offset of an upload,
//     for uploads that arrive in several requests (resumable ones). It deletes, too: Destroy
//     (signed) and DeleteByToken (with the delete_token an upload answered when asked).
//
// The Client's errors are this package's values (ErrCredentials, ErrFailed, *RejectedError, …),
// never an HTTP status of the caller's: the caller decides what its own clients see. Errors of
// reading the file are passed on as they are.
package cloudinary

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"unicode"

	"cloudinary-upload-api/internal/store"
)

// Secret is a string that never prints itself: not by fmt, slog, %#v nor as JSON text.
type Secret string

func (Secret) String() string                 { return "<redacted>" }
func (Secret) LogValue() slog.Value           { return slog.StringValue("<redacted>") }
func (s Secret) GoString() string             { return s.String() }
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Credentials are what signing and uploading need.
type Credentials struct {
	CloudName string
	APIKey    string
	APISecret Secret
	Params    url.Values // CLOUDINARY_URL's query parameters, e.g. upload_prefix, read as the SDK reads them
}

// urlShape is the shape ParseURL wants, which its errors repeat.
const urlShape = "want cloudinary://API_KEY:API_SECRET@CLOUD_NAME"

// envLinePrefix is how the console shows the variable: the whole line, name included.
const envLinePrefix = "CLOUDINARY_URL="

// ParseURL reads a CLOUDINARY_URL: cloudinary://API_KEY:API_SECRET@CLOUD_NAME with optional
// query parameters. Each mistake people make has its own error, naming the part that is wrong
// (the API key, the API secret, the cloud name), never quoting the URL, which holds the secret
// (url.Parse's errors do). The console's whole line, CLOUDINARY_URL=cloudinary://…, is refused
// with the fix rather than taken with a warning: a start-up error is read, a warning is missed.
func ParseURL(raw string) (*Credentials, error) {
	if len(raw) >= len(envLinePrefix) && strings.EqualFold(raw[:len(envLinePrefix)], envLinePrefix) {
		return nil, errors.New(`the value starts with "CLOUDINARY_URL=", as the console shows the whole line: set only what follows the "=", cloudinary://…`)
	}
	if strings.HasPrefix(raw, `"`) || strings.HasPrefix(raw, "'") {
		return nil, errors.New("is in quotes, which are part of the value here (a dashboard keeps them): set it without them")
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	switch {
	case ok && (strings.EqualFold(scheme, "https") || strings.EqualFold(scheme, "http")):
		return nil, errors.New("is a web address (" + strings.ToLower(scheme) + "://): " + urlShape + ", the console's API environment variable")
	case !ok || scheme != "cloudinary":
		return nil, errors.New("does not start with cloudinary://: " + urlShape)
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	at := strings.LastIndex(authority, "@") // as url.Parse splits it
	if at < 0 {
		return nil, errors.New(`has no "API_KEY:API_SECRET@" before the cloud name: ` + urlShape)
	}
	key, sec, hasColon := strings.Cut(authority[:at], ":")
	if !hasColon {
		sec = ""
	}
	for _, part := range []struct{ name, value string }{{"API key", key}, {"API secret", sec}, {"cloud name", authority[at+1:]}} {
		switch {
		case part.value == "":
			return nil, errors.New("has no " + part.name + ": " + urlShape)
		case strings.HasPrefix(part.value, "<") && strings.HasSuffix(part.value, ">"):
			return nil, errors.New("the " + part.name + " is still the console's placeholder in <…>: put your own " + part.name + " in its place (console: Settings, API Keys)")
		case strings.ContainsFunc(part.value, unicode.IsSpace):
			return nil, errors.New("the " + part.name + " contains a space or a line break: copy it again from the console")
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return nil, errors.New("is not a well-formed URL (a character such as <, > or % out of place?): " + urlShape)
	}
	pass, _ := u.User.Password()
	c := &Credentials{CloudName: u.Host, APIKey: u.User.Username(), APISecret: Secret(pass), Params: u.Query()}
	if c.CloudName == "" || c.APIKey == "" || pass == "" { // the checks above make this unreachable
		return nil, errors.New("is not a well-formed URL: " + urlShape)
	}
	if err := CheckUploadPrefix(c.Params.Get("upload_prefix")); err != nil {
		return nil, fmt.Errorf("upload_prefix %w", err)
	}
	return c, nil
}

// CheckUploadPrefix checks an upload_prefix: empty, or an http(s) URL with a host.
func CheckUploadPrefix(p string) error {
	if p == "" {
		return nil
	}
	u, err := url.Parse(p)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("is not an http(s) URL")
	}
	return nil
}

// CheckSigningParams checks the signature_algorithm and signature_version of a CLOUDINARY_URL's
// query; each error names the parameter.
func CheckSigningParams(q url.Values) error {
	var problems []error
	if a := q.Get("signature_algorithm"); a != "" && a != "sha1" && a != "sha256" {
		problems = append(problems, errors.New("signature_algorithm must be sha1 or sha256"))
	}
	if v := q.Get("signature_version"); v != "" {
		if n, err := strconv.Atoi(v); err != nil || n < 1 || n > 2 {
			problems = append(problems, errors.New("signature_version must be 1 or 2"))
		}
	}
	return errors.Join(problems...)
}

// The ways an upload can fail on Cloudinary's side. Each error the Client returns for a failure
// of Cloudinary's wraps one of them (or is a *RejectedError), with the cause. Each has its
// store.Kind, which is all the server's HTTP layer needs to know of it.
var (
	ErrCredentials = store.NewError(store.Credentials, "cloudinary rejected the credentials")    // 401, 403, 404: bad key, signature or cloud name
	ErrRateLimited = store.NewError(store.RateLimited, "cloudinary is limiting the upload rate") // 420, 429
	ErrFailed      = store.NewError(store.Failed, "cloudinary failed to process the upload")     // 5xx, or an error without a message
	ErrUnreachable = store.NewError(store.Unreachable, "could not reach cloudinary")             // no answer: refused, reset, cut off
	ErrNotJSON     = store.NewError(store.BadAnswer, "cloudinary's answer is not JSON")          // or too long to be an upload result
	ErrTimeout     = store.NewError(store.Timeout, "cloudinary did not answer in time")          // upload_timeout, or a chunk without progress
	ErrRejected    = errors.New("cloudinary rejected the file")                                  // any other 4xx: see RejectedError, of kind store.Refused
	ErrEmptyFile   = store.NewError(store.Empty, "file is empty")                                // a chunked upload read no byte
	ErrStalled     = errors.New("chunk upload made no progress")                                 // wrapped by ErrTimeout
	ErrUploadTimer = errors.New("CLOUDINARY_URL upload_timeout passed")                          // wrapped by ErrTimeout
	ErrUnsignable  = errors.New("a parameter cannot be signed")                                  // a value with '&': see Signer.Sign
)

// The ways a deletion can fail besides those above (ErrUnreachable, ErrFailed, ErrRateLimited,
// ErrTimeout, ErrCredentials, ErrNotJSON keep their meaning).
var (
	ErrNotFound     = store.NewError(store.NotFound, "cloudinary has no such asset")            // destroy or delete_by_token answered "not found"
	ErrTokenRefused = store.NewError(store.TokenRefused, "cloudinary refused the delete token") // expired, unknown, or not a token
)

// RejectedError is Cloudinary's own 4xx about the file (not about the credentials or the rate),
// with its message, which is meant for whoever sent the file.
type RejectedError struct {
	Status  int
	Message string
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("cloudinary answered %d: %s", e.Status, e.Message)
}

// Unwrap makes a RejectedError an ErrRejected.
func (e *RejectedError) Unwrap() error { return ErrRejected }

// StoreKind makes a RejectedError a store.Refused, whose RefusalMessage is Cloudinary's.
func (e *RejectedError) StoreKind() store.Kind { return store.Refused }

// RefusalMessage is Cloudinary's message about the file, meant for whoever sent it.
func (e *RejectedError) RefusalMessage() string { return e.Message }
