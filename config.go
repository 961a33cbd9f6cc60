package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gabriel-vasile/mimetype"
	"github.com/joho/godotenv"

	"cloudinary-upload-api/internal/admission"
	"cloudinary-upload-api/internal/cloudinary"
	"cloudinary-upload-api/internal/imageguard"
	"cloudinary-upload-api/internal/ratelimit"
)

// envVar describes one environment variable: the loader, --help, .env.example, app.json and
// docs/configuration.md all follow this table.
type envVar struct {
	name   string
	def    string
	help   string
	secret bool
}

// envVars is the one table of the server's variables. docs/configuration.md is generated from it
// (tools/gendocs reads it as source: keep each row string literals):
//
//go:generate go run ./tools/gendocs -config config.go -out docs/configuration.md
func envVars() []envVar {
	return []envVar{
		{name: "CLOUDINARY_URL", help: "Cloudinary credentials as cloudinary://API_KEY:API_SECRET@CLOUD_NAME, with optional query parameters such as upload_prefix (what the SDK and Heroku's Cloudinary add-on use)", secret: true},
		{name: "CLOUD_NAME", help: "Cloudinary cloud name, when CLOUDINARY_URL is not set"},
		{name: "API_KEY", help: "Cloudinary API key, when CLOUDINARY_URL is not set"},
		{name: "API_SECRET", help: "Cloudinary API secret, when CLOUDINARY_URL is not set; never logged", secret: true},
		{name: "CLOUDINARY_UPLOAD_PREFIX", help: "Upload API base URL with CLOUD_NAME/API_KEY/API_SECRET (default https://api.cloudinary.com)"},
		{name: "ENV_FILE", def: ".env", help: "File of KEY=value lines read at start-up; a missing file is fine, the real environment wins"},
		{name: "PORT", def: "8080", help: "TCP port to listen on (Heroku sets it)"},
		{name: "ALLOWED_ORIGINS", def: "*", help: "Comma-separated origins allowed by CORS, or * for any"},
		{name: "MAX_UPLOAD_BYTES", def: "104857600", help: "Largest accepted file, in bytes or with a unit (200MB, 200MiB; the default is 100 MiB); may be far larger, since files over Cloudinary's 100 MiB single-request limit go up in chunks"},
		{name: "MAX_FILES_PER_REQUEST", def: "10", help: "File parts one POST /upload may carry, each uploaded in order; a file past it is answered with 400 and the rest of the form is not read. The request body may be this many times MAX_UPLOAD_BYTES"},
		{name: "FILE_FIELDS", def: "file,files,files[],filepond", help: "Names of the form parts taken as files (a part with a filename); a file under another name is refused with 400"},
		{name: "ALLOWED_TYPES", def: "image/*", help: "Comma-separated MIME types allowed, sniffed from the content; type/* for a family, * for anything. image/* is the images whose size the server checks (JPEG, PNG, GIF, WebP, BMP, TIFF, PSD, ICO, HEIC, AVIF); any other image type (SVG, JPEG XL...) is accepted unchecked only when named"},
		{name: "UPLOAD_FOLDER", help: "Cloudinary folder that every upload goes into; with sign-in on, {sub} in it is each user's own folder name (empty: users/{sub}; set without {sub}: UPLOAD_FOLDER/users/{sub})"},
		{name: "UPLOAD_PRESET", help: "Signed upload preset applied to every upload"},
		{name: "UPLOAD_TIMEOUT", def: "60s", help: "How long Cloudinary may take to take the next piece of the file, or to answer once it has all of it"},
		{name: "CHUNK_SIZE", def: "20000000", help: "Bytes per chunk when a file goes up in chunks (size unknown or over 100 MiB), or a size with a unit (20MB); at least 5MiB, at most 100MiB; one chunk buffer per upload in flight"},
		{name: "UPLOAD_MEMORY", help: "Memory the uploads in flight may hold at once, in bytes or with a unit (KB, MB, GB, KiB, MiB, GiB); unset: half of the container's memory limit (cgroup v2 memory.max or v1 memory.limit_in_bytes), or 256MiB without one. A streamed upload holds about 3.4 MiB (buffers, and room for an image's metadata), a chunked one up to CHUNK_SIZE more, reserved 1 MiB at a time as each chunk's bytes arrive; an upload (or a chunk) that finds it spent waits ADMISSION_WAIT, then gets 503 with Retry-After. Also sets the Go runtime's memory limit (unless GOMEMLIMIT is set) to this plus 32 MiB, kept under 90% of the container's limit; the start-up log says what was chosen and why"},
		{name: "ADMISSION_WAIT", def: "2s", help: "How long an upload may wait for UPLOAD_MEMORY (or MAX_CONCURRENT_UPLOADS), and a chunk for the memory to fill it, before it gets 503 with Retry-After"},
		{name: "MAX_CONCURRENT_UPLOADS", def: "off", help: "Optional hard cap on uploads handled at once, on top of UPLOAD_MEMORY (more wait ADMISSION_WAIT, then get 503), or off"},
		{name: "MAX_UPLOADS_PER_CLIENT", def: "8", help: "Uploads one client (as RATE_LIMIT names clients) may have in flight at once; one more gets 429 with Retry-After at once; off disables. Leaves room for a browser's 6 connections per host"},
		{name: "MAX_MEMORY_PER_CLIENT", def: "25%", help: "Share of UPLOAD_MEMORY one client (as RATE_LIMIT names clients) may hold at once, counted by each server alone: a percentage, bytes (or KiB, MiB, GiB), or off. An upload past it gets 429 at once; a chunk past it waits ADMISSION_WAIT for the client's own memory, then gets 429. At least one chunked upload's worth (raised to it when given as a percentage)"},
		{name: "MAX_CONNECTIONS", def: "auto", help: "Connections open at once; more wait in the listen queue until one closes (the server degrades by waiting, never by running out of file descriptors). auto: the process's file limit (raised to its hard limit at start-up) less a quarter (at least 256) for Cloudinary, Redis and files"},
		{name: "MIN_UPLOAD_RATE", def: "8KiB/s", help: "Slowest body accepted, averaged over a sliding window of 20 s after a grace of 10 s (counting only time spent waiting on the client); slower gets 408. Options: 8KiB/s,grace=10s,window=20s; off disables"},
		{name: "BODY_IDLE_TIMEOUT", def: "60s", help: "How long a client may send nothing while its upload is being read before it gets 408"},
		{name: "RESUMABLE_EXPIRY", def: "24h", help: "How long a resumable (tus) upload at /upload/resumable/ may take from its creation to its last byte, and its answer stays available after (Upload-Expires); then it is swept"},
		{name: "CHUNK_RETRY_BACKOFF", def: "500ms", help: "Wait before the first retry of a failed chunk; doubles for each of the 3 retries"},
		{name: "SHUTDOWN_TIMEOUT", def: "25s", help: "How long in-flight uploads may run after SIGTERM (Heroku kills at 30s)"},
		{name: "STORAGE", def: "auto", help: "Where uploads go: cloudinary, local (files under UPLOAD_DIR, served at /files/), or auto: Cloudinary when credentials are set, else local"},
		{name: "UPLOAD_DIR", def: "uploads", help: "Directory of the local store (STORAGE=local or auto without credentials); created if missing"},
		{name: "PUBLIC_URL", help: "Base URL of this server for the local store's url/secure_url, e.g. https://uploads.example.com; empty: taken from each request's Host (and X-Forwarded-Proto)"},
		{name: "DEMO_PAGE", def: "true", help: "Serve the upload page at / (true or false)"},
		{name: "UPLOAD_TOKENS", help: "Comma-separated bearer tokens; when set, /upload and /sign need Authorization: Bearer <token> (at least 16 characters each, e.g. openssl rand -hex 32); never logged", secret: true},
		{name: "AUTH_JWKS_URL", help: "Sign-in: the identity provider's JWKS (https; http only for a loopback host); /upload and /sign then need a user's token signed by one of its keys (RS, PS, ES or EdDSA), in Authorization: Bearer or AUTH_COOKIE"},
		{name: "AUTH_ISSUER", help: "Sign-in: when set, a token's iss must equal it (e.g. https://example.us.auth0.com/)"},
		{name: "AUTH_AUDIENCE", help: "Sign-in: when set, a token's aud must contain it"},
		{name: "AUTH_JWT_SECRET", help: "Sign-in: the shared secret (at least 32 bytes) of HS256 tokens minted by the app's own backend; with or without AUTH_JWKS_URL", secret: true},
		{name: "AUTH_COOKIE", help: "Sign-in: the cookie that carries the token when there is no Authorization header (Clerk's __session); needs ALLOWED_ORIGINS other than *"},
		{name: "RATE_LIMIT", def: "60/min,burst=20", help: "Requests per client to /upload and /sign: N/s, N/min or N/h, optional ,burst=B (default B=N); off disables"},
		{name: "USER_QUOTA", def: "off", help: "Bytes each client may store per window (the signed-in user, else the address as RATE_LIMIT names clients): SIZE/WINDOW such as 500MB/day, 2GB/30d or 1GiB/12h (KB, MB, GB, TB or KiB, MiB, GiB, TiB; day, hour, week or a number with s, m, h or d), the window starting at the client's first upload. Past it 429 with Retry-After, before the body is read when it has a Content-Length; a failed upload spends nothing. Shared through REDIS_URL when set; off disables"},
		{name: "TRUST_PROXY", def: "false", help: "Where the client's address comes from, for the per-client limits: false (the connection), true or heroku (the right-most X-Forwarded-For entry, which Heroku's router appends), fly (Fly-Client-IP), cloudflare (CF-Connecting-IP), or xff:N (the Nth X-Forwarded-For entry from the right, e.g. xff:2 behind Google's load balancer); a request without that header counts as the connection's address. See docs/deploy.md"},
		{name: "REDIS_URL", help: "Redis (Heroku Key-Value Store) as redis:// or rediss:// (TLS): RATE_LIMIT, USER_QUOTA and the uploads in flight per client are then shared by every server that uses it; empty: each server counts alone", secret: true},
		{name: "REDIS_TLS_VERIFY", def: "true", help: "Check the certificate of a rediss:// REDIS_URL; false on Heroku, whose Redis certificates are self-signed"},
		{name: "REDIS_TIMEOUT", def: "100ms", help: "Deadline of every call to Redis; past it, or when Redis is down, the limits are counted by this server alone until Redis answers again"},
		{name: "SIGNABLE_PARAMS", def: "public_id,tags,context", help: "Upload parameters a client may set, in POST /upload's form and POST /sign: an allow-list from public_id, tags, context, metadata, display_name, face_coordinates, custom_coordinates (nothing that chooses where a file goes, what it overwrites or where Cloudinary calls back)"},
		{name: "READ_HEADER_TIMEOUT", def: "10s", help: "How long a client may take to send the request line and headers (slow clients are cut off)"},
		{name: "LOG_FORMAT", def: "auto", help: "Log format: json, text, or auto: text when stdout is a terminal (with the page's address first), else json"},
		{name: "LOG_LEVEL", def: "info", help: "Log level: debug, info, warn or error"},
		{name: "STRIP_METADATA", def: "gps", help: "Metadata removed from JPEG, PNG and WebP uploads, without re-encoding: gps (the location only), all (everything but the colour profile and orientation) or off"},
		{name: "MAX_PIXELS", def: "50000000", help: "Largest image accepted, in pixels (width × height read from the header; each frame of an animation, page of a TIFF or image of an ICO too); larger gets 413 before a byte goes to storage"},
		{name: "MAX_FRAMES", def: "1000", help: "Most frames of an animated GIF, PNG or WebP (or pages of a TIFF, images of an ICO) accepted; more get 413"},
		{name: "MAX_ANIMATION_PIXELS", def: "2000000000", help: "Most pixels of all the frames of an image together (each frame's width × height, added up); more get 413. At least MAX_PIXELS"},
		{name: "MAX_IMAGE_DIMENSION", def: "20000", help: "Longest side of an accepted image, in pixels; longer gets 413"},
		{name: "METRICS", def: "false", help: "Serve Prometheus metrics at GET /metrics: true or false"},
		{name: "METRICS_TOKEN", help: "Bearer token that GET /metrics requires (needs METRICS=true; at least 16 characters, e.g. openssl rand -hex 32); empty: /metrics is open to anyone who can reach it", secret: true},
	}
}

