package auth_test

import (
	"context"
	"testing"
	"time"

	"cloudinary-upload-api/internal/auth"
	"cloudinary-upload-api/internal/auth/authtest"
)

// BenchmarkVerify is what checking the sign-in token costs each upload, by algorithm, with the
// keys already loaded (the usual case: the JWKS is fetched hourly, not per request).
//
//	go test -run '^$' -bench BenchmarkVerify -benchmem ./internal/auth/
func BenchmarkVerify(b *testing.B) {
	idp := authtest.New(b)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	v, err := auth.New(ctx, auth.Config{JWKSURL: idp.URL(), Issuer: testIss, Audience: testAud, Secret: testSecret})
	if err != nil {
		b.Fatal(err)
	}
	claims := authtest.Claims("auth0|abc", testIss, testAud, time.Hour)
	for _, tc := range []struct{ name, token string }{
		{"RS256", authtest.Mint(b, idp.Key(b, "RS256"), claims)},
		{"ES256", authtest.Mint(b, idp.Key(b, "ES256"), claims)},
		{"EdDSA", authtest.Mint(b, idp.Key(b, "EdDSA"), claims)},
		{"HS256", authtest.MintHS256(b, testSecret, claims)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(context.Background(), tc.token); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
