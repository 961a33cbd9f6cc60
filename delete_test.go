package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cloudinary-upload-api/internal/auth"
	"cloudinary-upload-api/internal/cloudinary"
	"cloudinary-upload-api/internal/localstore"
	"cloudinary-upload-api/internal/store"
)

// deleteBackend is a server started by run with one store, and a way to see whether a public id
// is still stored there.
type deleteBackend struct {
	name   string
	srv    *testServer
	stored func(t *testing.T, publicID string) bool
	late   func() // moves the store's clock past the delete token's 10 minutes; nil: only at handler level
}

func startDeleteBackends(t *testing.T) []deleteBackend {
	t.Helper()
	fake := newFakeCloudinary(t)
	var offset time.Duration
	fake.SetClock(func() time.Time { return time.Now().Add(offset) })
	local := localEnv(t)
	dir := local["UPLOAD_DIR"]
	return []deleteBackend{
		{name: "fake_cloudinary", srv: startServer(t, withMetrics(baseEnv(t, fake))),
			stored: func(_ *testing.T, id string) bool { _, ok := fake.Asset(id); return ok },
			late:   func() { offset = store.DeleteTokenTTL + time.Second }},
		{name: "local_store", srv: startServer(t, withMetrics(local)), stored: func(t *testing.T, id string) bool { return localStored(t, dir, id) }},
	}
}

func withMetrics(env map[string]string) map[string]string {
	env["METRICS"] = "true"
	return env
}

// localStored reports whether the local store in dir holds publicID, checking that files and
// records come and go together.
func localStored(t *testing.T, dir, publicID string) bool {
	t.Helper()
	var files, records int
	for _, f := range listFiles(t, dir) {
		switch filepath.Dir(f) {
		case "files":
			files++
		case "meta":
			records++
		}
	}
	if files != records {
		t.Errorf("the local store holds %d files and %d records", files, records)
	}
	_, ok := localRecord(t, dir, publicID)
	return ok
}

// localRecord is the local store's record of publicID in dir.
func localRecord(t *testing.T, dir, publicID string) (localstore.Record, bool) {
	t.Helper()
	for _, rec := range localRecords(t, dir) {
		if rec.Result.PublicID == publicID {
			return rec, true
		}
	}
	return localstore.Record{}, false
}

// localRecords are the records of the local store in dir, read from its meta/ directory.
func localRecords(t *testing.T, dir string) []localstore.Record {
	t.Helper()
	var out []localstore.Record
	for _, f := range listFiles(t, dir) {
		if filepath.Dir(f) != "meta" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		var rec localstore.Record
		if err := json.Unmarshal(b, &rec); err != nil {
			t.Fatal(err)
		}
		out = append(out, rec)
	}
	return out
}

// postUpload uploads a small PNG under publicID and returns the answer's text, as FilePond keeps it.
func postUpload(t *testing.T, c *http.Client, baseURL, publicID string) (string, map[string]any) {
	t.Helper()
	ct, body := multipartBody(t, [][2]string{{"public_id", publicID}}, "a.png", testPNG(t, 4, 3))
	resp, err := c.Post(baseURL+"/upload", ct, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var answer map[string]any
	if err := json.Unmarshal(raw, &answer); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("upload: %d %s", resp.StatusCode, raw)
	}
	return string(raw), answer
}

// sendDelete sends DELETE /upload with body and returns the status and the decoded answer.
func sendDelete(t *testing.T, c *http.Client, baseURL, contentType, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodDelete, baseURL+"/upload", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	decodeBody(t, resp, &got)
	return resp.StatusCode, got
}

