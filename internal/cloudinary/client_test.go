package cloudinary

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cloudinary/cloudinary-go/v2/api"
)

// readAnswer sorts what Cloudinary may answer into a result or this package's errors.
func TestReadAnswer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   error // nil: the body is the result
	}{
		{"result", 200, ` {"public_id":"x","bytes":3}` + "\n", nil},
		{"error with 400", 400, `{"error":{"message":"Invalid image file"}}`, ErrRejected},
		{"bad signature", 401, `{"error":{"message":"Invalid Signature abc"}}`, ErrCredentials},
		{"rate limited", 420, `{"error":{"message":"Rate Limit Exceeded"}}`, ErrRateLimited},
		{"edge's HTML 502", 502, `<html><body>Bad Gateway</body></html>`, ErrFailed},
		{"HTML with 200", 200, `<html></html>`, ErrNotJSON},
		{"JSON that is not an object", 200, `[1,2]`, ErrNotJSON},
		{"500 without a message", 500, `{}`, ErrFailed},
		{"answer too long", 200, `{"a":"` + strings.Repeat("x", maxAnswer) + `"}`, ErrNotJSON},
	} {
		resp := &http.Response{StatusCode: tc.status, Body: io.NopCloser(strings.NewReader(tc.body))}
		got, err := readAnswer(resp)
		switch {
		case tc.want == nil && (err != nil || string(got) != strings.TrimSpace(tc.body)):
			t.Errorf("%s: %s, %v; want the body as it came", tc.name, got, err)
		case tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("%s: %v; want %v", tc.name, err, tc.want)
		}
	}
	_, err := readAnswer(&http.Response{StatusCode: 400, Body: io.NopCloser(strings.NewReader(`{"error":{"message":"Invalid image file"}}`))})
	var rejected *RejectedError
	if !errors.As(err, &rejected) || rejected.Message != "Invalid image file" || rejected.Status != 400 {
		t.Errorf("400: %#v, want a RejectedError with Cloudinary's message", err)
	}
}

func TestParseURL(t *testing.T) {
	t.Parallel()
	c, err := ParseURL("cloudinary://key:s3cret@cloud?upload_prefix=http%3A%2F%2F127.0.0.1%3A9")
	if err != nil {
		t.Fatal(err)
	}
	if c.CloudName != "cloud" || c.APIKey != "key" || c.APISecret != "s3cret" || c.Params.Get("upload_prefix") != "http://127.0.0.1:9" {
		t.Errorf("got %+v", c)
	}
	for _, bad := range []string{"https://key:s3cret@cloud", "cloudinary://key@cloud", "cloudinary://:s3cret@cloud", "cloudinary://key:s3cret@", "cloudinary://key:s3cret@cloud?upload_prefix=ftp://x", "cloudinary://key:s3cret@cloud%zz"} {
		_, err := ParseURL(bad)
		if err == nil {
			t.Errorf("%s: accepted", bad)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the error quotes the secret: %v", bad, err)
		}
	}
}

// The signer signs with the algorithm and version of the URL, and builds the upload URL of each resource type.
func TestSigner(t *testing.T) {
	t.Parallel()
	c, err := ParseURL("cloudinary://key:secret@cloud?upload_prefix=https%3A%2F%2Fapi.example.com%2F&signature_algorithm=sha256&signature_version=1")
	if err != nil {
		t.Fatal(err)
	}
	s := NewSigner(c)
	if s.Algorithm() != "sha256" || s.Version() != 1 {
		t.Errorf("algorithm %s version %d, want sha256 and 1", s.Algorithm(), s.Version())
	}
	if got, want := s.UploadURL("image"), "https://api.example.com/v1_1/cloud/image/upload"; got != want {
		t.Errorf("UploadURL = %s, want %s", got, want)
	}
	d := NewSigner(&Credentials{CloudName: "c", APIKey: "k", APISecret: "s"})
	if d.Algorithm() != "sha1" || d.Version() != 2 || d.UploadURL("auto") != "https://api.cloudinary.com/v1_1/c/auto/upload" {
		t.Errorf("defaults: %s %d %s", d.Algorithm(), d.Version(), d.UploadURL("auto"))
	}
}

// No version signs a value with '&': with version 1 the signature of {context: "a=x&folder=y"} is
// that of {context: "a=x", folder: "y"}, which the signer shows here before refusing the first.
func TestSignerRefusesAmpersand(t *testing.T) {
	t.Parallel()
	now := time.Unix(1700000000, 0)
	for _, version := range []string{"1", "2"} {
		c, err := ParseURL("cloudinary://key:secret@cloud?signature_version=" + version)
		if err != nil {
			t.Fatal(err)
		}
		s := NewSigner(c)
		_, err = s.Sign(url.Values{"context": {"alt=x&folder=admin"}}, now)
		if !errors.Is(err, ErrUnsignable) {
			t.Errorf("version %s: err = %v, want ErrUnsignable", version, err)
		}
		if _, err := s.Sign(url.Values{"context": {"alt=x"}, "folder": {"admin"}}, now); err != nil {
			t.Errorf("version %s: %v", version, err)
		}
	}
	// Why: version 1 reads the two the same.
	v1 := url.Values{"context": {"alt=x&folder=admin"}, "timestamp": {"1700000000"}}
	apart := url.Values{"context": {"alt=x"}, "folder": {"admin"}, "timestamp": {"1700000000"}}
	a, err1 := api.SignParametersUsingAlgoAndVersion(v1, "secret", "sha1", 1)
	b, err2 := api.SignParametersUsingAlgoAndVersion(apart, "secret", "sha1", 1)
	if err1 != nil || err2 != nil || a != b {
		t.Errorf("version 1 signs them apart (%s, %s; %v %v): the refusal is not needed", a, b, err1, err2)
	}
}