// fileFieldRE is what a FILE_FIELDS name may be: what the upload libraries use, files[] included.
var fileFieldRE = regexp.MustCompile(`^[A-Za-z0-9_.\-\[\]]{1,64}$`)

// secret is a string that never prints itself (internal/cloudinary's, which holds the API secret).
type secret = cloudinary.Secret

// config is read once at start-up; a bad value stops the server.
type config struct {
	port               string
	cloudinary         *cloudinary.Credentials // nil when no credentials are set
	allowedOrigins     []string
	maxUploadBytes     int64
	allowedTypes       []string
	uploadFolder       string
	uploadPreset       string
	uploadTimeout      time.Duration
	resumableExpiry    time.Duration // RESUMABLE_EXPIRY
	shutdownTimeout    time.Duration
	chunkSize          int64
	maxConcurrent      int   // hard cap on uploads at once; 0: none
	uploadMemory       int64 // the admission budget, in bytes
	uploadMemorySet    bool  // UPLOAD_MEMORY was given; else run() takes it from the container's limit
	admissionWait      time.Duration
	maxPerClient       int    // 0: no per-client cap
	maxMemoryPerClient int64  // 0: no per-client share of uploadMemory
	clientMemoryShare  string // MAX_MEMORY_PER_CLIENT as set, for run() once it knows uploadMemory
	maxConnections     int    // 0: auto, sized from the file limit at start-up
	minRate            admission.Rule
	bodyIdleTimeout    time.Duration
	retryBackoff       time.Duration
	logFormat          string
	logLevel           slog.Level
	storage            string // "cloudinary" or "local", resolved from STORAGE at load time
	uploadDir          string
	publicURL          string // without a trailing slash; empty: from each request
	demoPage           bool
	metrics            bool   // serve GET /metrics
	metricsToken       secret // empty: no token needed

	uploadTokens       *tokenSet // nil: anyone may upload
	signIn             signInConfig
	rateLimit          ratelimit.Spec
	userQuota          ratelimit.QuotaSpec // USER_QUOTA; Off: none
	trustProxy         proxyTrust
	redisURL           secret // empty: no Redis
	redisTLSVerify     bool
	redisTimeout       time.Duration
	signableParams     []string
	maxFilesPerRequest int
	fileFields         []string
	readHeaderTimeout  time.Duration
	image              imageguard.Options // STRIP_METADATA, MAX_PIXELS, MAX_IMAGE_DIMENSION, MAX_FRAMES, MAX_ANIMATION_PIXELS
}