func wantResult(t *testing.T, what string, status int, got map[string]any, wantStatus int, wantMessage string) {
	t.Helper()
	if status != wantStatus {
		t.Errorf("%s: status %d %v, want %d", what, status, got, wantStatus)
		return
	}
	if wantStatus == http.StatusOK {
		if len(got) != 1 || got["result"] != "ok" {
			t.Errorf("%s: answer %v, want Cloudinary's {\"result\":\"ok\"}", what, got)
		}
		return
	}
	e, _ := got["error"].(map[string]any)
	if e == nil || e["message"] != wantMessage {
		t.Errorf("%s: answer %v, want the message %q", what, got, wantMessage)
	}
}

// Without sign-in, the upload's answer deletes its file: sent back as FilePond sends it on revert
// (text/plain), or as JSON. Then the file is gone from the store, and the same answer finds
// nothing; a wrong token, no token, and (at the fake, whose clock the test moves) a token past its
// 10 minutes are refused, and the file stays.
func TestDeleteWithTheAnswer(t *testing.T) {
	for _, b := range startDeleteBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			c := newClient(t)
			api := b.srv.url
			text, answer := postUpload(t, c, api, "undo/one")
			id, _ := answer["public_id"].(string)
			token, _ := answer["delete_token"].(string)
			if id != "undo/one" || token == "" || !b.stored(t, id) {
				t.Fatalf("the upload answered %s", text)
			}

			wrong := token[:len(token)-8] + strings.Repeat("0", 8) // the file's token, tampered with
			status, got := sendDelete(t, c, api, "application/json", `{"public_id":"undo/one","delete_token":"`+wrong+`"}`)
			wantResult(t, "a wrong token", status, got, http.StatusForbidden, errDeleteToken.message)
			status, got = sendDelete(t, c, api, "application/json", `{"public_id":"undo/one"}`)
			wantResult(t, "no token", status, got, http.StatusForbidden, errDeleteToken.message)
			status, got = sendDelete(t, c, api, "text/plain", "undo/one")
			wantResult(t, "not JSON", status, got, http.StatusBadRequest, errDeleteBadBody.message)
			if !b.stored(t, id) {
				t.Fatal("a refused delete deleted the file")
			}

			status, got = sendDelete(t, c, api, "text/plain;charset=UTF-8", text)
			wantResult(t, "the answer as FilePond sends it", status, got, http.StatusOK, "")
			if b.stored(t, id) {
				t.Error("the file is still stored")
			}
			if u, _ := answer["secure_url"].(string); b.name == "local_store" {
				resp, err := c.Get(u)
				if err != nil {
					t.Fatal(err)
				}
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusNotFound {
					t.Errorf("GET %s after the delete: %d, want 404", u, resp.StatusCode)
				}
			}
			status, got = sendDelete(t, c, api, "text/plain;charset=UTF-8", text)
			wantResult(t, "the same answer again", status, got, http.StatusNotFound, errNotFound.message)

			_, second := postUpload(t, c, api, "undo/two")
			tok2, _ := second["delete_token"].(string)
			status, got = sendDelete(t, c, api, "", `{"delete_token":"`+tok2+`"}`)
			wantResult(t, "a JSON delete_token", status, got, http.StatusOK, "")

			if m := metricsText(t, c, api); !strings.Contains(m, `deletes_total{outcome="ok"} 2`) || !strings.Contains(m, `deletes_total{outcome="rejected"} 4`) {
				t.Errorf("deletes_total after 2 deletes and 4 refusals:\n%s", m)
			}
			if b.late == nil {
				return // the local store's clock: TestDeleteTokenExpiresInTheLocalStore
			}
			_, third := postUpload(t, c, api, "undo/three")
			b.late()
			body, err := json.Marshal(third)
			if err != nil {
				t.Fatal(err)
			}
			status, got = sendDelete(t, c, api, "application/json", string(body))
			wantResult(t, "a token past its 10 minutes", status, got, http.StatusForbidden, errDeleteToken.message)
			if !b.stored(t, "undo/three") {
				t.Error("an expired token deleted the file")
			}
		})
	}
}

