package cloudinary

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cloudinary/cloudinary-go/v2/api"
	cldconfig "github.com/cloudinary/cloudinary-go/v2/config"
)

// DefaultUploadPrefix is where uploads go when the credentials name no upload_prefix.
const DefaultUploadPrefix = "https://api.cloudinary.com"

// Signer signs upload parameters as Cloudinary checks them, and says where an upload goes. It
// is the one place that knows the algorithm, the version and the upload URL: the Client's
// requests and the server's POST /sign both use it.
type Signer struct {
	creds     *Credentials
	prefix    string // upload_prefix without a trailing slash
	algorithm string // sha1 or sha256
	version   int    // 1 or 2
}

// newSigner (for New, which makes the one Signer of a Client) reads the signing algorithm and version from the credentials' query parameters,
// with the SDK's defaults (SHA-1, version 2). CheckSigningParams says whether they are valid;
// an invalid one is read as the SDK reads it.
func newSigner(c *Credentials) *Signer {
	cloud := cldconfig.Cloud{SignatureAlgorithm: c.Params.Get("signature_algorithm")}
	cloud.SignatureVersion, _ = strconv.Atoi(c.Params.Get("signature_version")) // 0 when unset: the SDK's default
	prefix := c.Params.Get("upload_prefix")
	if prefix == "" {
		prefix = DefaultUploadPrefix
	}
	return &Signer{
		creds:     c,
		prefix:    strings.TrimRight(prefix, "/"),
		algorithm: cloud.GetSignatureAlgorithm(),
		version:   cloud.GetSignatureVersion(),
	}
}

// Algorithm is the signature algorithm, sha1 or sha256.
func (s *Signer) Algorithm() string { return s.algorithm }

// Version is the signature version, 1 or 2.
func (s *Signer) Version() int { return s.version }

// APIKey is the key that goes with each signature, as the api_key field.
func (s *Signer) APIKey() string { return s.creds.APIKey }

// CloudName is the cloud the uploads go to.
func (s *Signer) CloudName() string { return s.creds.CloudName }

// UploadURL is where an upload of the resource type (auto, image, video, raw) is posted:
// {upload_prefix}/v1_1/{cloud}/{resource}/upload, as the SDK builds it.
func (s *Signer) UploadURL(resource string) string {
	return fmt.Sprintf("%s/%s/%s/upload", api.BaseURL(s.prefix, ""), s.creds.CloudName, resource)
}

// ActionURL is where an Upload API action other than upload (destroy, …) on the resource type
// (image, video, raw) is posted: {upload_prefix}/v1_1/{cloud}/{resource}/{action}.
func (s *Signer) ActionURL(resource, action string) string {
	return fmt.Sprintf("%s/%s/%s/%s", api.BaseURL(s.prefix, ""), s.creds.CloudName, resource, action)
}

// DeleteByTokenURL is where delete_by_token is posted: {upload_prefix}/v1_1/{cloud}/delete_by_token,
// with no resource type (as Cloudinary's Java SDK builds it).
func (s *Signer) DeleteByTokenURL() string {
	return fmt.Sprintf("%s/%s/delete_by_token", api.BaseURL(s.prefix, ""), s.creds.CloudName)
}

// Sign sets params' timestamp to now and returns the signature of params, with the SDK's
// signing function. Empty values are left out of what is signed, as Cloudinary leaves them out.
// The caller sends the signature and the api_key beside params.
//
// A value with '&' is never signed: signature version 1 does not escape it, so such a signature
// would also serve an upload that sends what follows the '&' as a parameter of its own.
func (s *Signer) Sign(params url.Values, now time.Time) (string, error) {
	for name, values := range params {
		for _, v := range values {
			if strings.Contains(v, "&") {
				return "", fmt.Errorf("%w: the value of %q has an '&'", ErrUnsignable, name)
			}
		}
	}
	params.Set("timestamp", strconv.FormatInt(now.Unix(), 10))
	sig, err := api.SignParametersUsingAlgoAndVersion(params, string(s.creds.APISecret), s.algorithm, s.version)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return sig, nil
}