// loadConfig reads every variable of envVars through getenv and reports all bad values at once.
func loadConfig(getenv func(string) string) (config, error) {
	get := func(name string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		for _, v := range envVars() {
			if v.name == name {
				return v.def
			}
		}
		return ""
	}
	var cfg config
	var problems []error
	bad := func(name, want string) {
		problems = append(problems, fmt.Errorf("%s=%q: want %s", name, get(name), want))
	}

	cfg.port = get("PORT")
	if n, err := strconv.Atoi(cfg.port); err != nil || n < 0 || n > math.MaxUint16 {
		bad("PORT", "a TCP port number")
	}

	creds, credErr := loadCredentials(get)
	if credErr != nil {
		problems = append(problems, credErr)
	}
	cfg.cloudinary = creds

	cfg.allowedOrigins = splitList(get("ALLOWED_ORIGINS"))
	for _, o := range cfg.allowedOrigins {
		if o == "*" {
			continue
		}
		if u, err := url.Parse(o); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" {
			problems = append(problems, fmt.Errorf("ALLOWED_ORIGINS: %q is not an origin like https://example.com", o))
		}
	}

	if n, err := parseBytes(get("MAX_UPLOAD_BYTES")); err == nil && n > 0 {
		cfg.maxUploadBytes = n
	} else {
		bad("MAX_UPLOAD_BYTES", "a positive size in bytes, or with KB, MB, GB, KiB, MiB or GiB (e.g. 200MB)")
	}

	cfg.allowedTypes = splitList(strings.ToLower(get("ALLOWED_TYPES")))
	for _, t := range cfg.allowedTypes {
		if !validTypePattern(t) {
			problems = append(problems, fmt.Errorf("ALLOWED_TYPES: %q is not a MIME type, type/* or *", t))
		}
	}
	if len(cfg.allowedTypes) == 0 {
		bad("ALLOWED_TYPES", "at least one MIME type")
	}

	var signInErr error
	cfg.signIn, signInErr = loadSignIn(get)
	if signInErr != nil {
		problems = append(problems, signInErr)
	}
	cfg.uploadFolder = get("UPLOAD_FOLDER")
	if err := validateFolder(cfg.uploadFolder, cfg.signIn.on()); err != nil {
		problems = append(problems, err)
	}
	if cfg.signIn.on() {
		cfg.uploadFolder = userFolderTemplate(cfg.uploadFolder)
	}
	if cfg.signIn.cookie != "" && slices.Contains(splitList(get("ALLOWED_ORIGINS")), "*") {
		problems = append(problems, errors.New("AUTH_COOKIE needs ALLOWED_ORIGINS set to your pages' origins, not *: else any site could make a signed-in visitor's browser upload"))
	}
	cfg.uploadPreset = get("UPLOAD_PRESET")

	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{{"UPLOAD_TIMEOUT", &cfg.uploadTimeout}, {"SHUTDOWN_TIMEOUT", &cfg.shutdownTimeout}, {"READ_HEADER_TIMEOUT", &cfg.readHeaderTimeout},
		{"BODY_IDLE_TIMEOUT", &cfg.bodyIdleTimeout}, {"CHUNK_RETRY_BACKOFF", &cfg.retryBackoff}, {"RESUMABLE_EXPIRY", &cfg.resumableExpiry}} {
		if v, err := time.ParseDuration(get(d.name)); err == nil && v > 0 {
			*d.dst = v
		} else {
			bad(d.name, "a positive duration such as 30s or 2m")
		}
	}

	switch v := get("STORAGE"); v {
	case "auto":
		cfg.storage = "local"
		if creds != nil {
			cfg.storage = "cloudinary"
		}
	case "local", "cloudinary":
		cfg.storage = v
	default:
		bad("STORAGE", "auto, cloudinary or local")
	}
	if cfg.storage == "cloudinary" && creds == nil && credErr == nil {
		problems = append(problems, errors.New("STORAGE=cloudinary: no Cloudinary credentials: set CLOUDINARY_URL, or CLOUD_NAME, API_KEY and API_SECRET"))
	}
	cfg.uploadDir = get("UPLOAD_DIR")
	cfg.publicURL = strings.TrimSuffix(get("PUBLIC_URL"), "/")
	if cfg.publicURL != "" {
		if u, err := url.Parse(cfg.publicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			bad("PUBLIC_URL", "an http(s) URL such as https://uploads.example.com")
		}
	}
	if b, err := strconv.ParseBool(get("DEMO_PAGE")); err == nil {
		cfg.demoPage = b
	} else {
		bad("DEMO_PAGE", "true or false")
	}
	var err error
	if cfg.uploadTokens, err = parseTokens(getenv("UPLOAD_TOKENS")); err != nil {
		problems = append(problems, err) // names the variable, never a token
	}
	if cfg.rateLimit, err = ratelimit.Parse(get("RATE_LIMIT")); err != nil {
		problems = append(problems, err)
	}
	if cfg.userQuota, err = ratelimit.ParseQuota(get("USER_QUOTA")); err != nil {
		problems = append(problems, err)
	}
	if cfg.trustProxy, err = parseProxyTrust(get("TRUST_PROXY")); err != nil {
		problems = append(problems, err)
	}
	cfg.redisURL = secret(get("REDIS_URL"))
	if b, err := strconv.ParseBool(get("REDIS_TLS_VERIFY")); err == nil {
		cfg.redisTLSVerify = b
	} else {
		bad("REDIS_TLS_VERIFY", "true or false")
	}
	if d, err := time.ParseDuration(get("REDIS_TIMEOUT")); err == nil && d > 0 {
		cfg.redisTimeout = d
	} else {
		bad("REDIS_TIMEOUT", "a positive duration such as 100ms")
	}
	if cfg.redisURL != "" {
		if _, err := ratelimit.ParseURL(string(cfg.redisURL), cfg.redisTLSVerify, cfg.redisTimeout); err != nil {
			problems = append(problems, err) // names the variable, never the URL: it carries the password
		}
	}
	if cfg.signableParams, err = parseSignableParams(get("SIGNABLE_PARAMS")); err != nil {
		problems = append(problems, err)
	}
	if n, err := strconv.Atoi(get("MAX_FILES_PER_REQUEST")); err == nil && n >= 1 && n <= 1000 {
		cfg.maxFilesPerRequest = n
	} else {
		bad("MAX_FILES_PER_REQUEST", "a number of files from 1 to 1000")
	}
	cfg.fileFields = splitList(get("FILE_FIELDS"))
	for _, f := range cfg.fileFields {
		if !fileFieldRE.MatchString(f) || slices.Contains(cfg.signableParams, f) {
			problems = append(problems, fmt.Errorf("FILE_FIELDS: %q is not a form field name, or is one of SIGNABLE_PARAMS", truncate(f, 64)))
		}
	}
	if len(cfg.fileFields) == 0 {
		bad("FILE_FIELDS", "at least one form field name")
	}
	if creds != nil {
		if err := cloudinary.CheckSigningParams(creds.Params); err != nil {
			problems = append(problems, prefixEach("CLOUDINARY_URL: ", err))
		}
	}
	if n, err := parseBytes(get("CHUNK_SIZE")); err == nil && n >= minChunkBytes && n <= maxSingleRequestBytes {
		cfg.chunkSize = n
	} else {
		bad("CHUNK_SIZE", "a size from 5MiB (5242880 bytes, Cloudinary's minimum) to 100MiB (104857600)")
	}
	for _, c := range []struct {
		name string
		dst  *int
	}{{"MAX_CONCURRENT_UPLOADS", &cfg.maxConcurrent}, {"MAX_UPLOADS_PER_CLIENT", &cfg.maxPerClient}} {
		if v := get(c.name); strings.EqualFold(v, "off") || v == "0" {
			*c.dst = 0
		} else if n, err := strconv.Atoi(v); err == nil && n > 0 {
			*c.dst = n
		} else {
			bad(c.name, "a positive number, or off")
		}
	}
	cfg.uploadMemory = defaultUploadMemory // unset: run() takes half of the container's limit, if there is one
	if v := get("UPLOAD_MEMORY"); v != "" {
		cfg.uploadMemorySet = true
		if n, err := parseBytes(v); err == nil && n > 0 {
			cfg.uploadMemory = n
			// One upload of the largest kind must fit, or it would wait for nothing.
			if need := cfg.uploadReservation(true); cfg.storage == "cloudinary" && cfg.chunkSize > 0 && n < need {
				bad("UPLOAD_MEMORY", fmt.Sprintf("at least %d bytes: one chunked upload holds CHUNK_SIZE plus its buffers", need))
			}
		} else {
			bad("UPLOAD_MEMORY", "a positive size in bytes, or with KB, MB, GB, KiB, MiB or GiB (e.g. 256MiB)")
		}
	}
	cfg.clientMemoryShare = get("MAX_MEMORY_PER_CLIENT")
	cfg.maxMemoryPerClient, err = parseClientMemory(cfg.clientMemoryShare, cfg.uploadMemory, cfg.uploadReservation(true))
	if err != nil {
		bad("MAX_MEMORY_PER_CLIENT", err.Error())
	}
	if v := get("MAX_CONNECTIONS"); !strings.EqualFold(v, "auto") {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			cfg.maxConnections = n
		} else {
			bad("MAX_CONNECTIONS", "a positive number of connections, or auto")
		}
	}
	if v, err := time.ParseDuration(get("ADMISSION_WAIT")); err == nil && v >= 0 {
		cfg.admissionWait = v
	} else {
		bad("ADMISSION_WAIT", "a duration such as 2s (0: refuse at once)")
	}
	if cfg.minRate, err = parseMinRate(get("MIN_UPLOAD_RATE")); err != nil {
		problems = append(problems, err)
	}

	if cfg.image.Strip, err = imageguard.ParseMode(get("STRIP_METADATA")); err != nil {
		bad("STRIP_METADATA", "gps, all or off")
	}
	if n, err := strconv.ParseInt(get("MAX_PIXELS"), 10, 64); err == nil && n > 0 {
		cfg.image.MaxPixels = n
	} else {
		bad("MAX_PIXELS", "a positive number of pixels")
	}
	if n, err := strconv.ParseInt(get("MAX_IMAGE_DIMENSION"), 10, 64); err == nil && n > 0 {
		cfg.image.MaxDimension = n
	} else {
		bad("MAX_IMAGE_DIMENSION", "a positive number of pixels")
	}
	if n, err := strconv.ParseInt(get("MAX_FRAMES"), 10, 64); err == nil && n > 0 {
		cfg.image.MaxFrames = n
	} else {
		bad("MAX_FRAMES", "a positive number of frames")
	}
	if n, err := strconv.ParseInt(get("MAX_ANIMATION_PIXELS"), 10, 64); err == nil && n > 0 && n >= cfg.image.MaxPixels {
		cfg.image.MaxAnimationPixels = n
	} else {
		bad("MAX_ANIMATION_PIXELS", "a number of pixels, at least MAX_PIXELS")
	}

	cfg.logFormat = get("LOG_FORMAT")
	if cfg.logFormat != "json" && cfg.logFormat != "text" && cfg.logFormat != "auto" {
		bad("LOG_FORMAT", "json, text or auto")
	}
	if err := cfg.logLevel.UnmarshalText([]byte(get("LOG_LEVEL"))); err != nil {
		bad("LOG_LEVEL", "debug, info, warn or error")
	}

	if b, err := strconv.ParseBool(get("METRICS")); err == nil {
		cfg.metrics = b
	} else {
		bad("METRICS", "true or false")
	}
	cfg.metricsToken = secret(get("METRICS_TOKEN"))
	if cfg.metricsToken != "" && !strongToken(string(cfg.metricsToken)) {
		problems = append(problems, errors.New("METRICS_TOKEN "+tokenRule)) // never the token itself
	}
	if cfg.metricsToken != "" && !cfg.metrics {
		problems = append(problems, errors.New("METRICS_TOKEN is set but METRICS is not true: set METRICS=true to serve /metrics"))
	}
	return cfg, errors.Join(problems...)
}

