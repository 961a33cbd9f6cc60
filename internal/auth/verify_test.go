package auth_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"cloudinary-upload-api/internal/auth"
	"cloudinary-upload-api/internal/auth/authtest"
)

const (
	testIss = "https://issuer.example/"
	testAud = "uploads"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

func newVerifier(t *testing.T, cfg auth.Config) *auth.Verifier {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	v, err := auth.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerify(t *testing.T) {
	idp := authtest.New(t)
	v := newVerifier(t, auth.Config{JWKSURL: idp.URL(), Issuer: testIss, Audience: testAud, Secret: testSecret})
	good := func() jwt.MapClaims { return authtest.Claims("auth0|abc", testIss, testAud, 5*time.Minute) }
	rsaKey := idp.Key(t, "RS256")
	pub, err := x509.MarshalPKIXPublicKey(rsaKey.Private.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	with := func(edit func(jwt.MapClaims)) jwt.MapClaims { c := good(); edit(c); return c }
	other := idp.NewKey(t, "RS256")
	other.KID = rsaKey.KID // signed by a key that is not the one its kid names

	for _, tc := range []struct {
		name  string
		token string
		want  error
	}{
		{"RS256", authtest.Mint(t, rsaKey, good()), nil},
		{"ES256", authtest.Mint(t, idp.Key(t, "ES256"), good()), nil},
		{"EdDSA", authtest.Mint(t, idp.Key(t, "EdDSA"), good()), nil},
		{"HS256 with the secret", authtest.MintHS256(t, testSecret, good()), nil},
		{"expired within the leeway", authtest.Mint(t, rsaKey, with(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-30 * time.Second).Unix() })), nil},
		{"no token", "", auth.ErrNoToken},
		{"not a JWT", "abc.def", auth.ErrMalformed},
		{"expired", authtest.Mint(t, rsaKey, with(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-2 * time.Minute).Unix() })), auth.ErrExpired},
		{"not yet valid", authtest.Mint(t, rsaKey, with(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(5 * time.Minute).Unix() })), auth.ErrNotYetValid},
		{"no exp", authtest.Mint(t, rsaKey, with(func(c jwt.MapClaims) { delete(c, "exp") })), auth.ErrMissingClaim},
		{"no sub", authtest.Mint(t, rsaKey, with(func(c jwt.MapClaims) { delete(c, "sub") })), auth.ErrMissingClaim},
		{"wrong issuer", authtest.Mint(t, rsaKey, with(func(c jwt.MapClaims) { c["iss"] = "https://evil.example/" })), auth.ErrIssuer},
		{"wrong audience", authtest.Mint(t, rsaKey, with(func(c jwt.MapClaims) { c["aud"] = "other" })), auth.ErrAudience},
		{"bad signature", authtest.Mint(t, other, good()), auth.ErrBadSignature},
		{"alg none", authtest.MintNone(t, good()), auth.ErrAlgorithm},
		{"HS256 with the JWKS public key", authtest.MintHS256(t, pubPEM, good()), auth.ErrBadSignature},
		{"HS256 with another secret", authtest.MintHS256(t, []byte("another-secret-another-secret-xx"), good()), auth.ErrBadSignature},
		{"ES256 alg on an RSA kid", authtest.Mint(t, authtest.Key{KID: rsaKey.KID, Method: jwt.SigningMethodES256, Private: idp.Key(t, "ES256").Private}, good()), auth.ErrUnknownKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := v.Verify(context.Background(), tc.token)
			if tc.want == nil {
				if err != nil || u.Subject != "auth0|abc" {
					t.Fatalf("Verify = %+v, %v", u, err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify error = %v, want %v", err, tc.want)
			}
		})
	}
}

// Without AUTH_JWT_SECRET, HS256 is refused whatever its key: a JWKS public key is never a secret.
func TestVerifyHS256WithoutSecret(t *testing.T) {
	idp := authtest.New(t)
	v := newVerifier(t, auth.Config{JWKSURL: idp.URL()})
	rsaKey := idp.Key(t, "RS256")
	pub, err := x509.MarshalPKIXPublicKey(rsaKey.Private.Public())
	if err != nil {
		t.Fatal(err)
	}
	tok := authtest.MintHS256(t, pub, authtest.Claims("u", "", "", time.Minute))
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, auth.ErrAlgorithm) {
		t.Fatalf("Verify = %v, want ErrAlgorithm", err)
	}
	// and a secret-only verifier refuses every JWKS algorithm
	vs := newVerifier(t, auth.Config{Secret: testSecret})
	if _, err := vs.Verify(context.Background(), authtest.Mint(t, rsaKey, authtest.Claims("u", "", "", time.Minute))); !errors.Is(err, auth.ErrAlgorithm) {
		t.Fatalf("Verify = %v, want ErrAlgorithm", err)
	}
}

