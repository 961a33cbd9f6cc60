// Package authtest is an identity provider for tests: it makes RSA, ECDSA and Ed25519 keys,
// serves their public halves as a JWKS on a loopback httptest server (which can be taken down,
// brought back and rotated), and mints tokens signed with them, or with a shared secret.
package authtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// Key is a signing key of the provider, named by its kid.
type Key struct {
	KID     string
	Method  jwt.SigningMethod
	Private crypto.Signer
}

// Issuer serves a JWKS and mints tokens.
type Issuer struct {
	srv     *httptest.Server
	Fetches atomic.Int64 // GETs of the JWKS answered with keys

	mu     sync.Mutex
	served []Key
	down   bool
	n      int
}

// New starts a provider serving one key of each kind (RS256, ES256, EdDSA); it stops when the
// test ends.
func New(t testing.TB) *Issuer {
	t.Helper()
	i := &Issuer{}
	i.srv = httptest.NewServer(http.HandlerFunc(i.serveJWKS))
	t.Cleanup(i.srv.Close)
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		i.served = append(i.served, i.NewKey(t, alg))
	}
	return i
}

// URL is the JWKS's address (http on loopback).
func (i *Issuer) URL() string { return i.srv.URL + "/.well-known/jwks.json" }

// SetDown makes the JWKS answer 503 (true) or its keys (false).
func (i *Issuer) SetDown(down bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.down = down
}

// Key returns the first served key of alg.
func (i *Issuer) Key(t testing.TB, alg string) Key {
	t.Helper()
	i.mu.Lock()
	defer i.mu.Unlock()
	for _, k := range i.served {
		if k.Method.Alg() == alg {
			return k
		}
	}
	t.Fatalf("authtest: no served key of %s", alg)
	return Key{}
}

// NewKey makes a key of alg (RS256, PS256, ES256 or EdDSA) with a fresh kid, not served yet.
func (i *Issuer) NewKey(t testing.TB, alg string) Key {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case "RS256", "PS256":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("authtest: no keys for %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	i.mu.Lock()
	i.n++
	kid := "key-" + alg + "-" + string(rune('a'+i.n))
	i.mu.Unlock()
	return Key{KID: kid, Method: jwt.GetSigningMethod(alg), Private: priv}
}

// Serve replaces the served keys (a rotation).
func (i *Issuer) Serve(keys ...Key) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.served = keys
}

func (i *Issuer) serveJWKS(w http.ResponseWriter, r *http.Request) {
	i.mu.Lock()
	down, keys := i.down, i.served
	i.mu.Unlock()
	if down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	var set jwkset.JWKSMarshal
	for _, k := range keys {
		jwk, err := jwkset.NewJWKFromKey(k.Private.Public(), jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{KID: k.KID, ALG: jwkset.ALG(k.Method.Alg()), USE: jwkset.UseSig},
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	i.Fetches.Add(1)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(set) // a test client that left is not the provider's problem
}

// Claims are a token's usual claims: sub, iss and aud when not empty, exp after ttl (before
// now when ttl is negative), iat now.
func Claims(sub, iss, aud string, ttl time.Duration) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{"iat": now.Unix(), "exp": now.Add(ttl).Unix()}
	if sub != "" {
		c["sub"] = sub
	}
	if iss != "" {
		c["iss"] = iss
	}
	if aud != "" {
		c["aud"] = aud
	}
	return c
}

// Mint signs claims with k, naming it by its kid.
func Mint(t testing.TB, k Key, claims jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(k.Method, claims)
	tok.Header["kid"] = k.KID
	s, err := tok.SignedString(k.Private)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// MintHS256 signs claims with a shared secret.
func MintHS256(t testing.TB, secret []byte, claims jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// MintNone is an unsigned token (alg "none"), which no verifier may accept.
func MintNone(t testing.TB, claims jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