// loadCredentials reads CLOUDINARY_URL or the three separate variables; nil, nil means none are set.
// Errors name the variable only: url.Parse and the SDK quote their input, secret included.
func loadCredentials(get func(string) string) (*cloudinary.Credentials, error) {
	if raw := get("CLOUDINARY_URL"); raw != "" {
		c, err := cloudinary.ParseURL(raw)
		if err != nil {
			return nil, fmt.Errorf("CLOUDINARY_URL: %w", err)
		}
		return c, nil
	}
	cloud, key, sec := get("CLOUD_NAME"), get("API_KEY"), get("API_SECRET")
	if cloud == "" && key == "" && sec == "" {
		return nil, nil
	}
	var missing []string
	for name, v := range map[string]string{"CLOUD_NAME": cloud, "API_KEY": key, "API_SECRET": sec} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, fmt.Errorf("%s: missing; set CLOUD_NAME, API_KEY and API_SECRET together, or CLOUDINARY_URL", strings.Join(missing, ", "))
	}
	c := &cloudinary.Credentials{CloudName: cloud, APIKey: key, APISecret: secret(sec), Params: url.Values{}}
	if p := get("CLOUDINARY_UPLOAD_PREFIX"); p != "" {
		if err := cloudinary.CheckUploadPrefix(p); err != nil {
			return nil, fmt.Errorf("CLOUDINARY_UPLOAD_PREFIX %w", err)
		}
		c.Params.Set("upload_prefix", p)
	}
	return c, nil
}