// newClockedLocalServer is the handler with a local store in dir on the given clock.
func newClockedLocalServer(t *testing.T, cfg config, dir string, now func() time.Time) http.Handler {
	t.Helper()
	cfg.UploadDir = dir
	s, err := newLocalStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.SetClock(now)
	t.Cleanup(func() { _ = s.Close() })
	return newServer(discardLogger(), cfg, localStorage(s), newHealthState())
}

// The local store's own token deletes until 10 minutes after the upload, and not from then on.
func TestDeleteTokenExpiresInTheLocalStore(t *testing.T) {
	t.Parallel()
	start := time.Now()
	now := start
	dir := t.TempDir()
	h := newClockedLocalServer(t, testConfig(), dir, func() time.Time { return now })
	var answers []string
	for _, id := range []string{"in/time", "too/late"} {
		rec := serve(h, uploadReq(t, [][2]string{{"public_id", id}}, "a.png", testPNG(t, 3, 3)))
		if rec.Code != http.StatusOK {
			t.Fatalf("upload: %d %s", rec.Code, rec.Body)
		}
		answers = append(answers, rec.Body.String())
	}
	del := func(body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodDelete, "http://uploads.test/upload", strings.NewReader(body))
		req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
		return serve(h, req)
	}
	now = start.Add(store.DeleteTokenTTL - time.Second)
	if rec := del(answers[0]); rec.Code != http.StatusOK {
		t.Errorf("within 10 minutes: %d %s", rec.Code, rec.Body)
	}
	now = start.Add(store.DeleteTokenTTL + time.Second)
	if rec := del(answers[1]); rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), errDeleteToken.message) {
		t.Errorf("after 10 minutes: %d %s, want 403", rec.Code, rec.Body)
	}
	if !localStored(t, dir, "too/late") || localStored(t, dir, "in/time") {
		t.Error("the store holds the wrong files")
	}
}

// signedIn wraps h so that every request carries the signed-in user sub, as the sign-in
// middleware does.
func signedIn(h http.Handler, sub string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(auth.NewContext(r.Context(), auth.User{Subject: sub})))
	})
}

