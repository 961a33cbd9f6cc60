package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"

	"cloudinary-upload-api/internal/cloudinary"
)

// postSign asks the server to sign params (a JSON body) with an optional bearer token.
func postSign(t *testing.T, c *http.Client, baseURL, token, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, baseURL+"/sign", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST /sign: %v", err)
	}
	return resp
}

// directUpload posts a file straight to Cloudinary's upload_url, as a browser would with /sign's answer.
// extra fields are added after the signed ones, as a client trying to smuggle them in would.
func directUpload(t *testing.T, c *http.Client, s signResponse, extra map[string]string, file []byte) (int, map[string]any) {
	t.Helper()
	names := make([]string, 0, len(s.Params))
	for k := range s.Params {
		names = append(names, k)
	}
	sort.Strings(names)
	fields := [][2]string{{"api_key", s.APIKey}, {"signature", s.Signature}}
	for _, k := range names {
		fields = append(fields, [2]string{k, s.Params[k]})
	}
	for k, v := range extra {
		fields = append(fields, [2]string{k, v})
	}
	contentType, body := multipartBody(t, fields, "direct.png", file)
	resp, err := c.Post(s.UploadURL, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", s.UploadURL, err)
	}
	var got map[string]any
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatalf("Cloudinary's answer is not JSON: %v", err)
	}
	return resp.StatusCode, got
}

func TestSignedDirectUploadAcceptedByCloudinary(t *testing.T) {
	const token = "tok-0123456789abcdef"
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	env["UPLOAD_FOLDER"] = "site"
	env["UPLOAD_PRESET"] = "signed_thumbs"
	env["UPLOAD_TOKENS"] = token
	srv := startServer(t, env)
	client := newClient(t)

	resp := postSign(t, client, srv.url, token, `{"public_id":"direct/beach","tags":["summer","sea and sand"],"context":{"alt":"a|b=c","caption":"Beach"}}`)
	var s signResponse
	decodeBody(t, resp, &s)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %+v", resp.StatusCode, s)
	}
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	if s.APIKey != fakeAPIKey || s.CloudName != fakeCloudName || s.Signature == "" || s.Timestamp == 0 {
		t.Errorf("answer lacks the account or the signature: %+v", s)
	}
	if want := fake.URL() + "/v1_1/" + fakeCloudName + "/image/upload"; s.UploadURL != want {
		t.Errorf("upload_url = %q, want %q", s.UploadURL, want)
	}
	for k, want := range map[string]string{
		"folder": "site", "upload_preset": "signed_thumbs", "overwrite": "false", "public_id": "direct/beach",
		"tags": "summer,sea and sand", "context": `alt=a\|b\=c|caption=Beach`,
	} {
		if got := s.Params[k]; got != want {
			t.Errorf("params[%s] = %q, want %q", k, got, want)
		}
	}
	if strings.Contains(srv.logs.String(), fakeAPISecret) || strings.Contains(srv.logs.String(), token) {
		t.Errorf("a secret is in the logs")
	}
	if n := fake.RequestCount(); n != 0 {
		t.Errorf("/sign itself sent %d requests to Cloudinary", n)
	}

	img := testPNG(t, 10, 10)
	status, got := directUpload(t, client, s, nil, img)
	if status != http.StatusOK {
		t.Fatalf("Cloudinary refused our signature: %d %v", status, got)
	}
	if got["public_id"] != "site/direct/beach" {
		t.Errorf("public_id = %v, want site/direct/beach", got["public_id"])
	}
	if ups := fake.Uploads(); len(ups) != 1 || ups[0].SHA256 != sha256Hex(img) {
		t.Fatalf("the direct upload did not arrive whole: %+v", ups)
	}

	// What a client adds or changes on its own is not covered by the signature, and Cloudinary refuses it.
	for _, extra := range []map[string]string{
		{"overwrite": "true"},
		{"eval": "upload_options['tags'] = 'x'"},
		{"notification_url": "https://evil.example/hook"},
		{"folder": "elsewhere"},
		{"public_id": "someone/else"},
	} {
		s2 := s
		s2.Params = map[string]string{}
		for k, v := range s.Params {
			if _, replaced := extra[k]; !replaced {
				s2.Params[k] = v
			}
		}
		status, got := directUpload(t, client, s2, extra, img)
		if status != http.StatusUnauthorized {
			t.Errorf("smuggled %v: Cloudinary answered %d %v, want 401 Invalid Signature", extra, status, got)
		}
	}
	if n := len(fake.Uploads()); n != 1 {
		t.Errorf("%d uploads stored, want only the signed one", n)
	}
}