// A rotated key is fetched on its first use; a kid that is still unknown after the refresh
// does not make the next token fetch again within the minute.
func TestVerifyRotation(t *testing.T) {
	idp := authtest.New(t)
	v := newVerifier(t, auth.Config{JWKSURL: idp.URL()})
	before := idp.Fetches.Load()
	next := idp.NewKey(t, "ES256")
	idp.Serve(next)
	if u, err := v.Verify(context.Background(), authtest.Mint(t, next, authtest.Claims("u", "", "", time.Minute))); err != nil || u.Subject != "u" {
		t.Fatalf("rotated key: %+v, %v", u, err)
	}
	if got := idp.Fetches.Load() - before; got != 1 {
		t.Fatalf("JWKS fetched %d times for the rotated key, want 1", got)
	}
	stranger := idp.NewKey(t, "ES256")
	for range 3 {
		if _, err := v.Verify(context.Background(), authtest.Mint(t, stranger, authtest.Claims("u", "", "", time.Minute))); !errors.Is(err, auth.ErrUnknownKey) {
			t.Fatalf("unknown kid: %v, want ErrUnknownKey", err)
		}
	}
	if got := idp.Fetches.Load() - before; got != 1 {
		t.Fatalf("JWKS fetched %d times in all, want 1: unknown kids refresh at most once a minute", got)
	}
}

// A JWKS that is down at start-up is not an error; tokens get ErrKeysUnavailable until it is up.
func TestVerifyJWKSDownAtStart(t *testing.T) {
	idp := authtest.New(t)
	idp.SetDown(true)
	warned := make(chan error, 16)
	v := newVerifier(t, auth.Config{JWKSURL: idp.URL(), Warn: func(_ context.Context, _ string, err error) {
		select {
		case warned <- err:
		default:
		}
	}})
	select {
	case <-warned:
	default:
		t.Fatal("no warning about the JWKS")
	}
	tok := authtest.Mint(t, idp.Key(t, "RS256"), authtest.Claims("u", "", "", time.Minute))
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, auth.ErrKeysUnavailable) {
		t.Fatalf("Verify = %v, want ErrKeysUnavailable", err)
	}
	idp.SetDown(false)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("once up: %v", err)
	}
}

func TestCheckJWKSURL(t *testing.T) {
	for raw, ok := range map[string]bool{
		"https://x.auth0.com/.well-known/jwks.json": true,
		"http://127.0.0.1:8080/jwks":                true,
		"http://localhost/jwks":                     true,
		"http://[::1]/jwks":                         true,
		"http://example.com/jwks":                   false,
		"ftp://example.com/jwks":                    false,
		"/jwks":                                     false,
		"https://user:pw@example.com/jwks":          false,
	} {
		if err := auth.CheckJWKSURL(raw); (err == nil) != ok {
			t.Errorf("CheckJWKSURL(%q) = %v", raw, err)
		}
	}
}

// A verified token is remembered: the same token again is not checked in full (its key being
// gone from the JWKS does not matter), until it expires, with the leeway, or for a minute at most.
func TestVerifyCache(t *testing.T) {
	idp := authtest.New(t)
	start := time.Now()
	now := start
	v := newVerifier(t, auth.Config{JWKSURL: idp.URL(), Now: func() time.Time { return now }})
	key := idp.Key(t, "ES256")
	short := authtest.Mint(t, key, jwt.MapClaims{"sub": "u", "exp": start.Add(-50 * time.Second).Unix()}) // valid by the leeway for 10 s more
	long := authtest.Mint(t, key, jwt.MapClaims{"sub": "u", "exp": start.Add(time.Hour).Unix()})
	for _, tok := range []string{short, long} {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	// The key leaves the JWKS, and a token of an unknown kid makes the verifier fetch it again.
	idp.Serve(idp.NewKey(t, "ES256"))
	if _, err := v.Verify(context.Background(), authtest.Mint(t, idp.NewKey(t, "ES256"), jwt.MapClaims{"sub": "x", "exp": start.Add(time.Hour).Unix()})); !errors.Is(err, auth.ErrUnknownKey) {
		t.Fatalf("unknown kid: %v", err)
	}
	now = start.Add(55 * time.Second)
	if u, err := v.Verify(context.Background(), long); err != nil || u.Subject != "u" {
		t.Errorf("long within the minute, from the cache: %+v %v", u, err)
	}
	now = start.Add(15 * time.Second)
	if _, err := v.Verify(context.Background(), short); !errors.Is(err, auth.ErrUnknownKey) && !errors.Is(err, auth.ErrExpired) {
		t.Errorf("short after exp+leeway: %v, want it checked in full (and refused)", err)
	}
	now = start.Add(61 * time.Second)
	if _, err := v.Verify(context.Background(), long); !errors.Is(err, auth.ErrUnknownKey) {
		t.Errorf("long after a minute: %v, want it checked in full: ErrUnknownKey", err)
	}
}

// With the cache off, every token is checked in full.
func TestVerifyNoCache(t *testing.T) {
	v := newVerifier(t, auth.Config{Secret: testSecret, CacheSize: -1})
	tok := authtest.MintHS256(t, testSecret, authtest.Claims("u", "", "", time.Minute))
	for range 2 {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
}