// With sign-in, a user deletes what lies in their own folder, at any time, through the signed
// destroy (the fake checks its signature), and nothing of another user's; a user never gets a
// delete token. Both stores.
func TestDeleteSignedIn(t *testing.T) {
	fake := newFakeCloudinary(t)
	cfg := testConfig()
	cfg.UploadFolder = "users/{sub}"
	creds, err := cloudinary.ParseURL(fake.CloudinaryURL())
	if err != nil {
		t.Fatal(err)
	}
	client, err := cloudinary.New(creds, cloudinary.Options{ChunkSize: cloudinary.MinChunkBytes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.CloseIdleConnections)
	local, err := localstore.New(t.TempDir(), "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = local.Close() })
	alice := auth.Folder(cfg.UploadFolder, auth.User{Subject: "auth0|alice"})
	bob := auth.Folder(cfg.UploadFolder, auth.User{Subject: "bob"})

	for _, b := range []struct {
		name string
		st   storage
	}{
		{"fake_cloudinary", cloudinaryStorage(client)},
		{"local_store", localStorage(local)},
	} {
		t.Run(b.name, func(t *testing.T) {
			// The files are put straight into the store, where the sign-in upload puts them.
			for _, id := range []string{alice + "/pic", alice + "/later", bob + "/pic", alice + "-x/pic"} {
				if _, err := b.st.up.Upload(context.Background(), bytes.NewReader(testPNG(t, 2, 2)), store.Params{PublicID: id}); err != nil {
					t.Fatal(err)
				}
			}
			stored := func(id string) bool {
				if b.name == "local_store" {
					return localStored(t, local.Dir(), id)
				}
				_, ok := fake.Asset(id)
				return ok
			}
			h := signedIn(newServer(discardLogger(), cfg, b.st, newHealthState()), "auth0|alice")
			del := func(body string) (int, map[string]any) {
				req := httptest.NewRequest(http.MethodDelete, "http://uploads.test/upload", strings.NewReader(body))
				rec := serve(h, req)
				var got map[string]any
				if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
					t.Fatalf("%d %s", rec.Code, rec.Body)
				}
				return rec.Code, got
			}
			status, got := del(`{"public_id":"` + bob + `/pic"}`)
			wantResult(t, "another user's file", status, got, http.StatusForbidden, errDeleteNotYours.message)
			status, got = del(`{"public_id":"` + alice + `-x/pic"}`)
			wantResult(t, "a folder that only starts like the user's", status, got, http.StatusForbidden, errDeleteNotYours.message)
			status, got = del(`{"public_id":"` + alice + `/../` + strings.TrimPrefix(bob, "users/") + `/pic"}`)
			wantResult(t, "a way out of the user's folder", status, got, http.StatusBadRequest, errDeleteBadBody.message)
			status, got = del(`{"public_id":"` + alice + `/a&type=private"}`)
			wantResult(t, "a public id with '&'", status, got, http.StatusBadRequest, errDeleteBadBody.message)
			status, got = del(`{"delete_token":"` + strings.Repeat("0", 64) + `"}`)
			wantResult(t, "a signed-in user with a token only", status, got, http.StatusBadRequest, errDeleteBadBody.message)
			if !stored(bob+"/pic") || !stored(alice+"-x/pic") {
				t.Fatal("a refused delete deleted a file")
			}

			status, got = del(`{"public_id":"` + alice + `/pic","resource_type":"image"}`)
			wantResult(t, "the user's own file", status, got, http.StatusOK, "")
			if stored(alice + "/pic") {
				t.Error("the user's file is still stored")
			}
			status, got = del(`{"public_id":"` + alice + `/pic"}`)
			wantResult(t, "the user's file again", status, got, http.StatusNotFound, errNotFound.message)
			status, got = del(`{"public_id":"` + alice + `/later"}`)
			wantResult(t, "the user's other file, with the default resource type", status, got, http.StatusOK, "")

			shared := cfg
			shared.UploadFolder = "users" // no {sub}: no file is one user's own
			h = signedIn(newServer(discardLogger(), shared, b.st, newHealthState()), "auth0|alice")
			rec := serve(h, httptest.NewRequest(http.MethodDelete, "http://uploads.test/upload", strings.NewReader(`{"public_id":"`+bob+`/pic"}`)))
			if rec.Code != http.StatusForbidden || !stored(bob+"/pic") {
				t.Errorf("a folder without {sub}: %d %s, want 403 and the file kept", rec.Code, rec.Body)
			}
		})
	}
}

// DELETE /upload's refusals and the store's failures, through run against the fake, each with its
// whole message; GET /upload's Allow now names DELETE, and a page's preflight for it is allowed.
func TestDeleteErrors(t *testing.T) {
	token := `{"delete_token":"` + strings.Repeat("ab", 32) + `"}`
	for _, tc := range []struct {
		name      string
		env       map[string]string
		behaviour *fakeBehaviour
		body      string
		before    int // DELETEs sent first (the rate limit's)
		status    int
		message   string
	}{
		{name: "no_upload_token_is_401", env: map[string]string{"UPLOAD_TOKENS": strings.Repeat("t", 32)}, body: token, status: 401, message: errUnauthorized.message},
		{name: "body_over_64kib_is_413", body: `{"public_id":"` + strings.Repeat("x", maxDeleteBody) + `"}`, status: 413, message: errDeleteTooLarge.message},
		{name: "bad_resource_type_is_400", body: `{"delete_token":"x","resource_type":"pdf"}`, status: 400, message: errDeleteBadBody.message},
		{name: "an_array_is_400", body: `[{"delete_token":"x"}]`, status: 400, message: errDeleteBadBody.message},
		{name: "rate_limited_is_429", env: map[string]string{"RATE_LIMIT": "1/h"}, body: token, before: 1, status: 429, message: errRateLimited.message},
		{name: "cloudinary_500_is_502", behaviour: &fakeBehaviour{Status: 500, Body: `{"error":{"message":"General Error"}}`}, body: token, status: 502, message: errUpstreamFailed.message},
		{name: "cloudinary_rate_limit_is_503", behaviour: &fakeBehaviour{Status: 420, Body: `{"error":{"message":"Rate Limit Exceeded"}}`}, body: token, status: 503, message: errUpstreamRateLimited.message},
		{name: "cloudinary_silent_is_504", env: map[string]string{"UPLOAD_TIMEOUT": "300ms"}, behaviour: &fakeBehaviour{Hang: true}, body: token, status: 504, message: errUpstreamTimeout.message},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFakeCloudinary(t)
			env := baseEnv(t, fake)
			for k, v := range tc.env {
				env[k] = v
			}
			if tc.behaviour != nil {
				fake.SetBehaviour(*tc.behaviour)
			}
			srv := startServer(t, env)
			c := newClient(t)
			for range tc.before {
				sendDelete(t, c, srv.url, "application/json", tc.body)
			}
			status, got := sendDelete(t, c, srv.url, "application/json", tc.body)
			wantResult(t, tc.name, status, got, tc.status, tc.message)
		})
	}

	t.Run("allow_and_preflight", func(t *testing.T) {
		fake := newFakeCloudinary(t)
		env := baseEnv(t, fake)
		env["ALLOWED_ORIGINS"] = "https://app.example"
		srv := startServer(t, env)
		c := newClient(t)
		var e apiErrorBody
		if resp := doJSON(t, c, http.MethodPut, srv.url+"/upload", &e); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST, DELETE" {
			t.Errorf("PUT /upload: %d, Allow %q; want 405 with POST, DELETE", resp.StatusCode, resp.Header.Get("Allow"))
		}
		req, err := http.NewRequest(http.MethodOptions, srv.url+"/upload", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Origin", "https://app.example")
		req.Header.Set("Access-Control-Request-Method", http.MethodDelete)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Methods") != http.MethodDelete ||
			resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
			t.Errorf("preflight for DELETE: %d %v", resp.StatusCode, resp.Header)
		}
	})
}