func TestSignRefusals(t *testing.T) {
	const token = "tok-0123456789abcdef"
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	env["UPLOAD_TOKENS"] = token
	srv := startServer(t, env)
	client := newClient(t)
	for _, tc := range []struct {
		name, token, contentType, body string
		status                         int
		message                        string
	}{
		{"no_token_is_401", "", "application/json", `{}`, 401, "upload token"},
		{"wrong_token_is_401", "tok-wrong-wrong-wrong", "application/json", `{}`, 401, "upload token"},
		{"overwrite_is_400", token, "application/json", `{"overwrite":"true"}`, 400, `"overwrite" cannot be signed`},
		{"eval_is_400", token, "application/json", `{"eval":"x"}`, 400, `"eval" cannot be signed`},
		{"notification_url_is_400", token, "application/json", `{"notification_url":"https://evil.example"}`, 400, `"notification_url" cannot be signed`},
		{"folder_is_400", token, "application/json", `{"folder":"elsewhere"}`, 400, `"folder" cannot be signed`},
		{"upload_preset_is_400", token, "application/json", `{"upload_preset":"unsigned"}`, 400, `"upload_preset" cannot be signed`},
		{"timestamp_is_400", token, "application/json", `{"timestamp":"1"}`, 400, `"timestamp" cannot be signed`},
		{"bad_public_id_is_400", token, "application/json", `{"public_id":"../x"}`, 400, "public_id must be"},
		{"too_many_tags_is_400", token, "application/json", `{"tags":"` + strings.Repeat("t,", 60) + `"}`, 400, "at most 50 tags"},
		{"number_is_400", token, "application/json", `{"public_id":12}`, 400, "must be a string"},
		{"control_chars_are_400", token, "application/json", `{"context":"a=\u0000"}`, 400, "printable"},
		{"not_an_object_is_400", token, "application/json", `["public_id"]`, 400, "JSON object"},
		{"bad_json_is_400", token, "application/json", `{"public_id":`, 400, "JSON object"},
		{"form_body_is_415", token, "application/x-www-form-urlencoded", `public_id=x`, 415, "application/json"},
		{"huge_body_is_413", token, "application/json", `{"public_id":"` + strings.Repeat("a", 20<<10) + `"}`, 413, "16 KiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, srv.url+"/sign", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", tc.contentType)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var got apiErrorBody
			decodeBody(t, resp, &got)
			if resp.StatusCode != tc.status || !strings.Contains(got.Error.Message, tc.message) {
				t.Errorf("%d %q, want %d with %q", resp.StatusCode, got.Error.Message, tc.status, tc.message)
			}
			if tc.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
	// An empty body asks for nothing: only the server's own parameters are signed.
	resp := postSign(t, client, srv.url, token, "")
	var s signResponse
	decodeBody(t, resp, &s)
	if resp.StatusCode != 200 || len(s.Params) != 1 || s.Params["timestamp"] == "" {
		t.Errorf("empty body: %d %+v, want only a timestamp signed", resp.StatusCode, s)
	}
	if n := fake.RequestCount(); n != 0 {
		t.Errorf("%d requests reached Cloudinary", n)
	}
}

func TestSignWithoutCredentialsIs501(t *testing.T) {
	t.Parallel()
	for name, env := range map[string]map[string]string{
		"no_credentials":                {"RATE_LIMIT": "off"},
		"local_store_chosen_with_creds": {"RATE_LIMIT": "off", "STORAGE": "local", "CLOUD_NAME": "c", "API_KEY": "k", "API_SECRET": "s"},
	} {
		cfg, err := loadConfig(mapGetenv(env))
		if err != nil {
			t.Fatal(err)
		}
		h := newServer(discardLogger(), cfg, testStorage(acceptAllUploader{}), newHealthState())
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/sign", strings.NewReader(`{}`)))
		if rec.Code != http.StatusNotImplemented || !strings.Contains(rec.Body.String(), "signed direct uploads need Cloudinary credentials") {
			t.Errorf("%s: %d %s, want 501 JSON", name, rec.Code, rec.Body)
		}
	}
	h := newServer(discardLogger(), testConfig(), testStorage(acceptAllUploader{}), newHealthState())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/sign", nil))
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "POST" {
		t.Errorf("GET /sign = %d, want 405 with Allow: POST", rec.Code)
	}
}

func TestSignUsesConfiguredAlgorithm(t *testing.T) {
	cfg := testConfig()
	cfg.Cloudinary.Params = url.Values{"signature_algorithm": {"sha256"}}
	c, err := cloudinary.New(cfg.Cloudinary, cfg.cloudinaryOptions()) // before t.Parallel: the SDK's config parsing is unsafe for concurrent use
	if err != nil {
		t.Fatal(err)
	}
	t.Parallel()
	sc := newSigningConfig(cfg, cloudinaryStorage(c).signer, nil)
	if a, v := sc.signer.Algorithm(), sc.signer.Version(); a != "sha256" || v != 2 {
		t.Errorf("algorithm %q version %d, want sha256 and the SDK's default 2", a, v)
	}
	if _, err := loadConfig(mapGetenv(map[string]string{"CLOUDINARY_URL": "cloudinary://k:s@c?signature_algorithm=md5"})); err == nil || !strings.Contains(err.Error(), "signature_algorithm") {
		t.Errorf("err = %v, want signature_algorithm refused", err)
	}
	if _, err := loadConfig(mapGetenv(map[string]string{"CLOUD_NAME": "c", "API_KEY": "k", "API_SECRET": "s", "SIGNABLE_PARAMS": "public_id,folder,Bad Name"})); err == nil ||
		!strings.Contains(err.Error(), `"folder" is not for clients: it chooses where the file goes`) || !strings.Contains(err.Error(), "bad name") {
		t.Errorf("err = %v, want folder and the bad name refused", err)
	}
}

// TestSignNeverSignsAnAmpersand: with signature_version=1, Cloudinary signs "context=alt=x&folder=…"
// as it is, which is also the string of an upload that sends folder, notification_url, overwrite
// and public_id as fields of their own. No value with '&' is signed, whatever the version; the
// attack of the outside run, replayed against the fake, finds nothing to replay.
func TestSignNeverSignsAnAmpersand(t *testing.T) {
	const attack = `alt=x&folder=../admin&notification_url=https://evil.example/h&overwrite=true&public_id=victim`
	for _, version := range []string{"1", "2"} {
		t.Run("signature_version="+version, func(t *testing.T) {
			fake := newFakeCloudinary(t)
			env := baseEnv(t, fake)
			env["CLOUDINARY_URL"] = fake.CloudinaryURL() + "&signature_version=" + version
			srv := startServer(t, env)
			client := newClient(t)
			for _, body := range []string{
				`{"context":"` + attack + `"}`,
				`{"context":{"alt":"x&folder=../admin"}}`,
				`{"tags":["a&folder=x"]}`,
				`{"public_id":"a&b"}`,
			} {
				resp := postSign(t, client, srv.url, "", body)
				var got apiErrorBody
				decodeBody(t, resp, &got)
				if resp.StatusCode != http.StatusBadRequest || !strings.Contains(got.Error.Message, "must not contain '&'") {
					t.Errorf("%s: %d %q, want 400 naming the '&'", body, resp.StatusCode, got.Error.Message)
				}
			}
			// The form of POST /upload takes the same parameters, through the same check.
			ct, form := multipartBody(t, [][2]string{{"context", attack}}, "a.png", testPNG(t, 2, 2))
			resp := postForm(t, client, srv.url, ct, bytes.NewReader(form))
			var got apiErrorBody
			decodeBody(t, resp, &got)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(got.Error.Message, "must not contain '&'") {
				t.Errorf("POST /upload: %d %q, want 400 naming the '&'", resp.StatusCode, got.Error.Message)
			}
			if n := fake.RequestCount(); n != 0 {
				t.Errorf("%d requests reached Cloudinary", n)
			}
		})
	}
}

// TestSignableParamsIsAnAllowList: SIGNABLE_PARAMS may name only parameters that cannot choose
// where a file goes, what it overwrites, or where Cloudinary calls back; each refusal says why.
func TestSignableParamsIsAnAllowList(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ param, why string }{
		{"use_filename", "overwrite another's file"},
		{"unique_filename", "overwrite another's file"},
		{"eager_notification_url", "call a URL"},
		{"asset_folder", "where the file goes"},
		{"public_id_prefix", "where the file goes"},
		{"callback", "redirect to a URL"},
		{"overwrite", "replaces other files"},
		{"moderation", "not one of the parameters a client may set"},
		{"some_future_param", "not one of the parameters a client may set"},
	} {
		_, err := loadConfig(mapGetenv(map[string]string{"SIGNABLE_PARAMS": "public_id,tags," + tc.param}))
		if err == nil || !strings.Contains(err.Error(), `"`+tc.param+`"`) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("SIGNABLE_PARAMS with %s: err = %v, want it refused with %q", tc.param, err, tc.why)
		}
	}
	cfg, err := loadConfig(mapGetenv(map[string]string{"SIGNABLE_PARAMS": strings.Join(signableAllowed, ",")}))
	if err != nil || !slices.Equal(cfg.signableParams, signableAllowed) {
		t.Errorf("every allowed parameter: %v, %v", cfg.signableParams, err)
	}
}