// validTypePattern accepts "*", "type/*" and the MIME types that mimetype knows.
func validTypePattern(t string) bool {
	if t == "*" {
		return true
	}
	major, minor, ok := strings.Cut(t, "/")
	if !ok || major == "" || minor == "" || strings.ContainsAny(t, " ;,") {
		return false
	}
	return minor == "*" || mimetype.Lookup(t) != nil
}

// splitList splits a comma-separated value, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// withDotEnv returns a getenv that falls back to the values in the file at path.
func withDotEnv(getenv func(string) string, path string) (func(string) string, error) {
	fromFile, err := godotenv.Read(path)
	if errors.Is(err, fs.ErrNotExist) {
		return getenv, nil
	}
	if err != nil { // not wrapped: godotenv's message quotes the file, secrets included
		return nil, fmt.Errorf("ENV_FILE %s is malformed: check quoting and variable names", path)
	}
	return func(key string) string {
		if v := getenv(key); v != "" {
			return v // the real environment wins
		}
		return fromFile[key]
	}, nil
}

// parseBytes reads a size: a number of bytes, optionally followed by B, KB, KiB, MB, MiB, GB or
// GiB (any case, a space allowed before the unit). It is the one parser of every size variable:
// MAX_UPLOAD_BYTES, CHUNK_SIZE, UPLOAD_MEMORY and MIN_UPLOAD_RATE's rate.
func parseBytes(v string) (int64, error) {
	v = strings.TrimSpace(v)
	i := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	num, unit := v, ""
	if i >= 0 {
		num, unit = v[:i], strings.TrimSpace(v[i:])
	}
	mult := map[string]int64{"": 1, "b": 1, "kb": 1e3, "kib": 1 << 10, "mb": 1e6, "mib": 1 << 20, "gb": 1e9, "gib": 1 << 30}[strings.ToLower(unit)]
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || mult == 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is not a number of bytes", v)
	}
	return n * mult, nil
}