// FuzzDeleteBody: whatever the body, signed in or not, DELETE /upload answers JSON with 200,
// 400, 403, 404 or 413 against a local store holding one file, and deletes nothing but by its
// token or its owner's public_id.
func FuzzDeleteBody(f *testing.F) {
	dir := f.TempDir()
	s, err := localstore.New(dir, "", "", nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Close() })
	cfg := testConfig()
	cfg.UploadFolder = "users/{sub}"
	h := newServer(discardLogger(), cfg, localStorage(s), newHealthState())
	own := signedIn(h, "alice")
	keep := "users/bob/keep"
	if _, err := s.Upload(context.Background(), bytes.NewReader(testPNG(f, 2, 2)), store.Params{PublicID: keep, DeleteToken: true}); err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"public_id":"users/alice/x","delete_token":"`+strings.Repeat("a", 64)+`"}`), false)
	f.Add([]byte(`{"public_id":"users/alice/../bob/keep"}`), true)
	f.Add([]byte(`{"public_id":"users/bob/keep","resource_type":"image"}`), true)
	f.Add([]byte(`{"delete_token":null,"public_id":7}`), false)
	f.Add([]byte("\x00\xff"), true)
	f.Fuzz(func(t *testing.T, body []byte, asAlice bool) {
		target := h
		if asAlice {
			target = own
		}
		req := httptest.NewRequest(http.MethodDelete, "http://uploads.test/upload", bytes.NewReader(body))
		req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
		rec := serve(target, req)
		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
		if !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
			t.Fatalf("non-JSON answer %d", rec.Code)
		}
		if _, ok := localRecord(t, dir, keep); !ok {
			t.Fatalf("%q deleted bob's file", body)
		}
	})
}
