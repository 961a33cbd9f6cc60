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
}

// Each mistake people make with a CLOUDINARY_URL has its own message, naming the part that is
// wrong, never quoting the secret.
func TestParseURLMistakes(t *testing.T) {
	t.Parallel()
	const sec = "s3cret-Qx7"
	for _, tc := range []struct{ name, raw, want string }{
		{"no_secret", "cloudinary://123456789012345@cloud", "has no API secret"},
		{"empty_secret", "cloudinary://123456789012345:@cloud", "has no API secret"},
		{"no_key", "cloudinary://:" + sec + "@cloud", "has no API key"},
		{"https", "https://123456789012345:" + sec + "@cloud", "is a web address (https://)"},
		{"no_scheme", "123456789012345:" + sec + "@cloud", "does not start with cloudinary://"},
		{"pasted_line", "CLOUDINARY_URL=cloudinary://123456789012345:" + sec + "@cloud", `starts with "CLOUDINARY_URL="`},
		{"key_placeholder", "cloudinary://<your_api_key>:" + sec + "@cloud", "the API key is still the console's placeholder"},
		{"secret_placeholder", "cloudinary://123456789012345:<your_api_secret>@cloud", "the API secret is still the console's placeholder"},
		{"space_in_secret", "cloudinary://123456789012345:s3cret Qx7@cloud", "the API secret contains a space"},
		{"empty_cloud_name", "cloudinary://123456789012345:" + sec + "@", "has no cloud name"},
		{"no_credentials", "cloudinary://cloud", `has no "API_KEY:API_SECRET@"`},
		{"quoted", `"cloudinary://123456789012345:` + sec + `@cloud"`, "is in quotes"},
		{"bad_escape", "cloudinary://123456789012345:" + sec + "@cloud%zz", "is not a well-formed URL"},
		{"bad_upload_prefix", "cloudinary://123456789012345:" + sec + "@cloud?upload_prefix=ftp://x", "upload_prefix is not an http(s) URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseURL(tc.raw)
			if err == nil {
				t.Fatalf("%s: accepted", tc.name)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q, want it to say %q", msg, tc.want)
			}
			for _, leak := range []string{sec, "s3cret Qx7", "s3cret"} {
				if strings.Contains(msg, leak) {
					t.Errorf("the error quotes the secret: %q", msg)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("the error is more than one line: %q", msg)
			}
		})
	}
	// Each message is its own: two mistakes never share one (the rows with the same want aside).
	seen := map[string]string{}
	for _, raw := range []string{"cloudinary://k@c", "cloudinary://:s@c", "https://k:s@c", "k:s@c", "CLOUDINARY_URL=cloudinary://k:s@c",
		"cloudinary://<your_api_key>:s@c", "cloudinary://k:<your_api_secret>@c", "cloudinary://k:s s@c", "cloudinary://k:s@", "cloudinary://c", `"cloudinary://k:s@c"`} {
		_, err := ParseURL(raw)
		if err == nil {
			t.Fatalf("%s: accepted", raw)
		}
		if other, ok := seen[err.Error()]; ok {
			t.Errorf("%s and %s get the same message %q", other, raw, err)
		}
		seen[err.Error()] = raw
	}
}

// The signer signs with the algorithm and version of the URL, and builds the upload URL of each resource type.
func TestSigner(t *testing.T) {
	t.Parallel()
	c, err := ParseURL("cloudinary://key:secret@cloud?upload_prefix=https%3A%2F%2Fapi.example.com%2F&signature_algorithm=sha256&signature_version=1")
	if err != nil {
		t.Fatal(err)
	}
	s := newSigner(c)
	if s.Algorithm() != "sha256" || s.Version() != 1 {
		t.Errorf("algorithm %s version %d, want sha256 and 1", s.Algorithm(), s.Version())
	}
	if got, want := s.UploadURL("image"), "https://api.example.com/v1_1/cloud/image/upload"; got != want {
		t.Errorf("UploadURL = %s, want %s", got, want)
	}
	d := newSigner(&Credentials{CloudName: "c", APIKey: "k", APISecret: "s"})
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
		s := newSigner(c)
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
