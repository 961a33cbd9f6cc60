package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync/atomic"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// Why a token was refused: one value per reason, so that the HTTP layer can tell a developer
// what to fix. None of them quotes the token.
var (
	ErrNoToken         = errors.New("no sign-in token")
	ErrMalformed       = errors.New("the token is not a JSON Web Token")
	ErrAlgorithm       = errors.New("the token's signing algorithm is not accepted")
	ErrMissingClaim    = errors.New("the token lacks a required claim (exp and sub)")
	ErrExpired         = errors.New("the token has expired")
	ErrNotYetValid     = errors.New("the token is not valid yet (nbf)")
	ErrIssuer          = errors.New("the token's issuer (iss) is not AUTH_ISSUER")
	ErrAudience        = errors.New("the token's audience (aud) does not include AUTH_AUDIENCE")
	ErrUnknownKey      = errors.New("the token's key (kid) is not in the JWKS")
	ErrBadSignature    = errors.New("the token's signature does not verify")
	ErrKeysUnavailable = errors.New("the JWKS could not be loaded yet")
)

// Leeway is how far exp and nbf may be off, for clocks that disagree.
const Leeway = 60 * time.Second

// MinSecretBytes is the shortest AUTH_JWT_SECRET: HS256's key should be as long as its hash.
const MinSecretBytes = 32

// How a request may make the JWKS be fetched again when its token names a key not in it: at
// most once a minute, or four times a second while no key was ever loaded (the JWKS was down at
// start-up); and never waiting more than MaxKeyWait for it.
const (
	unknownKeyRefresh = time.Minute
	unloadedRefresh   = 250 * time.Millisecond
	MaxKeyWait        = time.Second
	backgroundRefresh = time.Hour
	startupFetch      = 5 * time.Second
)

// The algorithms each kind of key verifies: the token's alg must fit the key it names.
var (
	rsaAlgs     = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	ecdsaAlgs   = []string{"ES256", "ES384", "ES512"}
	ed25519Algs = []string{"EdDSA"}
)

// Config says which tokens a Verifier accepts. JWKSURL, Secret or both must be set.
type Config struct {
	JWKSURL  string // the identity provider's JWKS (AUTH_JWKS_URL); checked by CheckJWKSURL
	Issuer   string // when not empty, iss must equal it
	Audience string // when not empty, aud must contain it
	Secret   []byte // HS256 key (AUTH_JWT_SECRET), at least MinSecretBytes; nil: no HS256
	// Client fetches the JWKS; nil: a client with its own transport.
	Client *http.Client
	// Warn hears of a failed fetch of the JWKS (nil: nothing is told).
	Warn func(ctx context.Context, msg string, err error)
	// CacheSize is how many verified tokens are remembered (0: DefaultCacheSize; negative: none).
	CacheSize int
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Verifier checks sign-in tokens and says whose they are. It is safe for concurrent use.
type Verifier struct {
	cfg     Config
	jwks    keyfunc.Keyfunc // nil without JWKSURL
	limiter *rate.Limiter   // refreshes for unknown keys
	loaded  atomic.Bool     // some key was loaded from the JWKS once
	parser  *jwt.Parser
	cache   *tokenCache // nil: every token is checked in full
	now     func() time.Time
}

// CheckJWKSURL accepts an https URL, or an http one whose host is a loopback address or
// localhost (for development and tests): keys fetched in the clear could be replaced on the way.
func CheckJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil {
		return errors.New("want an https URL such as https://example.auth0.com/.well-known/jwks.json")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
			return nil
		}
		return errors.New("want https: plain http is accepted only for a loopback host")
	}
	return errors.New("want an https URL")
}

// New builds a Verifier. With a JWKS it fetches the keys once (for up to a few seconds) and then
// every hour in the background until ctx ends; a JWKS that cannot be fetched now is not an
// error (Warn hears of it): tokens are refused with ErrKeysUnavailable until it can be.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	if cfg.JWKSURL == "" && cfg.Secret == nil {
		return nil, errors.New("auth: neither a JWKS URL nor a secret")
	}
	if cfg.Secret != nil && len(cfg.Secret) < MinSecretBytes {
		return nil, fmt.Errorf("auth: the secret must be at least %d bytes", MinSecretBytes)
	}
	if cfg.Warn == nil {
		cfg.Warn = func(context.Context, string, error) {}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	v := &Verifier{cfg: cfg, limiter: rate.NewLimiter(rate.Every(unloadedRefresh), 1), cache: newTokenCache(cfg.CacheSize), now: cfg.Now}
	opts := []jwt.ParserOption{jwt.WithLeeway(Leeway), jwt.WithExpirationRequired(), jwt.WithTimeFunc(cfg.Now)}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	if cfg.JWKSURL == "" {
		return v, nil
	}
	if err := CheckJWKSURL(cfg.JWKSURL); err != nil {
		return nil, fmt.Errorf("auth: JWKS URL: %w", err)
	}
	client := cfg.Client
	if client == nil {
		// No keep-alive: fetches are hours apart (or a minute, for an unknown kid), and an idle
		// connection would outlive the Verifier.
		client = &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, TLSHandshakeTimeout: startupFetch, DisableKeepAlives: true}}
	}
	noErrorFirst := true
	jwks, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{cfg.JWKSURL}, keyfunc.Override{
		Client:                    client,
		HTTPTimeout:               startupFetch,
		NoErrorReturnFirstHTTPReq: &noErrorFirst,
		RateLimitWaitMax:          MaxKeyWait,
		RefreshInterval:           backgroundRefresh,
		RefreshUnknownKID:         v.limiter,
		RefreshErrorHandlerFunc: func(string) func(context.Context, error) {
			return func(ctx context.Context, err error) { cfg.Warn(ctx, "could not fetch the JWKS (AUTH_JWKS_URL)", err) }
		},
	})
	if err != nil {
		return nil, fmt.Errorf("auth: JWKS: %w", err)
	}
	v.jwks = jwks
	v.noteLoaded(ctx)
	return v, nil
}

