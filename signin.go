package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"cloudinary-upload-api/internal/auth"
	envconfig "cloudinary-upload-api/internal/config"
)

// signInConfig is sign-in with tokens from an identity provider (AUTH_JWKS_URL) or the app's own
// backend (AUTH_JWT_SECRET). run starts the verifier; loadConfig only checks the variables.
type signInConfig struct {
	jwksURL  string
	issuer   string
	audience string
	secret   secret // AUTH_JWT_SECRET; empty: no HS256
	cookie   string // AUTH_COOKIE; empty: the Authorization header only

	verifier *auth.Verifier // set by start; nil while sign-in is off
}

// on reports whether uploads need a user's token (or one of UPLOAD_TOKENS).
func (s signInConfig) on() bool { return s.jwksURL != "" || s.secret != "" }

// scriptsFolder replaces {sub} for the uploads of scripts (UPLOAD_TOKENS) when sign-in is on:
// auth.FolderName never starts a name with "_s" ('_' is always followed by two upper-case hex
// digits), so no user's folder is ever the scripts' folder.
const scriptsFolder = "_scripts"

// loadSignIn checks the AUTH_ variables as set; its errors never quote the secret.
func loadSignIn(a envconfig.Auth) (signInConfig, error) {
	s := signInConfig{jwksURL: a.JWKSURL, issuer: a.Issuer, audience: a.Audience, secret: a.JWTSecret, cookie: a.Cookie}
	var problems []error
	if s.jwksURL != "" {
		if err := auth.CheckJWKSURL(s.jwksURL); err != nil {
			problems = append(problems, fmt.Errorf("AUTH_JWKS_URL=%q: %w", s.jwksURL, err))
		}
	}
	if s.secret != "" && len(s.secret) < auth.MinSecretBytes {
		problems = append(problems, fmt.Errorf("AUTH_JWT_SECRET: want at least %d bytes (try: openssl rand -hex 32)", auth.MinSecretBytes))
	}
	if s.cookie != "" && !validCookieName(s.cookie) {
		problems = append(problems, fmt.Errorf("AUTH_COOKIE=%q: want a cookie name", truncate(s.cookie, 64)))
	}
	if !s.on() {
		for _, v := range []struct{ name, value string }{{"AUTH_ISSUER", a.Issuer}, {"AUTH_AUDIENCE", a.Audience}, {"AUTH_COOKIE", a.Cookie}} {
			if v.value != "" {
				problems = append(problems, fmt.Errorf("%s is set but sign-in is off: set AUTH_JWKS_URL or AUTH_JWT_SECRET", v.name))
			}
		}
	}
	return s, errors.Join(problems...)
}

// validCookieName accepts RFC 6265's cookie-name (an RFC 7230 token).
func validCookieName(name string) bool {
	for _, c := range []byte(name) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return name != ""
}

// validateFolder checks UPLOAD_FOLDER: a folder path, where {sub} may stand for a whole or part
// of a name only when sign-in is on.
func validateFolder(folder string, signIn bool) error {
	if folder == "" {
		return nil
	}
	if strings.Contains(folder, auth.SubjectPlaceholder) && !signIn {
		return fmt.Errorf("UPLOAD_FOLDER=%q: %s is each user's folder, which needs sign-in: set AUTH_JWKS_URL or AUTH_JWT_SECRET", folder, auth.SubjectPlaceholder)
	}
	if validatePublicID(strings.ReplaceAll(folder, auth.SubjectPlaceholder, "x")) != nil {
		return fmt.Errorf("UPLOAD_FOLDER=%q: want a folder path of letters, digits, '-', '_', '.' and '/' (and %s with sign-in)", folder, auth.SubjectPlaceholder)
	}
	return nil
}

// userFolderTemplate is UPLOAD_FOLDER with sign-in on: each user has a folder of their own, so a
// template without {sub} gets users/{sub} below it.
func userFolderTemplate(folder string) string {
	switch {
	case folder == "":
		return "users/" + auth.SubjectPlaceholder
	case strings.Contains(folder, auth.SubjectPlaceholder):
		return folder
	}
	return folder + "/users/" + auth.SubjectPlaceholder
}

