package config

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/big"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func lookup(env map[string]string) func(string) string {
	return func(name string) string { return env[name] }
}

// The table's rows are well formed, and its defaults load without a word.
func TestTable(t *testing.T) {
	vars := Vars()
	seen := map[string]bool{}
	var heroku []int
	nameRE := regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)
	for _, v := range vars {
		if !nameRE.MatchString(v.Name) || seen[v.Name] {
			t.Errorf("%q: a name must be upper case and appear once", v.Name)
		}
		seen[v.Name] = true
		if v.Help == "" || v.Value == nil {
			t.Errorf("%s: no help or no Value", v.Name)
		}
		if v.Secret && (v.Default != "" || (v.Heroku != nil && v.Heroku.Value != "")) {
			t.Errorf("%s is secret: no default or value may be shown", v.Name)
		}
		if strings.TrimSpace(v.Default) != v.Default {
			t.Errorf("%s: default %q has blanks around it", v.Name, v.Default)
		}
		if v.Heroku != nil {
			heroku = append(heroku, v.Heroku.Order)
		}
	}
	// The Heroku Button's form is one screen: at most eight variables, in a given order.
	slices.Sort(heroku)
	if len(heroku) > 8 || !slices.Equal(heroku, []int{1, 2, 3, 4, 5, 6, 7, 8}[:len(heroku)]) {
		t.Errorf("Heroku orders %v: want at most 8, numbered from 1", heroku)
	}
	c, err := Load(lookup(nil))
	if err != nil {
		t.Fatalf("the defaults do not load: %v", err)
	}
	if c.Port != "8080" || c.MaxUploadBytes != 100<<20 || c.Storage != "local" || c.UploadMemory != DefaultUploadMemory ||
		c.UploadMemorySet || c.MinRate.BytesPerSecond != 8192 || c.RedisTimeout != 100*time.Millisecond || !c.DemoPage ||
		c.Image.MaxAnimationPixels != 2e9 || c.MaxPerClient != 8 || c.MaxConcurrent != 0 || c.MaxConnections != 0 {
		t.Errorf("defaults read as %+v", c)
	}
}

// Load asks lookup for every variable of the table, and for nothing else.
func TestLoadReadsTheTable(t *testing.T) {
	asked := map[string]int{}
	if _, err := Load(func(name string) string { asked[name]++; return "" }); err != nil {
		t.Fatal(err)
	}
	for _, v := range Vars() {
		if asked[v.Name] != 1 {
			t.Errorf("%s read %d times, want once", v.Name, asked[v.Name])
		}
		delete(asked, v.Name)
	}
	if len(asked) > 0 {
		t.Errorf("Load read variables outside the table: %v", asked)
	}
}

// Every bad value is reported at once, one line per variable, each naming it and saying what
// it wants; a secret's value never appears.
func TestLoadReportsEveryBadValue(t *testing.T) {
	const secretValue = "sup3r-s3cret-value"
	bad := map[string]string{
		"CLOUDINARY_URL":         "https://key:" + secretValue + "@cloud",
		"PORT":                   "65536",
		"ALLOWED_ORIGINS":        "example.com",
		"MAX_UPLOAD_BYTES":       "0",
		"MAX_FILES_PER_REQUEST":  "1001",
		"FILE_FIELDS":            "a b",
		"ALLOWED_TYPES":          "image",
		"UPLOAD_TIMEOUT":         "soon",
		"CHUNK_SIZE":             "101MiB",
		"UPLOAD_MEMORY":          "-1",
		"ADMISSION_WAIT":         "-1s",
		"MAX_CONCURRENT_UPLOADS": "-3",
		"MAX_UPLOADS_PER_CLIENT": "many",
		"MAX_MEMORY_PER_CLIENT":  "101%",
		"MAX_CONNECTIONS":        "0",
		"MIN_UPLOAD_RATE":        "8KiB",
		"BODY_IDLE_TIMEOUT":      "0s",
		"CHUNK_RETRY_BACKOFF":    "1",
		"SHUTDOWN_TIMEOUT":       "-25s",
		"STORAGE":                "s3",
		"PUBLIC_URL":             "ftp://x",
		"DEMO_PAGE":              "yes",
		"RATE_LIMIT":             "lots",
		"USER_QUOTA":             "much",
		"REDIS_URL":              "http://:" + secretValue + "@redis",
		"REDIS_TLS_VERIFY":       "perhaps",
		"REDIS_TIMEOUT":          "0",
		"READ_HEADER_TIMEOUT":    "10",
		"LOG_FORMAT":             "xml",
		"LOG_LEVEL":              "loud",
		"STRIP_METADATA":         "some",
		"MAX_PIXELS":             "0",
		"MAX_FRAMES":             "1.5",
		"MAX_ANIMATION_PIXELS":   "-5",
		"MAX_IMAGE_DIMENSION":    "x",
		"METRICS":                "on",
		"METRICS_TOKEN":          secretValue, // METRICS is bad: the check that needs it does not run
	}
	_, err := Load(lookup(bad))
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	named := map[string]int{}
	for _, line := range lines {
		name := leadingName(line)
		named[name]++
		if _, ok := bad[name]; !ok {
			t.Errorf("a line about %q, which is not one of the bad values: %s", name, line)
		}
		if strings.Contains(line, secretValue) {
			t.Errorf("a line quotes a secret: %s", line)
		}
	}
	for name := range bad {
		if name == "METRICS_TOKEN" {
			continue // any value is good to the table; the server checks its strength
		}
		if named[name] != 1 {
			t.Errorf("%s: %d lines, want 1:\n%v", name, named[name], err)
		}
	}
	// Want's lines quote the value, as the operator wrote it.
	for _, want := range []string{`PORT="65536": want a TCP port number`, `MAX_UPLOAD_BYTES="0": want a positive size`,
		`STORAGE="s3": want auto, cloudinary or local`, `LOG_LEVEL="loud": want debug, info, warn or error`,
		`ALLOWED_ORIGINS: "example.com" is not an origin like https://example.com`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("no line %q in:\n%v", want, err)
		}
	}
}