// Loaded reports whether keys were ever loaded from the JWKS (true without a JWKS).
func (v *Verifier) Loaded(ctx context.Context) bool {
	return v.jwks == nil || v.noteLoaded(ctx)
}

// noteLoaded looks whether the JWKS holds keys now; the first time it does, refreshes for
// unknown keys slow down to one a minute.
func (v *Verifier) noteLoaded(ctx context.Context) bool {
	if v.loaded.Load() {
		return true
	}
	keys, err := v.jwks.Storage().KeyReadAll(ctx)
	if err != nil || len(keys) == 0 {
		return false
	}
	if v.loaded.CompareAndSwap(false, true) {
		v.limiter.SetLimit(rate.Every(unknownKeyRefresh))
	}
	return true
}

// Verify checks token (the compact JWS, without "Bearer ") and returns its user, or one of the
// Err values above, wrapping the library's error for the log. It waits at most MaxKeyWait for
// the JWKS when the token names a key it does not hold.
func (v *Verifier) Verify(ctx context.Context, token string) (User, error) {
	if token == "" {
		return User{}, ErrNoToken
	}
	now := v.now()
	key := sha256.Sum256([]byte(token))
	if sub, ok := v.cache.get(key, now); ok {
		return User{Subject: sub}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, MaxKeyWait)
	defer cancel()
	var claims jwt.RegisteredClaims
	_, err := v.parser.ParseWithClaims(token, &claims, v.keyfunc(ctx))
	if err != nil {
		return User{}, reason(err)
	}
	if claims.Subject == "" {
		return User{}, fmt.Errorf("%w: no sub", ErrMissingClaim)
	}
	until := now.Add(cacheTTL)
	if exp := claims.ExpiresAt.Add(Leeway); exp.Before(until) {
		until = exp
	}
	v.cache.put(key, claims.Subject, until, now)
	return User{Subject: claims.Subject}, nil
}

// keyfunc picks the key a token is verified with, by its alg: HS256 with the secret, every
// other accepted algorithm with the JWKS key it names, and then only if that key is of the
// kind the algorithm needs (so a JWKS public key is never used as an HMAC secret).
func (v *Verifier) keyfunc(ctx context.Context) jwt.Keyfunc {
	var fromJWKS jwt.Keyfunc
	if v.jwks != nil {
		fromJWKS = v.jwks.KeyfuncCtx(ctx)
	}
	return func(t *jwt.Token) (any, error) {
		alg := t.Method.Alg()
		if alg == jwt.SigningMethodHS256.Alg() {
			if v.cfg.Secret == nil {
				return nil, fmt.Errorf("%w: HS256 needs AUTH_JWT_SECRET", ErrAlgorithm)
			}
			return v.cfg.Secret, nil
		}
		if fromJWKS == nil || !slices.Contains(rsaAlgs, alg) && !slices.Contains(ecdsaAlgs, alg) && !slices.Contains(ed25519Algs, alg) {
			return nil, fmt.Errorf("%w: %q", ErrAlgorithm, alg)
		}
		key, err := fromJWKS(t)
		if err != nil {
			return nil, v.keyError(ctx, err)
		}
		if !keyFits(key, alg) {
			return nil, fmt.Errorf("%w: %q with a key of type %T", ErrAlgorithm, alg, key)
		}
		return key, nil
	}
}

// keyFits reports whether key is of the kind alg verifies with.
func keyFits(key any, alg string) bool {
	switch key.(type) {
	case *rsa.PublicKey:
		return slices.Contains(rsaAlgs, alg)
	case *ecdsa.PublicKey:
		return slices.Contains(ecdsaAlgs, alg)
	case ed25519.PublicKey:
		return slices.Contains(ed25519Algs, alg)
	}
	return false
}

// keyError explains why the JWKS gave no key: none was ever loaded, or none under the token's
// kid (after the one refresh allowed, or while waiting for it was not) and fitting its alg.
func (v *Verifier) keyError(ctx context.Context, err error) error {
	if !v.noteLoaded(context.WithoutCancel(ctx)) {
		return fmt.Errorf("%w: %w", ErrKeysUnavailable, err)
	}
	return fmt.Errorf("%w: %w", ErrUnknownKey, err)
}

// reason maps the library's errors to ours, the first that applies; a signature is checked
// before the claims, so an expired token with a bad signature is a bad signature.
func reason(err error) error {
	for _, e := range []error{ErrKeysUnavailable, ErrUnknownKey, ErrAlgorithm} {
		if errors.Is(err, e) {
			return err
		}
	}
	var r error
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		r = ErrMalformed
	case errors.Is(err, jwt.ErrTokenUnverifiable): // alg absent or unknown
		r = ErrAlgorithm
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		r = ErrBadSignature
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		r = ErrMissingClaim
	case errors.Is(err, jwt.ErrTokenExpired):
		r = ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		r = ErrNotYetValid
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		r = ErrIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		r = ErrAudience
	default: // a claim of the wrong type, iat in the future
		r = ErrMalformed
	}
	return fmt.Errorf("%w: %w", r, err)
}
