package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cloudinary-upload-api/internal/cloudinary"
	envconfig "cloudinary-upload-api/internal/config"
)

func TestLoadConfigDefaults(t *testing.T) {
	cfg, err := loadConfig(mapGetenv(map[string]string{"CLOUDINARY_URL": "cloudinary://key:sec@cloud"}))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Port, "8080"; got != want {
		t.Errorf("port = %q, want %q", got, want)
	}
	if got, want := cfg.MaxUploadBytes, int64(100<<20); got != want {
		t.Errorf("maxUploadBytes = %d, want %d", got, want)
	}
	if got, want := strings.Join(cfg.AllowedTypes, ","), "image/*"; got != want {
		t.Errorf("allowedTypes = %q, want %q", got, want)
	}
	if got, want := cfg.ShutdownTimeout, 25*time.Second; got != want {
		t.Errorf("shutdownTimeout = %v, want %v", got, want)
	}
	if cfg.Cloudinary == nil || cfg.Cloudinary.CloudName != "cloud" || cfg.Cloudinary.APIKey != "key" || cfg.Cloudinary.APISecret != "sec" {
		t.Errorf("credentials not read from CLOUDINARY_URL: %+v", cfg.Cloudinary)
	}
}

func TestLoadConfigSeparateCredentials(t *testing.T) {
	cfg, err := loadConfig(mapGetenv(map[string]string{
		"CLOUD_NAME": "c", "API_KEY": "k", "API_SECRET": "s", "CLOUDINARY_UPLOAD_PREFIX": "http://127.0.0.1:9",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Cloudinary.Params.Get("upload_prefix"); got != "http://127.0.0.1:9" {
		t.Errorf("upload_prefix = %q", got)
	}
}

func TestLoadConfigNamesEveryBadVariable(t *testing.T) {
	const secretValue = "sup3r-s3cret"
	_, err := loadConfig(mapGetenv(map[string]string{
		"CLOUDINARY_URL":   "cloudinary://key:" + secretValue + "@cloud?upload_prefix=ftp://x",
		"PORT":             "eighty",
		"MAX_UPLOAD_BYTES": "-1",
		"ALLOWED_TYPES":    "image/*,not a type",
		"ALLOWED_ORIGINS":  "example.com",
		"UPLOAD_TIMEOUT":   "soon",
		"SHUTDOWN_TIMEOUT": "0s",
		"LOG_FORMAT":       "xml",
		"LOG_LEVEL":        "loud",
		"UPLOAD_FOLDER":    "../up",
		"MAX_FRAMES":       "0",
		"MAX_PIXELS":       "3000000000", // more than MAX_ANIMATION_PIXELS' default
	}))
	if err == nil {
		t.Fatal("no error for bad configuration")
	}
	for _, name := range []string{"CLOUDINARY_URL", "PORT", "MAX_UPLOAD_BYTES", "ALLOWED_TYPES", "ALLOWED_ORIGINS", "UPLOAD_TIMEOUT", "SHUTDOWN_TIMEOUT", "LOG_FORMAT", "LOG_LEVEL", "UPLOAD_FOLDER", "MAX_FRAMES", "MAX_ANIMATION_PIXELS"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s:\n%v", name, err)
		}
	}
	if strings.Contains(err.Error(), secretValue) {
		t.Errorf("error quotes the secret:\n%v", err)
	}
}

func TestLoadConfigPartialCredentials(t *testing.T) {
	_, err := loadConfig(mapGetenv(map[string]string{"CLOUD_NAME": "c", "API_SECRET": "s"}))
	if err == nil || !strings.Contains(err.Error(), "API_KEY") {
		t.Fatalf("err = %v, want it to name API_KEY", err)
	}
}

func TestBadCloudinaryURLDoesNotLeakSecret(t *testing.T) {
	const secretValue = "leaky-secret-42"
	for _, raw := range []string{
		"cloudinary://key:" + secretValue + "@cloud?timeout=notanumber",
		"cloudinary://key:" + secretValue + "@cloud%zz",
		"https://key:" + secretValue + "@cloud",
		"CLOUDINARY_URL=cloudinary://key:" + secretValue + "@cloud",
		"cloudinary://key:" + secretValue + " @cloud",
		"cloudinary://<your_api_key>:" + secretValue + "@cloud",
	} {
		var out bytes.Buffer
		err := run(context.Background(), nil, mapGetenv(map[string]string{
			"CLOUDINARY_URL": raw, "PORT": "0", "ENV_FILE": filepath.Join(t.TempDir(), "none"),
		}), &out, &out)
		if err == nil {
			t.Fatalf("run accepted CLOUDINARY_URL %q", raw)
		}
		if !strings.Contains(err.Error(), "CLOUDINARY_URL") {
			t.Errorf("error does not name CLOUDINARY_URL: %v", err)
		}
		if strings.Contains(err.Error()+out.String(), secretValue) {
			t.Errorf("the secret leaked: %v\n%s", err, out.String())
		}
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := secret("hunter2")
	var buf bytes.Buffer
	logger := newLogger(&buf, "json", 0)
	logger.Info("x", "secret", s, "creds", cloudinary.Credentials{APISecret: s})
	for _, out := range []string{buf.String(), s.String()} {
		if strings.Contains(out, "hunter2") {
			t.Errorf("secret printed: %s", out)
		}
	}
}

func TestDotEnv(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ".env")
	if err := os.WriteFile(path, []byte("PORT=9999\nLOG_FORMAT=text\n# comment\nAPI_SECRET=from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv, err := withDotEnv(mapGetenv(map[string]string{"PORT": "7000"}), path)
	if err != nil {
		t.Fatal(err)
	}
	if got := getenv("PORT"); got != "7000" {
		t.Errorf("PORT = %q: the real environment must win over .env", got)
	}
	if got := getenv("LOG_FORMAT"); got != "text" {
		t.Errorf("LOG_FORMAT = %q, want the .env value", got)
	}

	if _, err := withDotEnv(mapGetenv(nil), filepath.Join(dir, "missing.env")); err != nil {
		t.Errorf("a missing .env is fine, got %v", err)
	}

	bad := filepath.Join(dir, "bad.env")
	if err := os.WriteFile(bad, []byte("API_SECRET='unterminated-secret-value\nPORT=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = withDotEnv(mapGetenv(nil), bad)
	if err == nil {
		t.Fatal("a malformed .env must stop the server")
	}
	if strings.Contains(err.Error(), "unterminated-secret-value") {
		t.Errorf("the error quotes the file: %v", err)
	}
}

func TestRunWithoutCredentialsFails(t *testing.T) {
	err := run(context.Background(), nil, mapGetenv(map[string]string{
		"STORAGE": "cloudinary", "PORT": "0", "ENV_FILE": filepath.Join(t.TempDir(), "none"),
	}), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "STORAGE=cloudinary") || !strings.Contains(err.Error(), "CLOUDINARY_URL") {
		t.Fatalf("err = %v, want a start-up error naming STORAGE=cloudinary and CLOUDINARY_URL", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("one mistake takes more than one line: %q", err)
	}
}

func TestEnvExampleListsEveryVariable(t *testing.T) {
	b, err := os.ReadFile(".env.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range envconfig.Vars() {
		if !strings.Contains(string(b), v.Name+"=") {
			t.Errorf(".env.example lacks %s", v.Name)
		}
		if !strings.Contains(string(b), v.Help) {
			t.Errorf(".env.example's comment for %s differs from the config table: %q", v.Name, v.Help)
		}
	}
}

func TestLoadConfigAdmission(t *testing.T) {
	cfg, err := loadConfig(mapGetenv(map[string]string{"CLOUDINARY_URL": "cloudinary://key:sec@cloud"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.UploadMemory != 256<<20 || cfg.AdmissionWait != 2*time.Second || cfg.MaxConcurrent != 0 || cfg.MaxPerClient != 8 {
		t.Errorf("defaults: memory %d, wait %s, cap %d, per client %d", cfg.UploadMemory, cfg.AdmissionWait, cfg.MaxConcurrent, cfg.MaxPerClient)
	}
	if r := cfg.MinRate; r.BytesPerSecond != 8192 || r.Grace != 10*time.Second || r.Window != 20*time.Second {
		t.Errorf("MIN_UPLOAD_RATE default: %+v", r)
	}
	cfg, err = loadConfig(mapGetenv(map[string]string{"CLOUDINARY_URL": "cloudinary://key:sec@cloud",
		"UPLOAD_MEMORY": "1GiB", "MAX_CONCURRENT_UPLOADS": "3", "MAX_UPLOADS_PER_CLIENT": "off",
		"MIN_UPLOAD_RATE": "40KB/s,grace=5s,window=30s", "ADMISSION_WAIT": "0s"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.UploadMemory != 1<<30 || cfg.MaxConcurrent != 3 || cfg.MaxPerClient != 0 || cfg.AdmissionWait != 0 ||
		cfg.MinRate.BytesPerSecond != 40000 || cfg.MinRate.Grace != 5*time.Second || cfg.MinRate.Window != 30*time.Second {
		t.Errorf("set values not read: %+v", cfg)
	}
	if cfg, err := loadConfig(mapGetenv(map[string]string{"MIN_UPLOAD_RATE": "off"})); err != nil || !cfg.MinRate.Off() {
		t.Errorf("MIN_UPLOAD_RATE=off: %v, %+v", err, cfg.MinRate)
	}
	_, err = loadConfig(mapGetenv(map[string]string{"CLOUDINARY_URL": "cloudinary://key:sec@cloud",
		"UPLOAD_MEMORY": "10MiB", "MAX_UPLOADS_PER_CLIENT": "-1", "MIN_UPLOAD_RATE": "fast", "ADMISSION_WAIT": "soon"}))
	for _, name := range []string{"UPLOAD_MEMORY", "MAX_UPLOADS_PER_CLIENT", "MIN_UPLOAD_RATE", "ADMISSION_WAIT"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("error %v does not name %s", err, name)
		}
	}
	if err != nil && !strings.Contains(err.Error(), "one chunked upload") {
		t.Errorf("a budget smaller than one chunked upload is not explained: %v", err)
	}
}

// `cp .env.example .env` without editing starts on the local store, with no error.
func TestEnvExampleStartsLocal(t *testing.T) {
	getenv, err := withDotEnv(mapGetenv(nil), ".env.example")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		t.Fatalf(".env.example as it is: %v", err)
	}
	if cfg.Storage != "local" || cfg.Cloudinary != nil {
		t.Errorf(".env.example as it is stores in %q, want local", cfg.Storage)
	}
}

// Every size variable takes plain bytes, SI units (200MB) and binary ones (200MiB), through one parser.
func TestSizesTakeUnits(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		want        int64
		got         func(config) int64
	}{
		{"MAX_UPLOAD_BYTES", "200MB", 200e6, func(c config) int64 { return c.MaxUploadBytes }},
		{"MAX_UPLOAD_BYTES", "200MiB", 200 << 20, func(c config) int64 { return c.MaxUploadBytes }},
		{"MAX_UPLOAD_BYTES", "209715200", 200 << 20, func(c config) int64 { return c.MaxUploadBytes }},
		{"MAX_UPLOAD_BYTES", "2 gb", 2e9, func(c config) int64 { return c.MaxUploadBytes }},
		{"CHUNK_SIZE", "20MB", 20e6, func(c config) int64 { return c.ChunkSize }},
		{"CHUNK_SIZE", "6MiB", 6 << 20, func(c config) int64 { return c.ChunkSize }},
		{"UPLOAD_MEMORY", "300MB", 300e6, func(c config) int64 { return c.UploadMemory }},
		{"UPLOAD_MEMORY", "268435456", 256 << 20, func(c config) int64 { return c.UploadMemory }},
	} {
		cfg, err := loadConfig(mapGetenv(map[string]string{tc.name: tc.value}))
		if err != nil {
			t.Errorf("%s=%s: %v", tc.name, tc.value, err)
			continue
		}
		if got := tc.got(cfg); got != tc.want {
			t.Errorf("%s=%s: %d bytes, want %d", tc.name, tc.value, got, tc.want)
		}
	}
	for _, bad := range []map[string]string{
		{"MAX_UPLOAD_BYTES": "200XB"}, {"MAX_UPLOAD_BYTES": "-1MB"}, {"MAX_UPLOAD_BYTES": "0"}, {"MAX_UPLOAD_BYTES": "1.5GB"},
		{"CHUNK_SIZE": "1MB"}, {"CHUNK_SIZE": "101MiB"}, {"UPLOAD_MEMORY": "lots"},
	} {
		_, err := loadConfig(mapGetenv(bad))
		for name := range bad {
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("%v: err = %v, want one naming %s", bad, err, name)
			}
		}
	}
}

// Every bad value is reported at once, those the server's own checks find too: one line per
// variable, naming it, never quoting a secret.
func TestLoadConfigReportsEveryBadValueAtOnce(t *testing.T) {
	const tok, jwtSecret = "short-token", "too-short-secret-1234"
	bad := map[string]string{
		"UPLOAD_TOKENS":         tok,
		"AUTH_JWKS_URL":         "ftp://idp.example/jwks",
		"AUTH_JWT_SECRET":       jwtSecret,
		"AUTH_COOKIE":           "bad cookie",
		"UPLOAD_FOLDER":         "../up",
		"TRUST_PROXY":           "Fly-Client-IP",
		"SIGNABLE_PARAMS":       "folder",
		"UPLOAD_MEMORY":         "10MiB",
		"MAX_MEMORY_PER_CLIENT": "1MiB",
		"METRICS_TOKEN":         "weak-metrics",
		"PORT":                  "http",
		"LOG_LEVEL":             "loud",
	}
	env := map[string]string{"CLOUDINARY_URL": "cloudinary://key:sec@cloud", "ALLOWED_ORIGINS": "https://app.example", "METRICS": "true"}
	for k, v := range bad {
		env[k] = v
	}
	_, err := loadConfig(mapGetenv(env))
	if err == nil {
		t.Fatal("no error")
	}
	lines := map[string]int{}
	for _, line := range strings.Split(err.Error(), "\n") {
		name, _, _ := strings.Cut(line, "=")
		name, _, _ = strings.Cut(name, ":")
		name, _, _ = strings.Cut(name, " ")
		lines[name]++
		for _, s := range []string{tok, jwtSecret, "weak-metrics"} {
			if strings.Contains(line, s) {
				t.Errorf("a line quotes a secret: %s", line)
			}
		}
	}
	for name := range bad {
		if lines[name] != 1 {
			t.Errorf("%s: %d lines, want 1", name, lines[name])
		}
		delete(lines, name)
	}
	if len(lines) > 0 {
		t.Errorf("lines about good values %v:\n%v", lines, err)
	}
	// A file field that is also a signable parameter, once SIGNABLE_PARAMS is good.
	_, err = loadConfig(mapGetenv(map[string]string{"FILE_FIELDS": "file,tags"}))
	if err == nil || err.Error() != `FILE_FIELDS: "tags" is not a form field name, or is one of SIGNABLE_PARAMS` {
		t.Errorf("err = %v", err)
	}
}
