package main

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"cloudinary-upload-api/internal/auth"
	"cloudinary-upload-api/internal/auth/authtest"
	"cloudinary-upload-api/internal/ratelimit/redistest"
	"cloudinary-upload-api/internal/store"
)

const (
	testIssuer   = "https://idp.example/"
	testAudience = "upload-api"
)

// testJWTSecret is an AUTH_JWT_SECRET of 32 bytes.
const testJWTSecret = "s3cret-s3cret-s3cret-s3cret-0123"

// signInEnv is baseEnv with sign-in through idp's JWKS, iss and aud checked.
func signInEnv(t *testing.T, fake *fakeCloudinary, idp *authtest.Issuer) map[string]string {
	env := baseEnv(t, fake)
	env["AUTH_JWKS_URL"] = idp.URL()
	env["AUTH_ISSUER"] = testIssuer
	env["AUTH_AUDIENCE"] = testAudience
	return env
}

// goodClaims are a valid token's claims for sub.
func goodClaims(sub string) jwt.MapClaims {
	return authtest.Claims(sub, testIssuer, testAudience, 5*time.Minute)
}

// uploadAs posts a small PNG with fields to /upload, with Authorization: Bearer token unless token is empty.
func uploadAs(t *testing.T, c *http.Client, baseURL, token string, fields [][2]string) *http.Response {
	t.Helper()
	ct, body := multipartBody(t, fields, "me.png", testPNG(t, 4, 3))
	req, err := http.NewRequest(http.MethodPost, baseURL+"/upload", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST /upload: %v", err)
	}
	return resp
}

// uploadedBy is the answer's context.custom.uploaded_by, as Cloudinary answers it.
func uploadedBy(answer map[string]any) any {
	c, _ := answer["context"].(map[string]any)
	custom, _ := c["custom"].(map[string]any)
	return custom[store.UploadedByKey]
}

// A valid token of each kind of key uploads into the user's own folder, with uploaded_by set by
// the server, at the fake Cloudinary.
func TestSignInUploadIntoUsersFolder(t *testing.T) {
	fake := newFakeCloudinary(t)
	idp := authtest.New(t)
	srv := startServer(t, signInEnv(t, fake, idp))
	client := newClient(t)
	const sub = "auth0|abc_1"
	folder := "users/" + auth.FolderName(sub)
	if folder != "users/auth0_7Cabc_5F1" {
		t.Fatalf("folder %q", folder)
	}
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			tok := authtest.Mint(t, idp.Key(t, alg), goodClaims(sub))
			got := decodeOK(t, uploadAs(t, client, srv.url, tok, [][2]string{{"public_id", "avatar-" + alg}}), alg)
			if got["public_id"] != folder+"/avatar-"+alg {
				t.Errorf("public_id = %v, want it in %s", got["public_id"], folder)
			}
			if uploadedBy(got) != sub {
				t.Errorf("answer's context = %v, want uploaded_by %q", got["context"], sub)
			}
			up := fake.Uploads()[len(fake.Uploads())-1]
			if up.Params.Get("folder") != folder || up.Params.Get("context") != `uploaded_by=auth0\|abc_1` {
				t.Errorf("sent folder %q context %q", up.Params.Get("folder"), up.Params.Get("context"))
			}
		})
	}
	// A client's own uploaded_by is refused; its other context is kept beside the server's.
	tok := authtest.Mint(t, idp.Key(t, "RS256"), goodClaims(sub))
	var e apiErrorBody
	resp := uploadAs(t, client, srv.url, tok, [][2]string{{"context", "alt=x|uploaded_by=someone"}})
	decodeBody(t, resp, &e)
	if resp.StatusCode != http.StatusBadRequest || e.Error.Message != errUploadedBy.message {
		t.Errorf("client's uploaded_by: %d %q", resp.StatusCode, e.Error.Message)
	}
	got := decodeOK(t, uploadAs(t, client, srv.url, tok, [][2]string{{"context", "alt=a cat"}}), "context")
	if c := got["context"].(map[string]any)["custom"].(map[string]any); c["alt"] != "a cat" || c[store.UploadedByKey] != sub {
		t.Errorf("context = %v", c)
	}
}