// start builds the verifier, whose background refresh of the JWKS ends with ctx. A JWKS that
// cannot be fetched now is a warning: uploads answer 503 until it can be.
func (s *signInConfig) start(ctx context.Context, logger *slog.Logger) error {
	if !s.on() {
		return nil
	}
	cfg := auth.Config{
		JWKSURL:  s.jwksURL,
		Issuer:   s.issuer,
		Audience: s.audience,
		Warn: func(ctx context.Context, msg string, err error) {
			logger.WarnContext(ctx, msg, "url", s.jwksURL, "err", err)
		},
	}
	if s.secret != "" {
		cfg.Secret = []byte(s.secret)
	}
	v, err := auth.New(ctx, cfg)
	if err != nil {
		return err // loadConfig has checked every value: not reached
	}
	s.verifier = v
	if !v.Loaded(ctx) {
		logger.Warn("sign-in keys are not available yet: uploads with a sign-in token answer 503 until AUTH_JWKS_URL can be fetched")
	}
	return nil
}

// folderFor is where an upload of r goes (the folder Cloudinary puts in front of its public
// id) and who it is uploaded by: the user's own folder and subject, or with sign-in on and no
// user (a script with one of UPLOAD_TOKENS) the scripts' folder; with sign-in off, UPLOAD_FOLDER.
func folderFor(r *http.Request, template string, signIn bool) (folder, uploadedBy string) {
	if u, ok := auth.FromContext(r.Context()); ok {
		return auth.Folder(template, u), u.Subject
	}
	if signIn {
		return strings.ReplaceAll(template, auth.SubjectPlaceholder, scriptsFolder), ""
	}
	return template, ""
}

// accessKey carries, in a request's context, why identify refused it (nil: it may go on).
type accessKey struct{}

// identify decides who a request is, before anything counts it: a script with one of
// UPLOAD_TOKENS, the user of a valid sign-in token (put in the context with auth.NewContext), or
// nobody with a reason. It answers nothing itself, so that limitRate counts a refused request
// against its address (guessing is limited too); requireAccess then answers the refusal.
func identify(tokens *tokenSet, s signInConfig, next http.Handler) http.Handler {
	if tokens == nil && !s.on() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := s.check(r, tokens)
		switch {
		case err != nil:
			r = r.WithContext(context.WithValue(r.Context(), accessKey{}, err))
		case u != nil:
			r = r.WithContext(auth.NewContext(r.Context(), *u))
		}
		next.ServeHTTP(w, r)
	})
}

// check returns the user of a valid sign-in token; nil and nil for a script with one of
// UPLOAD_TOKENS; else why the request may not go on.
func (s signInConfig) check(r *http.Request, tokens *tokenSet) (*auth.User, error) {
	header := r.Header.Get("Authorization")
	bearer, isBearer := bearerToken(header)
	if tokens != nil && isBearer && tokens.valid(bearer) {
		return nil, nil
	}
	if !s.on() {
		return nil, errUnauthorized // tokens != nil here
	}
	tok := bearer
	switch {
	case header != "" && !isBearer:
		return nil, fmt.Errorf("%w: Authorization is not Bearer <token>", auth.ErrMalformed)
	case header == "" && s.cookie != "":
		if c, err := r.Cookie(s.cookie); err == nil {
			tok = c.Value
		}
	}
	u, err := s.verifier.Verify(r.Context(), tok)
	if err != nil {
		return nil, err
	}
	if strings.Contains(u.Subject, "&") { // the signer refuses any value with '&' (see cloudinary.Signer.Sign)
		return nil, errTokenSubject
	}
	return &u, nil
}

// requireAccess answers a request that identify refused: 401 with WWW-Authenticate (RFC 6750
// §3), or 503 with Retry-After while the JWKS has never been loaded.
func requireAccess(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err, _ := r.Context().Value(accessKey{}).(error)
		if err == nil {
			next.ServeHTTP(w, r)
			return
		}
		api := accessError(err)
		switch {
		case api.status == http.StatusServiceUnavailable:
			w.Header().Set("Retry-After", retryAfterKeys)
		case errors.Is(err, auth.ErrNoToken), errors.Is(err, errUnauthorized):
			// No credentials at all: RFC 6750 §3.1 says no error code.
			w.Header().Set("WWW-Authenticate", `Bearer realm="uploads"`)
		default:
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="uploads", error="invalid_token", error_description=%q`, api.message))
		}
		refuseEarly(w, r, fmt.Errorf("%w: %w", api, err)) // at once, then drained: a browser still sending its file sees the answer, not a reset
	})
}

// retryAfterKeys is how long a client is told to wait while the JWKS cannot be fetched, in seconds.
const retryAfterKeys = "5"
