package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"cloudinary-upload-api/internal/cloudinary"
	"cloudinary-upload-api/internal/store"
)

// signableAllowed are the upload parameters a client may be allowed to set (SIGNABLE_PARAMS may
// name only these): none of them chooses where a file goes, what it overwrites, what Cloudinary
// runs, pays for or calls back. public_id is kept inside the server's folder and never overwrites.
var signableAllowed = []string{
	"public_id", "tags", "context", "metadata", "display_name", "face_coordinates", "custom_coordinates",
}

// notSignableWhy says, for the parameters a newcomer is likely to try, why a client may not set them.
var notSignableWhy = map[string]string{
	"api_key":                              "is set by the server",
	"signature":                            "is set by the server",
	"timestamp":                            "is set by the server",
	"cloud_name":                           "is set by the server",
	"resource_type":                        "is set by the server",
	"return_delete_token":                  "is set by the server",
	"file":                                 "is the upload itself",
	"upload_preset":                        "is set by the server (UPLOAD_PRESET)",
	"folder":                               "chooses where the file goes (UPLOAD_FOLDER is the server's)",
	"asset_folder":                         "chooses where the file goes",
	"public_id_prefix":                     "chooses where the file goes",
	"use_asset_folder_as_public_id_prefix": "chooses where the file goes",
	"use_filename":                         "lets the client's file name choose the public_id, so one client can overwrite another's file",
	"unique_filename":                      "with use_filename, lets one client overwrite another's file",
	"filename_override":                    "chooses the public_id",
	"overwrite":                            "replaces other files",
	"invalidate":                           "purges other files from the CDN",
	"type":                                 "chooses the delivery type",
	"access_mode":                          "chooses who can see the file",
	"access_control":                       "chooses who can see the file",
	"notification_url":                     "makes Cloudinary call a URL of the client's choice",
	"eager_notification_url":               "makes Cloudinary call a URL of the client's choice",
	"callback":                             "makes Cloudinary redirect to a URL of the client's choice",
	"eval":                                 "runs code in Cloudinary",
	"on_success":                           "runs code in Cloudinary",
	"eager":                                "spends transformations on the account",
	"transformation":                       "rewrites the stored file",
	"proxy":                                "makes Cloudinary fetch through a host of the client's choice",
	"headers":                              "adds HTTP headers to the file's delivery",
}

var paramNameRE = regexp.MustCompile(`^[a-z][a-z_]{0,63}$`)

// parseSignableParams reads SIGNABLE_PARAMS: an allow-list, so that a parameter Cloudinary adds
// tomorrow is not signable until someone decides it is safe.
func parseSignableParams(raw string) ([]string, error) {
	var out []string
	var problems []error
	allowed := strings.Join(signableAllowed, ", ")
	for _, p := range splitList(strings.ToLower(raw)) {
		switch {
		case !paramNameRE.MatchString(p):
			problems = append(problems, fmt.Errorf("SIGNABLE_PARAMS: %q is not an upload parameter name", truncate(p, 64)))
		case notSignableWhy[p] != "":
			problems = append(problems, fmt.Errorf("SIGNABLE_PARAMS: %q is not for clients: it %s (a client may set: %s)", p, notSignableWhy[p], allowed))
		case !slices.Contains(signableAllowed, p):
			problems = append(problems, fmt.Errorf("SIGNABLE_PARAMS: %q is not one of the parameters a client may set: %s", p, allowed))
		case !slices.Contains(out, p):
			out = append(out, p)
		}
	}
	return out, errors.Join(problems...)
}

// signingConfig is what POST /sign needs; a nil signer means uploads do not go to Cloudinary.
type signingConfig struct {
	signer   *cloudinary.Signer // the one the uploads are signed with
	signable []string
	folder   string // UPLOAD_FOLDER; with sign-in on, a template holding {sub}
	signIn   bool
	preset   string
	resource string // resource_type in the upload URL: image when only images are allowed, else auto
	now      func() time.Time
}

const maxSignBody = 16 << 10

// signResponse is POST /sign's answer: everything a page needs to POST the file straight to Cloudinary.
type signResponse struct {
	Signature string            `json:"signature"`
	Timestamp int64             `json:"timestamp"`
	APIKey    string            `json:"api_key"`
	CloudName string            `json:"cloud_name"`
	UploadURL string            `json:"upload_url"`
	Params    map[string]string `json:"params"` // signed; send each as a form field, with file, api_key and signature
}

// handleSign serves POST /sign: it signs the parameters a client may choose, plus the server's own.
func handleSign(sc signingConfig) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store") // a signature is a short-lived credential
		if sc.signer == nil {
			writeError(w, r, errSignNeedsCloudinary)
			return
		}
		resp, err := sc.sign(w, r)
		if err != nil {
			writeError(w, r, err)
			return
		}
		if err := encode(w, http.StatusOK, resp); err != nil {
			loggerFrom(r.Context()).WarnContext(r.Context(), "write sign response", "err", err)
		}
	})
}