// Each refused token gets 401 with its reason in the body and in WWW-Authenticate, never the token.
func TestSignInRefusals(t *testing.T) {
	fake := newFakeCloudinary(t)
	idp := authtest.New(t)
	srv := startServer(t, signInEnv(t, fake, idp))
	client := newClient(t)
	rsaKey := idp.Key(t, "RS256")
	der, err := x509.MarshalPKIXPublicKey(rsaKey.Private.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	edit := func(f func(jwt.MapClaims)) jwt.MapClaims { c := goodClaims("u1"); f(c); return c }
	impostor := idp.NewKey(t, "RS256")
	impostor.KID = rsaKey.KID

	for _, tc := range []struct {
		name, token string
		want        apiError
	}{
		{"no_token", "", errSignInRequired},
		{"not_a_jwt", "abcdefghijklmnop", errTokenMalformed},
		{"expired", authtest.Mint(t, rsaKey, edit(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() })), errTokenExpired},
		{"wrong_iss", authtest.Mint(t, rsaKey, edit(func(c jwt.MapClaims) { c["iss"] = "https://evil.example/" })), errTokenIssuer},
		{"wrong_aud", authtest.Mint(t, rsaKey, edit(func(c jwt.MapClaims) { c["aud"] = "another-api" })), errTokenAudience},
		{"bad_signature", authtest.Mint(t, impostor, goodClaims("u1")), errTokenBadSignature},
		{"alg_none", authtest.MintNone(t, goodClaims("u1")), errTokenAlgorithm},
		{"hs256_with_jwks_public_key", authtest.MintHS256(t, pubPEM, goodClaims("u1")), errTokenAlgorithm},
		{"unknown_kid", authtest.Mint(t, idp.NewKey(t, "ES256"), goodClaims("u1")), errTokenUnknownKey},
		{"no_sub", authtest.Mint(t, rsaKey, edit(func(c jwt.MapClaims) { delete(c, "sub") })), errTokenMissingClaim},
		{"sub_with_ampersand", authtest.Mint(t, rsaKey, goodClaims("a&b")), errTokenSubject},
		{"not_yet_valid", authtest.Mint(t, rsaKey, edit(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Hour).Unix() })), errTokenNotYetValid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(fake.Uploads())
			resp := uploadAs(t, client, srv.url, tc.token, nil)
			raw, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			var e apiErrorBody
			if err := json.Unmarshal(raw, &e); err != nil || resp.StatusCode != http.StatusUnauthorized || e.Error.Message != tc.want.message {
				t.Fatalf("%d %s, want 401 %q", resp.StatusCode, raw, tc.want.message)
			}
			www := resp.Header.Get("WWW-Authenticate")
			if tc.token == "" {
				if www != `Bearer realm="uploads"` {
					t.Errorf("WWW-Authenticate = %q: without a token, RFC 6750 §3.1 wants no error code", www)
				}
			} else if want := `Bearer realm="uploads", error="invalid_token", error_description="` + tc.want.message + `"`; www != want {
				t.Errorf("WWW-Authenticate = %q, want %q", www, want)
			}
			if tc.token != "" && (strings.Contains(string(raw), tc.token) || strings.Contains(www, tc.token)) {
				t.Error("the answer echoes the token")
			}
			if len(fake.Uploads()) != before {
				t.Error("a refused upload reached Cloudinary")
			}
		})
	}
	// /sign is behind the same door.
	resp := postSign(t, client, srv.url, "", `{}`)
	var e apiErrorBody
	decodeBody(t, resp, &e)
	if resp.StatusCode != http.StatusUnauthorized || e.Error.Message != errSignInRequired.message {
		t.Errorf("/sign without a token: %d %q", resp.StatusCode, e.Error.Message)
	}
}

// A key the JWKS did not hold at start-up is fetched on the first request that needs it.
func TestSignInRotatedKey(t *testing.T) {
	fake := newFakeCloudinary(t)
	idp := authtest.New(t)
	srv := startServer(t, signInEnv(t, fake, idp))
	next := idp.NewKey(t, "EdDSA")
	idp.Serve(next)
	decodeOK(t, uploadAs(t, newClient(t), srv.url, authtest.Mint(t, next, goodClaims("rotated")), nil), "rotated key")
}

