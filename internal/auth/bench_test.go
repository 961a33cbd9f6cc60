package auth_test

import (
	"context"
	"testing"
	"time"

	"cloudinary-upload-api/internal/auth"
	"cloudinary-upload-api/internal/auth/authtest"
)

// BenchmarkVerify is what checking the sign-in token costs each upload, by algorithm, with the
// keys already loaded (the usual case: the JWKS is fetched hourly, not per request): a token
// seen for the first time (the cache off), and the same token again (RS256-cached).
//
//	go test -run '^$' -bench BenchmarkVerify -benchmem ./internal/auth/
func BenchmarkVerify(b *testing.B) {
	idp := authtest.New(b)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	cfg := auth.Config{JWKSURL: idp.URL(), Issuer: testIss, Audience: testAud, Secret: testSecret, CacheSize: -1}
	v, err := auth.New(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	cfg.CacheSize = 0
	cached, err := auth.New(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	claims := authtest.Claims("auth0|abc", testIss, testAud, time.Hour)
	rs256 := authtest.Mint(b, idp.Key(b, "RS256"), claims)
	for _, tc := range []struct {
		name  string
		v     *auth.Verifier
		token string
	}{
		{"RS256", v, rs256},
		{"ES256", v, authtest.Mint(b, idp.Key(b, "ES256"), claims)},
		{"EdDSA", v, authtest.Mint(b, idp.Key(b, "EdDSA"), claims)},
		{"HS256", v, authtest.MintHS256(b, testSecret, claims)},
		{"RS256-cached", cached, rs256},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tc.v.Verify(context.Background(), tc.token); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