func (sc signingConfig) sign(w http.ResponseWriter, r *http.Request) (signResponse, error) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSignBody))
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr):
		return signResponse{}, errSignTooLarge
	case err != nil:
		return signResponse{}, fmt.Errorf("%w: %w", errBodyIncomplete, err)
	}
	requested := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(raw)) > 0 {
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			return signResponse{}, errSignNotJSON
		}
		if err := json.Unmarshal(raw, &requested); err != nil || requested == nil {
			return signResponse{}, errSignBadJSON
		}
	}
	params, err := sc.clientParams(requested)
	if err != nil {
		return signResponse{}, err
	}
	// The user's own folder, and who uploads, as for POST /upload.
	folder, uploadedBy := folderFor(r, sc.folder, sc.signIn)
	if folder != "" {
		params.Set("folder", folder)
	}
	if uploadedBy != "" {
		params.Set("context", cloudinary.AddContext(params.Get("context"), store.UploadedByKey, uploadedBy))
	}
	if sc.preset != "" {
		params.Set("upload_preset", sc.preset)
	}
	if params.Has("public_id") {
		params.Set("overwrite", "false") // as with /upload: a client must not replace someone else's file
	}
	now := sc.now()
	sig, err := sc.signer.Sign(params, now) // sets timestamp
	if err != nil {
		return signResponse{}, err
	}
	flat := make(map[string]string, len(params))
	for k := range params {
		flat[k] = params.Get(k)
	}
	return signResponse{
		Signature: sig,
		Timestamp: now.Unix(),
		APIKey:    sc.signer.APIKey(),
		CloudName: sc.signer.CloudName(),
		UploadURL: sc.signer.UploadURL(sc.resource),
		Params:    flat,
	}, nil
}

// clientParams checks each requested parameter against SIGNABLE_PARAMS and its own rules.
// Empty values are left out, as Cloudinary leaves them out of the string it signs.
func (sc signingConfig) clientParams(requested map[string]json.RawMessage) (url.Values, error) {
	names := make([]string, 0, len(requested))
	for k := range requested {
		names = append(names, k)
	}
	sort.Strings(names) // the first bad name is the same on every try
	params := url.Values{}
	for _, name := range names {
		if !slices.Contains(sc.signable, name) {
			return nil, errBadField("parameter %q cannot be signed (signable: %s)", truncate(name, 64), strings.Join(sc.signable, ", "))
		}
		value, err := signValue(name, requested[name])
		if err != nil {
			return nil, err
		}
		if value != "" {
			params.Set(name, value)
		}
	}
	return params, nil
}

// signValue turns one requested parameter into the string Cloudinary takes in its form:
// tags as a list or "a,b"; context as an object or "key=value|key=value"; anything else a string.
func signValue(name string, raw json.RawMessage) (string, error) {
	var s string
	switch name {
	case "tags":
		var list []string
		if json.Unmarshal(raw, &list) == nil {
			s = strings.Join(list, ",")
		} else if json.Unmarshal(raw, &s) != nil {
			return "", errBadField("tags must be a list of strings or a comma-separated string")
		}
	case "context":
		var obj map[string]string
		if json.Unmarshal(raw, &obj) == nil && obj != nil {
			s = encodeContext(obj)
		} else if json.Unmarshal(raw, &s) != nil {
			return "", errBadField("context must be an object of strings or a string key=value|key=value")
		}
	default:
		if json.Unmarshal(raw, &s) != nil {
			return "", errBadField("parameter %q must be a string", name)
		}
	}
	return clientParam(name, s)
}

// clientParam checks the value of one parameter a client chose, as the string Cloudinary takes
// in its form, and returns it cleaned: the one check for POST /sign and the fields of POST /upload.
func clientParam(name, s string) (string, error) {
	if strings.Contains(s, "&") {
		// Cloudinary signs "name=value&name=value…"; with signature_version=1 an '&' in a value is
		// signed as it is, so "alt=x&folder=admin" would be signed as two parameters, and the
		// signature would serve an upload that sends folder=admin on its own. Refused whatever the
		// version, so that no signature this server makes can be read two ways.
		return "", errBadField("parameter %q must not contain '&': Cloudinary's signature would read what follows as another parameter", name)
	}
	if name == "tags" {
		tags, err := parseTags(s)
		if err != nil {
			return "", err
		}
		return strings.Join(tags, ","), nil
	}
	s = strings.TrimSpace(s)
	if len(s) > maxFieldBytes || !utf8.ValidString(s) || strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return "", errBadField("parameter %q must be printable text of at most %d bytes", name, maxFieldBytes)
	}
	if name == "public_id" {
		if err := validatePublicID(s); err != nil {
			return "", err
		}
	}
	if name == "context" && cloudinary.ContextHasKey(s, store.UploadedByKey) {
		return "", errUploadedBy
	}
	return s, nil
}

// encodeContext writes Cloudinary's key=value|key=value, escaping '=' and '|' in values with '\'.
func encodeContext(obj map[string]string) string {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	esc := strings.NewReplacer(`\`, `\\`, `=`, `\=`, `|`, `\|`)
	pairs := make([]string, 0, len(keys))
	for _, k := range keys {
		pairs = append(pairs, esc.Replace(k)+"="+esc.Replace(obj[k]))
	}
	return strings.Join(pairs, "|")
}

// newSigningConfig builds what POST /sign needs, with the store's signer (nil: uploads go to
// the local store, and there is nothing to sign for).
func newSigningConfig(cfg config, signer *cloudinary.Signer, now func() time.Time) signingConfig {
	sc := signingConfig{
		signer:   signer,
		signable: cfg.signableParams,
		folder:   cfg.UploadFolder,
		signIn:   cfg.signIn.on(),
		preset:   cfg.UploadPreset,
		resource: "auto",
		now:      now,
	}
	if len(cfg.AllowedTypes) > 0 && !slices.ContainsFunc(cfg.AllowedTypes, func(t string) bool { return !strings.HasPrefix(t, "image/") }) {
		sc.resource = "image"
	}
	return sc
}