// parseClientMemory reads MAX_MEMORY_PER_CLIENT: a percentage of budget (raised to least, what
// one upload may hold), bytes (at least least), or off (0). Its error says what is wanted.
func parseClientMemory(v string, budget, least int64) (int64, error) {
	if strings.EqualFold(v, "off") {
		return 0, nil
	}
	if pct, ok := strings.CutSuffix(v, "%"); ok {
		p, err := strconv.Atoi(strings.TrimSpace(pct))
		if err != nil || p < 1 || p > 100 {
			return 0, errors.New("a percentage from 1% to 100%, bytes, or off")
		}
		return max(budget*int64(p)/100, least), nil
	}
	n, err := parseBytes(v)
	if err != nil || n <= 0 {
		return 0, errors.New("a percentage of UPLOAD_MEMORY such as 25%, bytes (or KiB, MiB, GiB), or off")
	}
	if n < least {
		return 0, fmt.Errorf("at least %d bytes: what one chunked upload may hold", least)
	}
	return n, nil
}

// parseMinRate reads MIN_UPLOAD_RATE: a size per second (8KiB/s), then optional ,grace=D and
// ,window=D; or off.
func parseMinRate(v string) (admission.Rule, error) {
	bad := fmt.Errorf("MIN_UPLOAD_RATE=%q: want a rate such as 8KiB/s, optionally ,grace=10s,window=20s, or off", v)
	if strings.EqualFold(strings.TrimSpace(v), "off") {
		return admission.Rule{}, nil
	}
	fields := strings.Split(v, ",")
	size, ok := strings.CutSuffix(strings.TrimSpace(fields[0]), "/s")
	n, err := parseBytes(size)
	if !ok || err != nil || n <= 0 {
		return admission.Rule{}, bad
	}
	r := admission.Rule{BytesPerSecond: float64(n), Grace: 10 * time.Second, Window: 20 * time.Second}
	for _, f := range fields[1:] {
		key, val, _ := strings.Cut(strings.TrimSpace(f), "=")
		d, err := time.ParseDuration(strings.TrimSpace(val))
		switch {
		case err != nil || d < 0:
			return admission.Rule{}, bad
		case key == "grace":
			r.Grace = d
		case key == "window" && d > 0:
			r.Window = d
		default:
			return admission.Rule{}, bad
		}
	}
	return r, nil
}

// prefixEach puts prefix in front of each of the errors that err joins (or of err alone).
func prefixEach(prefix string, err error) error {
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return fmt.Errorf("%s%w", prefix, err)
	}
	var out []error
	for _, e := range joined.Unwrap() {
		out = append(out, fmt.Errorf("%s%w", prefix, e))
	}
	return errors.Join(out...)
}
