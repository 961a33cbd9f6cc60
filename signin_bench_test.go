package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"cloudinary-upload-api/internal/auth/authtest"
	"cloudinary-upload-api/internal/cloudinary"
)

// withHeader adds a header to every request, as a page's upload library does with its token.
type withHeader struct {
	next        http.RoundTripper
	name, value string
}

func (h withHeader) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(h.name, h.value)
	return h.next.RoundTrip(r)
}

// BenchmarkUploadSignIn is the cost per upload of sign-in: one 100 KB upload through the real
// handler and SDK adapter with sign-in off ("off") and on, with the same HS256 token on every
// request ("hs256"; verified once, then remembered), as a page that uploads many files sends it.
//
//	go test -run '^$' -bench BenchmarkUploadSignIn -benchmem -count=5 .
func BenchmarkUploadSignIn(b *testing.B) {
	up := lightUpstream(b)
	form := newBenchForm(b, 100_000)
	token := authtest.MintHS256(b, []byte(testJWTSecret), authtest.Claims("auth0|bench", "", "", time.Hour))
	for _, on := range []bool{false, true} {
		cfg := testConfig()
		name := "off"
		if on {
			cfg.signIn = signInConfig{secret: testJWTSecret}
			cfg.UploadFolder = userFolderTemplate("")
			ctx, cancel := context.WithCancel(context.Background())
			b.Cleanup(cancel)
			if err := cfg.signIn.start(ctx, discardLogger()); err != nil {
				b.Fatal(err)
			}
			name = "hs256"
		}
		sdkUp, err := cloudinary.New(&cloudinary.Credentials{CloudName: "demo", APIKey: "k", APISecret: "s",
			Params: url.Values{"upload_prefix": {up.URL}}}, cfg.cloudinaryOptions())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(sdkUp.CloseIdleConnections)
		srv := httptest.NewServer(newServer(discardLogger(), cfg, cloudinaryStorage(sdkUp), newHealthState()))
		b.Cleanup(srv.Close)
		tr := &http.Transport{}
		b.Cleanup(tr.CloseIdleConnections)
		client := &http.Client{Transport: withHeader{tr, "Authorization", "Bearer " + token}}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				form.post(b, client, srv.URL+"/upload")
			}
		})
	}
}