// A JWKS down from the start: the server starts (with a warning), answers 503 with
// Retry-After, and 200 once the JWKS is up.
func TestSignInJWKSDownAtStart(t *testing.T) {
	fake := newFakeCloudinary(t)
	idp := authtest.New(t)
	idp.SetDown(true)
	srv := startServer(t, signInEnv(t, fake, idp))
	srv.logs.waitFor(t, "sign-in keys are not available yet")
	client := newClient(t)
	tok := authtest.Mint(t, idp.Key(t, "ES256"), goodClaims("early"))
	resp := uploadAs(t, client, srv.url, tok, nil)
	var e apiErrorBody
	decodeBody(t, resp, &e)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || e.Error.Message != errKeysUnavailable.message {
		t.Fatalf("JWKS down: %d Retry-After %q %q", resp.StatusCode, resp.Header.Get("Retry-After"), e.Error.Message)
	}
	resp = postSign(t, client, srv.url, tok, `{}`)
	decodeBody(t, resp, &e)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("/sign while the JWKS is down: %d %q", resp.StatusCode, e.Error.Message)
	}
	idp.SetDown(false)
	decodeOK(t, uploadAs(t, client, srv.url, tok, nil), "once the JWKS is up")
}

// HS256 tokens minted with AUTH_JWT_SECRET, in the header or in AUTH_COOKIE; the local store
// records and answers uploaded_by.
func TestSignInSecretAndCookieLocalStore(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, map[string]string{
		"PORT": "0", "ENV_FILE": filepath.Join(t.TempDir(), "absent.env"), "LOG_LEVEL": "debug",
		"UPLOAD_DIR": dir, "AUTH_JWT_SECRET": testJWTSecret, "AUTH_COOKIE": "__session",
		"ALLOWED_ORIGINS": "https://app.example",
	})
	client := newClient(t)
	tok := authtest.MintHS256(t, []byte(testJWTSecret), authtest.Claims("user_2x", "", "", time.Minute))
	got := decodeOK(t, uploadAs(t, client, srv.url, tok, [][2]string{{"public_id", "me"}}), "HS256 in the header")
	if got["public_id"] != "users/user_5F2x/me" || uploadedBy(got) != "user_2x" {
		t.Errorf("answer %v", got)
	}
	// The record on disk keeps it too.
	metas, err := filepath.Glob(filepath.Join(dir, "meta", "*.json"))
	if err != nil || len(metas) != 1 {
		t.Fatalf("records: %v %v", metas, err)
	}
	raw, err := os.ReadFile(metas[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"custom":{"uploaded_by":"user_2x"}`) {
		t.Errorf("record %s lacks uploaded_by", raw)
	}

	// The cookie, when there is no Authorization header.
	ct, body := multipartBody(t, nil, "c.png", testPNG(t, 2, 2))
	req, err := http.NewRequest(http.MethodPost, srv.url+"/upload", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	req.AddCookie(&http.Cookie{Name: "__session", Value: tok})
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got = decodeOK(t, resp, "HS256 in the cookie")
	if !strings.HasPrefix(got["public_id"].(string), "users/user_5F2x/") {
		t.Errorf("cookie upload public_id = %v", got["public_id"])
	}
	// A wrong secret is a bad signature.
	bad := authtest.MintHS256(t, []byte("another-secret-of-thirty-two-byt"), authtest.Claims("user_2x", "", "", time.Minute))
	resp = uploadAs(t, client, srv.url, bad, nil)
	var e apiErrorBody
	decodeBody(t, resp, &e)
	if resp.StatusCode != http.StatusUnauthorized || e.Error.Message != errTokenBadSignature.message {
		t.Errorf("wrong secret: %d %q", resp.StatusCode, e.Error.Message)
	}
}

// UPLOAD_TOKENS keep working beside sign-in, for scripts: their uploads go to the scripts' folder.
func TestSignInWithUploadTokens(t *testing.T) {
	const script = "script-token-0123456789"
	fake := newFakeCloudinary(t)
	idp := authtest.New(t)
	env := signInEnv(t, fake, idp)
	env["UPLOAD_TOKENS"] = script
	srv := startServer(t, env)
	client := newClient(t)
	got := decodeOK(t, uploadAs(t, client, srv.url, script, [][2]string{{"public_id", "batch"}}), "script")
	if got["public_id"] != "users/_scripts/batch" || got["context"] != nil {
		t.Errorf("script upload: %v", got)
	}
	decodeOK(t, uploadAs(t, client, srv.url, authtest.Mint(t, idp.Key(t, "RS256"), goodClaims("u")), nil), "user beside scripts")
	// The script's own retry: nobody's folder, so 409.
	resp := uploadAs(t, client, srv.url, script, [][2]string{{"public_id", "batch"}})
	var e apiErrorBody
	decodeBody(t, resp, &e)
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("script's second upload of a public_id: %d %q, want 409", resp.StatusCode, e.Error.Message)
	}
}

// Two signed-in users behind one address each have their own RATE_LIMIT; refused tokens count
// against the address.
func TestSignInRateLimitPerUser(t *testing.T) {
	fake := newFakeCloudinary(t)
	idp := authtest.New(t)
	env := signInEnv(t, fake, idp)
	env["RATE_LIMIT"] = "2/h,burst=2"
	srv := startServer(t, env)
	client := clientFrom(t, "127.0.0.2")
	alice := authtest.Mint(t, idp.Key(t, "RS256"), goodClaims("alice"))
	bob := authtest.Mint(t, idp.Key(t, "ES256"), goodClaims("bob"))
	for range 2 {
		decodeOK(t, uploadAs(t, client, srv.url, alice, nil), "alice within her limit")
	}
	resp := uploadAs(t, client, srv.url, alice, nil)
	var e apiErrorBody
	decodeBody(t, resp, &e)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("alice's third upload: %d, want 429", resp.StatusCode)
	}
	decodeOK(t, uploadAs(t, client, srv.url, bob, nil), "bob, from the same address")

	// Guessing: refused tokens spend the address's budget, then are limited.
	for _, want := range []int{http.StatusUnauthorized, http.StatusUnauthorized, http.StatusTooManyRequests} {
		resp := uploadAs(t, client, srv.url, "not-a-valid-token-at-all", nil)
		decodeBody(t, resp, &e)
		if resp.StatusCode != want {
			t.Fatalf("bad token: %d %q, want %d", resp.StatusCode, e.Error.Message, want)
		}
	}
	decodeOK(t, uploadAs(t, client, srv.url, bob, nil), "bob, after the address is limited")
}

// A public_id is answered as existing only in its owner's folder; anyone else gets 409 and
// nothing of the file.
func TestPublicIDTaken(t *testing.T) {
	t.Run("sign_in", func(t *testing.T) {
		fake := newFakeCloudinary(t)
		idp := authtest.New(t)
		srv := startServer(t, signInEnv(t, fake, idp))
		client := newClient(t)
		alice := authtest.Mint(t, idp.Key(t, "RS256"), goodClaims("alice"))
		bob := authtest.Mint(t, idp.Key(t, "RS256"), goodClaims("bob"))
		first := decodeOK(t, uploadAs(t, client, srv.url, alice, [][2]string{{"public_id", "avatar"}}), "alice")
		again := decodeOK(t, uploadAs(t, client, srv.url, alice, [][2]string{{"public_id", "avatar"}}), "alice's retry")
		if again["existing"] != true || again["secure_url"] != first["secure_url"] {
			t.Errorf("alice's retry: %v, want her existing file", again)
		}
		other := decodeOK(t, uploadAs(t, client, srv.url, bob, [][2]string{{"public_id", "avatar"}}), "bob")
		if other["existing"] != nil || other["public_id"] != "users/bob/avatar" {
			t.Errorf("bob's avatar: %v, want his own new file", other)
		}
	})
	t.Run("sign_in_off", func(t *testing.T) {
		fake := newFakeCloudinary(t)
		srv := startServer(t, baseEnv(t, fake))
		decodeOK(t, uploadAs(t, clientFrom(t, "127.0.0.2"), srv.url, "", [][2]string{{"public_id", "avatars/bob"}, {"tags", "secret-tag"}}), "first")
		resp := uploadAs(t, clientFrom(t, "127.0.0.3"), srv.url, "", [][2]string{{"public_id", "avatars/bob"}})
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusConflict || string(raw) != `{"error":{"message":"public_id is already taken"}}`+"\n" {
			t.Errorf("second client: %d %s, want 409 and nothing of the existing file", resp.StatusCode, raw)
		}
	})
}

// checkExisting: an existing file outside the user's folder (a preset that moved it, a folder
// shared by a template) is never answered.
func TestCheckExisting(t *testing.T) {
	for _, tc := range []struct {
		name   string
		result string
		p      store.Params
		taken  bool
	}{
		{"new", `{"public_id":"users/a/x"}`, store.Params{Folder: "users/a", UploadedBy: "a"}, false},
		{"own", `{"public_id":"users/a/x","existing":true}`, store.Params{Folder: "users/a", UploadedBy: "a"}, false},
		{"other_folder", `{"public_id":"users/b/x","existing":true}`, store.Params{Folder: "users/a", UploadedBy: "a"}, true},
		{"prefix_is_not_inside", `{"public_id":"users/ab/x","existing":true}`, store.Params{Folder: "users/a", UploadedBy: "a"}, true},
		{"no_user", `{"public_id":"site/x","existing":true}`, store.Params{Folder: "site"}, true},
		{"existing_false", `{"public_id":"site/x","existing":false}`, store.Params{Folder: "site"}, false},
	} {
		if err := checkExisting([]byte(tc.result), tc.p); (err != nil) != tc.taken {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// POST /sign with sign-in signs the user's folder and uploaded_by, and Cloudinary accepts it.
func TestSignInSign(t *testing.T) {
	fake := newFakeCloudinary(t)
	idp := authtest.New(t)
	srv := startServer(t, signInEnv(t, fake, idp))
	client := newClient(t)
	tok := authtest.Mint(t, idp.Key(t, "ES256"), goodClaims("auth0|abc"))
	resp := postSign(t, client, srv.url, tok, `{"public_id":"direct","context":{"alt":"x"}}`)
	var s signResponse
	decodeBody(t, resp, &s)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/sign: %d", resp.StatusCode)
	}
	if s.Params["folder"] != "users/auth0_7Cabc" || s.Params["context"] != `alt=x|uploaded_by=auth0\|abc` {
		t.Errorf("signed params %v", s.Params)
	}
	status, got := directUpload(t, client, s, nil, testPNG(t, 2, 2))
	if status != http.StatusOK || got["public_id"] != "users/auth0_7Cabc/direct" || uploadedBy(got) != "auth0|abc" {
		t.Errorf("direct upload: %d %v", status, got)
	}
	resp = postSign(t, client, srv.url, tok, `{"context":{"uploaded_by":"someone-else"}}`)
	var e apiErrorBody
	decodeBody(t, resp, &e)
	if resp.StatusCode != http.StatusBadRequest || e.Error.Message != errUploadedBy.message {
		t.Errorf("/sign with uploaded_by: %d %q", resp.StatusCode, e.Error.Message)
	}
}

// The configuration of sign-in: what is refused at start-up, and where uploads go.
func TestSignInConfig(t *testing.T) {
	base := map[string]string{"CLOUD_NAME": "c", "API_KEY": "k", "API_SECRET": "s"}
	with := func(kv ...string) map[string]string {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			env[kv[i]] = kv[i+1]
		}
		return env
	}
	for _, tc := range []struct {
		name   string
		env    map[string]string
		folder string // "" with bad
		bad    string
	}{
		{"off", with(), "", ""},
		{"secret_default_folder", with("AUTH_JWT_SECRET", testJWTSecret), "users/{sub}", ""},
		{"folder_without_sub", with("AUTH_JWT_SECRET", testJWTSecret, "UPLOAD_FOLDER", "site"), "site/users/{sub}", ""},
		{"folder_with_sub", with("AUTH_JWKS_URL", "https://x.example/jwks", "UPLOAD_FOLDER", "app/{sub}/photos"), "app/{sub}/photos", ""},
		{"short_secret", with("AUTH_JWT_SECRET", "short"), "", "AUTH_JWT_SECRET"},
		{"http_jwks", with("AUTH_JWKS_URL", "http://idp.example/jwks"), "", "AUTH_JWKS_URL"},
		{"sub_without_sign_in", with("UPLOAD_FOLDER", "u/{sub}"), "", "UPLOAD_FOLDER"},
		{"issuer_without_sign_in", with("AUTH_ISSUER", "https://x/"), "", "AUTH_ISSUER"},
		{"cookie_with_any_origin", with("AUTH_JWT_SECRET", testJWTSecret, "AUTH_COOKIE", "__session"), "", "AUTH_COOKIE"},
	} {
		cfg, err := loadConfig(mapGetenv(tc.env))
		switch {
		case tc.bad != "":
			if err == nil || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("%s: error %v, want one naming %s", tc.name, err, tc.bad)
			}
			if err != nil && strings.Contains(err.Error(), "short") && tc.bad == "AUTH_JWT_SECRET" {
				t.Errorf("%s: the error quotes the secret: %v", tc.name, err)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case cfg.UploadFolder != tc.folder:
			t.Errorf("%s: folder %q, want %q", tc.name, cfg.UploadFolder, tc.folder)
		}
	}
}

// MAX_UPLOADS_PER_CLIENT counts a signed-in user as the user: with one upload of Alice's in
// flight, her next is refused, and Bob's, from the same address, gets in.
func TestSignInUploadsInFlightPerUser(t *testing.T) {
	fake := newFakeCloudinary(t)
	idp := authtest.New(t)
	env := signInEnv(t, fake, idp)
	env["MAX_UPLOADS_PER_CLIENT"] = "1"
	srv := startServer(t, env)
	as := func(sub string) *http.Client {
		base := clientFrom(t, "127.0.0.2")
		tok := authtest.Mint(t, idp.Key(t, "ES256"), goodClaims(sub))
		return &http.Client{Transport: withHeader{base.Transport, "Authorization", "Bearer " + tok}}
	}
	alice, bob := as("alice"), as("bob")
	held := holdUpload(t, alice, srv.url, fake)
	if status, _, msg := smallUpload(t, alice, srv.url); status != http.StatusTooManyRequests || msg != errClientBusy.message {
		t.Errorf("alice's second upload at once: %d %q, want 429 %q", status, msg, errClientBusy.message)
	}
	if status, _, msg := smallUpload(t, bob, srv.url); status != http.StatusOK {
		t.Errorf("bob, same address, meanwhile: %d %q, want 200", status, msg)
	}
	if s := held.finish(t); s != http.StatusOK {
		t.Errorf("alice's held upload: %d", s)
	}
}

// Shared through Redis: a user is one client across servers and addresses; another user from
// the same address has a budget of their own.
func TestSignInRateLimitSharedThroughRedis(t *testing.T) {
	redis := redistest.Start(t)
	fake := newFakeCloudinary(t)
	idp := authtest.New(t)
	env := redisEnv(t, fake, redis.URL())
	for k, v := range signInEnv(t, fake, idp) {
		if strings.HasPrefix(k, "AUTH_") {
			env[k] = v
		}
	}
	a, b := startServer(t, env), startServer(t, env)
	as := func(ip, sub string) *http.Client {
		base := clientFrom(t, ip)
		tok := authtest.Mint(t, idp.Key(t, "RS256"), goodClaims(sub))
		return &http.Client{Transport: withHeader{base.Transport, "Authorization", "Bearer " + tok}}
	}
	// Alice from two addresses, through both servers: one budget of 5.
	alice := []*http.Client{as("127.0.0.2", "alice"), as("127.0.0.3", "alice")}
	for i := range 6 {
		srv := []*testServer{a, b}[i%2]
		resp, body := uploadPNG(t, alice[i%2], srv.url)
		if want := map[bool]int{true: http.StatusOK, false: http.StatusTooManyRequests}[i < 5]; resp.StatusCode != want {
			t.Fatalf("alice's upload %d: %d %s, want %d", i+1, resp.StatusCode, body, want)
		}
	}
	if resp, body := uploadPNG(t, as("127.0.0.2", "bob"), a.url); resp.StatusCode != http.StatusOK {
		t.Errorf("bob, from alice's address: %d %s, want 200", resp.StatusCode, body)
	}
}