// leadingName is the variable a line of Load's error starts with.
func leadingName(line string) string {
	i := strings.IndexFunc(line, func(r rune) bool { return !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') })
	if i < 0 {
		return line
	}
	return line[:i]
}

// Checks run in order after the rows, only when the variables they need read well, and their
// errors join the rows'.
func TestChecks(t *testing.T) {
	var ran []string
	check := func(name string, err error) Check {
		return Check{Vars: []string{name}, Check: func(*Config) error { ran = append(ran, name); return err }}
	}
	_, err := Load(lookup(map[string]string{"PORT": "x", "STORAGE": "cloudinary"}),
		check("PORT", errors.New("never")),
		check("LOG_LEVEL", Bad("LOG_LEVEL", "something else")),
		check("UPLOAD_PRESET", errors.New("a preset of another account")),
		check("API_SECRET", errors.New("API_SECRET: leaked "+strings.Repeat("z", minSecretToRedact))))
	if !slices.Equal(ran, []string{"LOG_LEVEL", "UPLOAD_PRESET", "API_SECRET"}) {
		t.Errorf("checks ran: %v, want all but PORT's, in order", ran)
	}
	want := `PORT="x": want a TCP port number
STORAGE=cloudinary: no Cloudinary credentials: set CLOUDINARY_URL, or CLOUD_NAME, API_KEY and API_SECRET
LOG_LEVEL="info": want something else
UPLOAD_PRESET: a preset of another account
API_SECRET: leaked zzzzzz`
	if err == nil || err.Error() != want {
		t.Errorf("err =\n%v\nwant\n%s", err, want)
	}

	// A secret's value in a message withholds the message.
	sec := strings.Repeat("z", minSecretToRedact)
	_, err = Load(lookup(map[string]string{"API_SECRET": sec, "API_KEY": "k", "CLOUD_NAME": "c"}),
		check("UPLOAD_PRESET", errors.New("the preset does not take "+sec)))
	if err == nil || strings.Contains(err.Error(), sec) || !strings.Contains(err.Error(), "API_SECRET: not valid") {
		t.Errorf("err = %v, want the message withheld, naming API_SECRET", err)
	}
	_, err = Load(lookup(map[string]string{"METRICS_TOKEN": "tok"}), Check{Vars: []string{"METRICS_TOKEN"}, Check: func(*Config) error { return Want("a longer token") }})
	if err == nil || err.Error() != "METRICS_TOKEN is set but METRICS is not true: set METRICS=true to serve /metrics\nMETRICS_TOKEN: want a longer token" {
		t.Errorf("err = %v, want a secret's Want without its value", err)
	}
}

func TestEnvFile(t *testing.T) {
	if got := EnvFile(lookup(nil)); got != ".env" {
		t.Errorf("EnvFile = %q, want the default .env", got)
	}
	if got := EnvFile(lookup(map[string]string{"ENV_FILE": " conf/prod.env "})); got != "conf/prod.env" {
		t.Errorf("EnvFile = %q", got)
	}
}

func TestCheckOfAnUnknownVariablePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	_, _ = Load(lookup(nil), Check{Vars: []string{"NO_SUCH_VARIABLE"}, Check: func(*Config) error { return nil }})
}

func TestCredentials(t *testing.T) {
	c, err := Load(lookup(map[string]string{"CLOUDINARY_URL": "cloudinary://key:sec@cloud"}))
	if err != nil || c.Cloudinary == nil || c.Cloudinary.CloudName != "cloud" || c.Cloudinary.APISecret != "sec" || c.Storage != "cloudinary" {
		t.Errorf("CLOUDINARY_URL: %v, %+v, storage %q", err, c.Cloudinary, c.Storage)
	}
	c, err = Load(lookup(map[string]string{"CLOUD_NAME": "c", "API_KEY": "k", "API_SECRET": "s", "CLOUDINARY_UPLOAD_PREFIX": "http://127.0.0.1:9"}))
	if err != nil || c.Cloudinary.Params.Get("upload_prefix") != "http://127.0.0.1:9" {
		t.Errorf("separate credentials: %v, %+v", err, c.Cloudinary)
	}
	_, err = Load(lookup(map[string]string{"CLOUD_NAME": "c", "STORAGE": "cloudinary"}))
	if err == nil || err.Error() != "API_KEY, API_SECRET: missing; set CLOUD_NAME, API_KEY and API_SECRET together, or CLOUDINARY_URL" {
		t.Errorf("err = %v, want the missing ones named, and nothing about STORAGE", err)
	}
	_, err = Load(lookup(map[string]string{"CLOUDINARY_URL": "cloudinary://k:s@c?signature_algorithm=md5&signature_version=3"}))
	if err == nil || strings.Count(err.Error(), "CLOUDINARY_URL: ") != 2 {
		t.Errorf("err = %v, want two lines about CLOUDINARY_URL", err)
	}
}

func TestValues(t *testing.T) {
	var c Config
	for _, tc := range []struct {
		v    Value
		in   string
		ok   bool
		read func() any
		want any
	}{
		{Int(&c.MaxFilesPerRequest, 1, 1000, ""), "1000", true, func() any { return c.MaxFilesPerRequest }, 1000},
		{Int(&c.MaxFilesPerRequest, 1, 1000, ""), "1001", false, nil, nil},
		{Int(&c.MaxFilesPerRequest, 1, 1000, ""), "+7", true, func() any { return c.MaxFilesPerRequest }, 7},
		{IntOr(&c.MaxConcurrent, "off", ""), "OFF", true, func() any { return c.MaxConcurrent }, 0},
		{IntOr(&c.MaxConcurrent, "off", ""), "0", true, func() any { return c.MaxConcurrent }, 0},
		{IntOr(&c.MaxConcurrent, "off", ""), "3", true, func() any { return c.MaxConcurrent }, 3},
		{IntOr(&c.MaxConnections, "auto", ""), "0", false, nil, nil},
		{IntOr(&c.MaxConnections, "auto", ""), "Auto", true, func() any { return c.MaxConnections }, 0},
		{Size(&c.ChunkSize, 10, 100, ""), "1 kb", false, nil, nil},
		{Size(&c.ChunkSize, 10, 2000, ""), "1 kb", true, func() any { return c.ChunkSize }, int64(1000)},
		{Duration(&c.AdmissionWait, true, ""), "0s", true, func() any { return c.AdmissionWait }, time.Duration(0)},
		{Duration(&c.UploadTimeout, false, ""), "0s", false, nil, nil},
		{Bool(&c.Metrics), "T", true, func() any { return c.Metrics }, true},
		{OneOf(&c.LogFormat, "json", "text"), "JSON", false, nil, nil},
		{List(&c.AllowedTypes, true, typePattern, "one"), "Image/PNG, ,image/*", true, func() any { return strings.Join(c.AllowedTypes, ",") }, "image/png,image/*"},
		{List(&c.AllowedTypes, true, typePattern, "one"), ", ,", false, nil, nil},
		{List(&c.AllowedOrigins, false, origin, ""), ",", true, func() any { return len(c.AllowedOrigins) }, 0},
		{Func(&c.PublicURL, publicURL), "https://u.example/", true, func() any { return c.PublicURL }, "https://u.example"},
		{Func(&c.PublicURL, publicURL), "https://user@u.example", false, nil, nil},
		{Func(&c.MinRate, parseMinRate), "40KB/s,grace=5s,window=30s", true, func() any { return fmt.Sprint(c.MinRate.BytesPerSecond, c.MinRate.Grace, c.MinRate.Window) }, "40000 5s 30s"},
		{Func(&c.MinRate, parseMinRate), "8KiB/s,window=0s", false, nil, nil},
		{Func(&c.ClientMemoryShare, memoryShare), "0%", false, nil, nil},
		{Func(&c.ClientMemoryShare, memoryShare), "64MiB", true, func() any { return c.ClientMemoryShare }, "64MiB"},
	} {
		err := tc.v.read(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err = %v, want ok %v", tc.in, err, tc.ok)
			continue
		}
		if tc.ok {
			if got := tc.read(); got != tc.want {
				t.Errorf("%q read as %v, want %v", tc.in, got, tc.want)
			}
		}
	}
}

func TestClientMemory(t *testing.T) {
	for _, tc := range []struct {
		in            string
		budget, least int64
		want          int64
		ok            bool
	}{
		{"off", 100, 10, 0, true},
		{"25%", 1000, 10, 250, true},
		{"1%", 1000, 50, 50, true}, // raised to what one upload holds
		{"100 %", 1000, 0, 1000, true},
		{"2000", 1000, 10, 2000, true},
		{"5", 1000, 10, 0, false},
		{"0", 1000, 0, 0, false},
		{"half", 1000, 0, 0, false},
	} {
		got, err := ClientMemory(tc.in, tc.budget, tc.least)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ClientMemory(%q, %d, %d) = %d, %v; want %d, ok %v", tc.in, tc.budget, tc.least, got, err, tc.want, tc.ok)
		}
	}
}

// sizeRE is ParseSize's grammar, written apart from it for the reference below: digits, blanks
// (what unicode.IsSpace calls space), a unit.
var sizeRE = regexp.MustCompile(`^(?i)([0-9]+)[\t\n\v\f\r \x{85}\x{A0}\p{Z}]*(b|kb|kib|mb|mib|gb|gib)?$`)

// referenceSize is ParseSize computed another way: the grammar as a regular expression, the
// product with math/big, so that overflow is a comparison and not a division.
func referenceSize(s string) (int64, bool) {
	m := sizeRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, false
	}
	n, ok := new(big.Int).SetString(m[1], 10)
	if !ok {
		return 0, false
	}
	mult := map[string]int64{"": 1, "b": 1, "kb": 1e3, "kib": 1 << 10, "mb": 1e6, "mib": 1 << 20, "gb": 1e9, "gib": 1 << 30}[strings.ToLower(m[2])]
	n.Mul(n, big.NewInt(mult))
	if !n.IsInt64() {
		return 0, false
	}
	return n.Int64(), true
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "200MB", "200 MiB", " 2 gb ", "9223372036854775807", "9223372036854775807B",
		"9223372036854775808", "8589934592GiB", "8589934591 GiB", "1.5GB", "-1", "+1", "1e3", "KB", "", "1 k b", "１"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseSize(s)
		want, ok := referenceSize(s)
		if (err == nil) != ok || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; the reference says %d, %v", s, got, err, want, ok)
		}
		// Plain digits read as strconv.ParseInt reads them.
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 && !strings.HasPrefix(s, "+") {
			if got != n {
				t.Errorf("ParseSize(%q) = %d, strconv says %d", s, got, n)
			}
		}
		if err == nil && (got < 0 || got > math.MaxInt64) {
			t.Errorf("ParseSize(%q) = %d", s, got)
		}
	})
}

// A loaded Config printed or logged whole shows none of its secrets.
func TestConfigNeverPrintsSecrets(t *testing.T) {
	secrets := map[string]string{
		"CLOUDINARY_URL":  "cloudinary://key:url-secret-1@cloud",
		"UPLOAD_TOKENS":   "upload-token-0123456789",
		"AUTH_JWT_SECRET": "jwt-secret-0123456789abcdef0123456789",
		"REDIS_URL":       "redis://:redis-password-1@127.0.0.1:6379",
		"METRICS_TOKEN":   "metrics-token-0123456789",
		"METRICS":         "true",
	}
	c, err := Load(lookup(secrets))
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "config", c, "credentials", c.Cloudinary)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "config", c)
	out := fmt.Sprintf("%v %+v %#v %v %+v", c, c, c, c.Cloudinary, *c.Cloudinary) + logged.String()
	for _, s := range []string{"url-secret-1", "upload-token-0123456789", "jwt-secret-0123456789", "redis-password-1", "metrics-token-0123456789"} {
		if strings.Contains(out, s) {
			t.Errorf("%s printed", s)
		}
	}
}
