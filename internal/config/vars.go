package config

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gabriel-vasile/mimetype"

	"cloudinary-upload-api/internal/admission"
	"cloudinary-upload-api/internal/cloudinary"
	"cloudinary-upload-api/internal/imageguard"
	"cloudinary-upload-api/internal/ratelimit"
)

// Config is every variable as Load read it, one field per row of the table (Image gathers the
// image guard's five, Cloudinary the credentials). A variable the server parses into a type of
// its own, in a Check of the root package, is held as text: the …Setting fields, Auth,
// ClientMemoryShare, and UploadFolder, which the server makes a template when sign-in is on.
type Config struct {
	CloudinaryURL          Secret
	CloudName              string
	APIKey                 string
	APISecret              Secret
	CloudinaryUploadPrefix string
	Cloudinary             *cloudinary.Credentials // from the five above; nil when none are set

	EnvFile            string
	Port               string
	AllowedOrigins     []string
	MaxUploadBytes     int64
	MaxFilesPerRequest int
	FileFields         []string
	AllowedTypes       []string // lower case
	UploadFolder       string   // with sign-in on, the server makes it a template holding {sub}
	UploadPreset       string
	UploadTimeout      time.Duration
	ChunkSize          int64
	UploadMemory       int64 // DefaultUploadMemory when unset: the server then takes it from the container's limit
	UploadMemorySet    bool
	AdmissionWait      time.Duration
	MaxConcurrent      int // hard cap on uploads at once; 0: none
	MaxPerClient       int // 0: no per-client cap
	ClientMemoryShare  string
	MaxConnections     int // 0: auto, sized from the file limit at start-up
	MinRate            admission.Rule
	BodyIdleTimeout    time.Duration
	RetryBackoff       time.Duration
	ResumableExpiry    time.Duration // RESUMABLE_EXPIRY
	ShutdownTimeout    time.Duration
	Storage            string // cloudinary or local: STORAGE=auto resolved
	UploadDir          string
	PublicURL          string // without a trailing slash; empty: from each request
	DemoPage           bool

	UploadTokensSetting   Secret
	Auth                  Auth
	RateLimit             ratelimit.Spec
	UserQuota             ratelimit.QuotaSpec // Off: none
	TrustProxySetting     string
	RedisURL              Secret // empty: no Redis
	RedisTLSVerify        bool
	RedisTimeout          time.Duration
	SignableParamsSetting string
	ReadHeaderTimeout     time.Duration
	LogFormat             string
	LogLevel              slog.Level
	Image                 imageguard.Options // STRIP_METADATA, MAX_PIXELS, MAX_FRAMES, MAX_ANIMATION_PIXELS, MAX_IMAGE_DIMENSION
	Metrics               bool
	MetricsToken          Secret // empty: no token needed
}

// Auth is the sign-in variables, as set; the server checks them and starts the verifier.
type Auth struct {
	JWKSURL   string
	Issuer    string
	Audience  string
	JWTSecret Secret
	Cookie    string
}

// DefaultUploadMemory is UPLOAD_MEMORY on a machine without a memory limit.
const DefaultUploadMemory = 256 << 20

// Vars is the table, for --help and the generated files: each row's Value fills a Config of its
// own, which nobody reads.
func Vars() []Var { return table(new(Config)) }

// table is the one table of the server's variables, in the order --help and the docs list them.
func table(c *Config) []Var {
	return []Var{
		{Name: "CLOUDINARY_URL", Value: Text(&c.CloudinaryURL), Secret: true, Example: "cloudinary://API_KEY:API_SECRET@CLOUD_NAME", Heroku: &Heroku{Order: 1, Required: true},
			Help: "Cloudinary credentials as cloudinary://API_KEY:API_SECRET@CLOUD_NAME, with optional query parameters such as upload_prefix (what the SDK and Heroku's Cloudinary add-on use)"},
		{Name: "CLOUD_NAME", Value: Text(&c.CloudName),
			Help: "Cloudinary cloud name, when CLOUDINARY_URL is not set"},
		{Name: "API_KEY", Value: Text(&c.APIKey),
			Help: "Cloudinary API key, when CLOUDINARY_URL is not set"},
		{Name: "API_SECRET", Value: Text(&c.APISecret), Secret: true,
			Help: "Cloudinary API secret, when CLOUDINARY_URL is not set; never logged"},
		{Name: "CLOUDINARY_UPLOAD_PREFIX", Value: Text(&c.CloudinaryUploadPrefix),
			Help: "Upload API base URL with CLOUD_NAME/API_KEY/API_SECRET (default https://api.cloudinary.com)"},
		{Name: "ENV_FILE", Default: ".env", Value: Text(&c.EnvFile),
			Help: "File of KEY=value lines read at start-up; a missing file is fine, the real environment wins"},
		{Name: "PORT", Default: "8080", Value: Func(&c.Port, port),
			Help: "TCP port to listen on (Heroku sets it)"},
		{Name: "ALLOWED_ORIGINS", Default: "*", Value: List(&c.AllowedOrigins, false, origin, ""), Heroku: &Heroku{Order: 4},
			Help: "Comma-separated origins allowed by CORS, or * for any"},
		{Name: "MAX_UPLOAD_BYTES", Default: "104857600", Value: Size(&c.MaxUploadBytes, 1, math.MaxInt64, "a positive size in bytes, or with KB, MB, GB, KiB, MiB or GiB (e.g. 200MB)"), Heroku: &Heroku{Order: 7},
			Help: "Largest accepted file, in bytes or with a unit (200MB, 200MiB; the default is 100 MiB); may be far larger, since files over Cloudinary's 100 MiB single-request limit go up in chunks"},
		{Name: "MAX_FILES_PER_REQUEST", Default: "10", Value: Int(&c.MaxFilesPerRequest, 1, 1000, "a number of files from 1 to 1000"),
			Help: "File parts one POST /upload may carry, each uploaded in order; a file past it is answered with 400 and the rest of the form is not read. The request body may be this many times MAX_UPLOAD_BYTES"},
		{Name: "FILE_FIELDS", Default: "file,files,files[],filepond", Value: List(&c.FileFields, false, fileField, "at least one form field name"),
			Help: "Names of the form parts taken as files (a part with a filename); a file under another name is refused with 400"},
		{Name: "ALLOWED_TYPES", Default: "image/*", Value: List(&c.AllowedTypes, true, typePattern, "at least one MIME type"),
			Help: "Comma-separated MIME types allowed, sniffed from the content; type/* for a family, * for anything. image/* is the images whose size the server checks (JPEG, PNG, GIF, WebP, BMP, TIFF, PSD, ICO, HEIC, AVIF); any other image type (SVG, JPEG XL...) is accepted unchecked only when named"},
		{Name: "UPLOAD_FOLDER", Value: Text(&c.UploadFolder), Heroku: &Heroku{Order: 6},
			Help: "Cloudinary folder that every upload goes into; with sign-in on, {sub} in it is each user's own folder name (empty: users/{sub}; set without {sub}: UPLOAD_FOLDER/users/{sub})"},
		{Name: "UPLOAD_PRESET", Value: Text(&c.UploadPreset),
			Help: "Signed upload preset applied to every upload"},
		{Name: "UPLOAD_TIMEOUT", Default: "60s", Value: Duration(&c.UploadTimeout, false, positiveDuration),
			Help: "How long Cloudinary may take to take the next piece of the file, or to answer once it has all of it"},
		{Name: "CHUNK_SIZE", Default: "20000000", Value: Size(&c.ChunkSize, cloudinary.MinChunkBytes, cloudinary.MaxRequestBytes, "a size from 5MiB (5242880 bytes, Cloudinary's minimum) to 100MiB (104857600)"),
			Help: "Bytes per chunk when a file goes up in chunks (size unknown or over 100 MiB), or a size with a unit (20MB); at least 5MiB, at most 100MiB; one chunk buffer per upload in flight"},
		{Name: "UPLOAD_MEMORY", Value: Size(&c.UploadMemory, 1, math.MaxInt64, "a positive size in bytes, or with KB, MB, GB, KiB, MiB or GiB (e.g. 256MiB)"), given: &c.UploadMemorySet,
			Help: "Memory the uploads in flight may hold at once, in bytes or with a unit (KB, MB, GB, KiB, MiB, GiB); unset: half of the container's memory limit (cgroup v2 memory.max or v1 memory.limit_in_bytes), or 256MiB without one. A streamed upload holds what its size asks, at most about 3.4 MiB (buffers, and room for an image's metadata; a 100 KB one about 550 KiB), a chunked one up to CHUNK_SIZE more, reserved 1 MiB at a time as each chunk's bytes arrive; an upload (or a chunk) that finds it spent waits ADMISSION_WAIT, then gets 503 with Retry-After. Also sets the Go runtime's memory limit (unless GOMEMLIMIT is set) to this plus 32 MiB, kept under 90% of the container's limit; the start-up log says what was chosen and why"},
		{Name: "ADMISSION_WAIT", Default: "2s", Value: Duration(&c.AdmissionWait, true, "a duration such as 2s (0: refuse at once)"),
			Help: "How long an upload may wait for UPLOAD_MEMORY (or MAX_CONCURRENT_UPLOADS), and a chunk for the memory to fill it, before it gets 503 with Retry-After"},
		{Name: "MAX_CONCURRENT_UPLOADS", Default: "off", Value: IntOr(&c.MaxConcurrent, "off", "a positive number, or off"),
			Help: "Optional hard cap on uploads handled at once, on top of UPLOAD_MEMORY (more wait ADMISSION_WAIT, then get 503), or off"},
		{Name: "MAX_UPLOADS_PER_CLIENT", Default: "8", Value: IntOr(&c.MaxPerClient, "off", "a positive number, or off"),
			Help: "Uploads one client (as RATE_LIMIT names clients) may have in flight at once; one more gets 429 with Retry-After at once; off disables. Leaves room for a browser's 6 connections per host"},
		{Name: "MAX_MEMORY_PER_CLIENT", Default: "25%", Value: Func(&c.ClientMemoryShare, memoryShare),
			Help: "Share of UPLOAD_MEMORY one client (as RATE_LIMIT names clients) may hold at once, counted by each server alone: a percentage, bytes (or KiB, MiB, GiB), or off. An upload past it gets 429 at once; a chunk past it waits ADMISSION_WAIT for the client's own memory, then gets 429. At least one chunked upload's worth (raised to it when given as a percentage)"},
		{Name: "MAX_CONNECTIONS", Default: "auto", Value: IntOr(&c.MaxConnections, "auto", "a positive number of connections, or auto"),
			Help: "Connections open at once; more wait in the listen queue until one closes (the server degrades by waiting, never by running out of file descriptors). auto: the process's file limit (raised to its hard limit at start-up) less a quarter (at least 256) for Cloudinary, Redis and files"},
		{Name: "MIN_UPLOAD_RATE", Default: "8KiB/s", Value: Func(&c.MinRate, parseMinRate),
			Help: "Slowest body accepted, averaged over a sliding window of 20 s after a grace of 10 s (counting only time spent waiting on the client); slower gets 408. Options: 8KiB/s,grace=10s,window=20s; off disables"},
		{Name: "BODY_IDLE_TIMEOUT", Default: "60s", Value: Duration(&c.BodyIdleTimeout, false, positiveDuration),
			Help: "How long a client may send nothing while its upload is being read before it gets 408"},
		{Name: "RESUMABLE_EXPIRY", Default: "24h", Value: Duration(&c.ResumableExpiry, false, positiveDuration),
			Help: "How long a resumable (tus) upload at /upload/resumable/ may take from its creation to its last byte, and its answer stays available after (Upload-Expires); then it is swept"},
		{Name: "CHUNK_RETRY_BACKOFF", Default: "500ms", Value: Duration(&c.RetryBackoff, false, positiveDuration),
			Help: "Wait before the first retry of a failed chunk; doubles for each of the 3 retries"},
		{Name: "SHUTDOWN_TIMEOUT", Default: "25s", Value: Duration(&c.ShutdownTimeout, false, positiveDuration),
			Help: "How long in-flight uploads may run after SIGTERM (Heroku kills at 30s)"},
		{Name: "STORAGE", Default: "auto", Value: OneOf(&c.Storage, "auto", "cloudinary", "local"), Heroku: &Heroku{Order: 3, Value: "cloudinary"},
			Help: "Where uploads go: cloudinary, local (files under UPLOAD_DIR, served at /files/), or auto: Cloudinary when credentials are set, else local"},
		{Name: "UPLOAD_DIR", Default: "uploads", Value: Text(&c.UploadDir),
			Help: "Directory of the local store (STORAGE=local or auto without credentials); created if missing"},
		{Name: "PUBLIC_URL", Value: Func(&c.PublicURL, publicURL),
			Help: "Base URL of this server for the local store's url/secure_url, e.g. https://uploads.example.com; empty: taken from each request's Host (and X-Forwarded-Proto)"},
		{Name: "DEMO_PAGE", Default: "true", Value: Bool(&c.DemoPage),
			Help: "Serve the upload page at / (true or false)"},
		{Name: "UPLOAD_TOKENS", Value: Text(&c.UploadTokensSetting), Secret: true, Heroku: &Heroku{Order: 2, Generator: "secret"},
			Help: "Comma-separated bearer tokens; when set, /upload and /sign need Authorization: Bearer <token> (at least 16 characters each, e.g. openssl rand -hex 32); never logged"},
		{Name: "AUTH_JWKS_URL", Value: Text(&c.Auth.JWKSURL),
			Help: "Sign-in: the identity provider's JWKS (https; http only for a loopback host); /upload and /sign then need a user's token signed by one of its keys (RS, PS, ES or EdDSA), in Authorization: Bearer or AUTH_COOKIE"},
		{Name: "AUTH_ISSUER", Value: Text(&c.Auth.Issuer),
			Help: "Sign-in: when set, a token's iss must equal it (e.g. https://example.us.auth0.com/)"},
		{Name: "AUTH_AUDIENCE", Value: Text(&c.Auth.Audience),
			Help: "Sign-in: when set, a token's aud must contain it"},
		{Name: "AUTH_JWT_SECRET", Value: Text(&c.Auth.JWTSecret), Secret: true,
			Help: "Sign-in: the shared secret (at least 32 bytes) of HS256 tokens minted by the app's own backend; with or without AUTH_JWKS_URL"},
		{Name: "AUTH_COOKIE", Value: Text(&c.Auth.Cookie),
			Help: "Sign-in: the cookie that carries the token when there is no Authorization header (Clerk's __session); needs ALLOWED_ORIGINS other than *"},
		{Name: "RATE_LIMIT", Default: "60/min,burst=20", Value: Func(&c.RateLimit, ratelimit.Parse),
			Help: "Requests per client to /upload and /sign: N/s, N/min or N/h, optional ,burst=B (default B=N); off disables"},
		{Name: "USER_QUOTA", Default: "off", Value: Func(&c.UserQuota, ratelimit.ParseQuota),
			Help: "Bytes each client may store per window (the signed-in user, else the address as RATE_LIMIT names clients): SIZE/WINDOW such as 500MB/day, 2GB/30d or 1GiB/12h (KB, MB, GB, TB or KiB, MiB, GiB, TiB; day, hour, week or a number with s, m, h or d), the window starting at the client's first upload. Past it 429 with Retry-After, before the body is read when it has a Content-Length; a failed upload spends nothing. Shared through REDIS_URL when set; off disables"},
		{Name: "TRUST_PROXY", Default: "false", Value: Text(&c.TrustProxySetting), Heroku: &Heroku{Order: 5, Value: "true"},
			Help: "Where the client's address comes from, for the per-client limits: false (the connection), true or heroku (the right-most X-Forwarded-For entry, which Heroku's router appends), fly (Fly-Client-IP), cloudflare (CF-Connecting-IP), or xff:N (the Nth X-Forwarded-For entry from the right, e.g. xff:2 behind Google's load balancer); a request without that header counts as the connection's address. See docs/deploy.md"},
		{Name: "REDIS_URL", Value: Func(&c.RedisURL, redisURL), Secret: true,
			Help: "Redis (Heroku Key-Value Store) as redis:// or rediss:// (TLS): RATE_LIMIT, USER_QUOTA and the uploads in flight per client are then shared by every server that uses it; empty: each server counts alone"},
		{Name: "REDIS_TLS_VERIFY", Default: "true", Value: Bool(&c.RedisTLSVerify), Heroku: &Heroku{Order: 8, Value: "false"},
			Help: "Check the certificate of a rediss:// REDIS_URL; false on Heroku, whose Redis certificates are self-signed"},
		{Name: "REDIS_TIMEOUT", Default: "100ms", Value: Duration(&c.RedisTimeout, false, "a positive duration such as 100ms"),
			Help: "Deadline of every call to Redis; past it, or when Redis is down, the limits are counted by this server alone until Redis answers again"},
		{Name: "SIGNABLE_PARAMS", Default: "public_id,tags,context", Value: Text(&c.SignableParamsSetting),
			Help: "Upload parameters a client may set, in POST /upload's form and POST /sign: an allow-list from public_id, tags, context, metadata, display_name, face_coordinates, custom_coordinates (nothing that chooses where a file goes, what it overwrites or where Cloudinary calls back)"},
		{Name: "READ_HEADER_TIMEOUT", Default: "10s", Value: Duration(&c.ReadHeaderTimeout, false, positiveDuration),
			Help: "How long a client may take to send the request line and headers (slow clients are cut off)"},
		{Name: "LOG_FORMAT", Default: "auto", Value: OneOf(&c.LogFormat, "json", "text", "auto"),
			Help: "Log format: json, text, or auto: text when stdout is a terminal (with the page's address first), else json"},
		{Name: "LOG_LEVEL", Default: "info", Value: Func(&c.LogLevel, logLevel),
			Help: "Log level: debug, info, warn or error"},
		{Name: "STRIP_METADATA", Default: "gps", Value: Func(&c.Image.Strip, stripMode),
			Help: "Metadata removed from JPEG, PNG and WebP uploads, without re-encoding: gps (the location only), all (everything but the colour profile and orientation) or off"},
		{Name: "MAX_PIXELS", Default: "50000000", Value: Int(&c.Image.MaxPixels, 1, math.MaxInt64, "a positive number of pixels"),
			Help: "Largest image accepted, in pixels (width × height read from the header; each frame of an animation, page of a TIFF or image of an ICO too); larger gets 413 before a byte goes to storage"},
		{Name: "MAX_FRAMES", Default: "1000", Value: Int(&c.Image.MaxFrames, 1, math.MaxInt64, "a positive number of frames"),
			Help: "Most frames of an animated GIF, PNG or WebP (or pages of a TIFF, images of an ICO) accepted; more get 413"},
		{Name: "MAX_ANIMATION_PIXELS", Default: "2000000000", Value: Int(&c.Image.MaxAnimationPixels, 1, math.MaxInt64, animationPixels),
			Help: "Most pixels of all the frames of an image together (each frame's width × height, added up); more get 413. At least MAX_PIXELS"},
		{Name: "MAX_IMAGE_DIMENSION", Default: "20000", Value: Int(&c.Image.MaxDimension, 1, math.MaxInt64, "a positive number of pixels"),
			Help: "Longest side of an accepted image, in pixels; longer gets 413"},
		{Name: "METRICS", Default: "false", Value: Bool(&c.Metrics),
			Help: "Serve Prometheus metrics at GET /metrics: true or false"},
		{Name: "METRICS_TOKEN", Value: Text(&c.MetricsToken), Secret: true,
			Help: "Bearer token that GET /metrics requires (needs METRICS=true; at least 16 characters, e.g. openssl rand -hex 32); empty: /metrics is open to anyone who can reach it"},
	}
}

const (
	positiveDuration = "a positive duration such as 30s or 2m"
	animationPixels  = "a number of pixels, at least MAX_PIXELS"
)

// builtinChecks are the rules of more than one variable that need nothing of the server's own.
func builtinChecks() []Check {
	return []Check{
		{Vars: []string{"CLOUDINARY_URL", "CLOUD_NAME", "API_KEY", "API_SECRET", "CLOUDINARY_UPLOAD_PREFIX"}, Check: credentials},
		{Vars: []string{"STORAGE", "CLOUDINARY_URL", "CLOUD_NAME", "API_KEY", "API_SECRET"}, Check: func(c *Config) error {
			none := c.CloudinaryURL == "" && c.CloudName == "" && c.APIKey == "" && c.APISecret == ""
			switch {
			case c.Storage == "auto" && c.Cloudinary != nil:
				c.Storage = "cloudinary"
			case c.Storage == "auto":
				c.Storage = "local"
			case c.Storage == "cloudinary" && none: // else the credentials' own error says what is wrong
				return errors.New("STORAGE=cloudinary: no Cloudinary credentials: set CLOUDINARY_URL, or CLOUD_NAME, API_KEY and API_SECRET")
			}
			return nil
		}},
		{Vars: []string{"UPLOAD_MEMORY"}, Check: func(c *Config) error {
			if !c.UploadMemorySet {
				c.UploadMemory = DefaultUploadMemory // the server takes half of the container's limit, if there is one
			}
			return nil
		}},
		{Vars: []string{"AUTH_COOKIE"}, Check: func(c *Config) error {
			if c.Auth.Cookie != "" && slices.Contains(c.AllowedOrigins, "*") {
				return errors.New("AUTH_COOKIE needs ALLOWED_ORIGINS set to your pages' origins, not *: else any site could make a signed-in visitor's browser upload")
			}
			return nil
		}},
		{Vars: []string{"MAX_ANIMATION_PIXELS", "MAX_PIXELS"}, Check: func(c *Config) error {
			if c.Image.MaxAnimationPixels < c.Image.MaxPixels {
				return Want(animationPixels)
			}
			return nil
		}},
		{Vars: []string{"METRICS_TOKEN", "METRICS"}, Check: func(c *Config) error {
			if c.MetricsToken != "" && !c.Metrics {
				return errors.New("METRICS_TOKEN is set but METRICS is not true: set METRICS=true to serve /metrics")
			}
			return nil
		}},
	}
}

// credentials reads CLOUDINARY_URL or the three separate variables into c.Cloudinary, nil when
// none are set. Errors name the variable only: url.Parse and the SDK quote their input, secret
// included.
func credentials(c *Config) error {
	if c.CloudinaryURL != "" {
		creds, err := cloudinary.ParseURL(string(c.CloudinaryURL))
		if err != nil {
			return fmt.Errorf("CLOUDINARY_URL: %w", err)
		}
		if err := cloudinary.CheckSigningParams(creds.Params); err != nil {
			return prefixEach("CLOUDINARY_URL: ", err)
		}
		c.Cloudinary = creds
		return nil
	}
	if c.CloudName == "" && c.APIKey == "" && c.APISecret == "" {
		return nil
	}
	var missing []string
	for _, v := range []struct{ name, value string }{{"API_KEY", c.APIKey}, {"API_SECRET", string(c.APISecret)}, {"CLOUD_NAME", c.CloudName}} {
		if v.value == "" {
			missing = append(missing, v.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s: missing; set CLOUD_NAME, API_KEY and API_SECRET together, or CLOUDINARY_URL", strings.Join(missing, ", "))
	}
	creds := &cloudinary.Credentials{CloudName: c.CloudName, APIKey: c.APIKey, APISecret: c.APISecret, Params: url.Values{}}
	if p := c.CloudinaryUploadPrefix; p != "" {
		if err := cloudinary.CheckUploadPrefix(p); err != nil {
			return fmt.Errorf("CLOUDINARY_UPLOAD_PREFIX %w", err)
		}
		creds.Params.Set("upload_prefix", p)
	}
	c.Cloudinary = creds
	return nil
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

func port(s string) (string, error) {
	if n, err := strconv.Atoi(s); err != nil || n < 0 || n > math.MaxUint16 {
		return "", Want("a TCP port number")
	}
	return s, nil
}

// origin accepts "*" or an http(s) origin: a scheme and a host, no path.
func origin(o string) error {
	if o == "*" {
		return nil
	}
	if u, err := url.Parse(o); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" {
		return fmt.Errorf("ALLOWED_ORIGINS: %q is not an origin like https://example.com", o)
	}
	return nil
}

// fileFieldRE is what a FILE_FIELDS name may be: what the upload libraries use, files[] included.
var fileFieldRE = regexp.MustCompile(`^[A-Za-z0-9_.\-\[\]]{1,64}$`)

// FileFieldError is FILE_FIELDS' error about a name: not a field name, or one of SIGNABLE_PARAMS
// (which the server checks, as it owns that list).
func FileFieldError(name string) error {
	return fmt.Errorf("FILE_FIELDS: %q is not a form field name, or is one of SIGNABLE_PARAMS", truncate(name, 64))
}

func fileField(f string) error {
	if !fileFieldRE.MatchString(f) {
		return FileFieldError(f)
	}
	return nil
}

// typePattern accepts "*", "type/*" and the MIME types that mimetype knows.
func typePattern(t string) error {
	if t == "*" {
		return nil
	}
	major, minor, ok := strings.Cut(t, "/")
	if !ok || major == "" || minor == "" || strings.ContainsAny(t, " ;,") || (minor != "*" && mimetype.Lookup(t) == nil) {
		return fmt.Errorf("ALLOWED_TYPES: %q is not a MIME type, type/* or *", t)
	}
	return nil
}

// publicURL accepts an http(s) URL with a host and no query, fragment or user, and drops a
// trailing slash.
func publicURL(s string) (string, error) {
	s = strings.TrimSuffix(s, "/")
	if s == "" {
		return "", nil
	}
	if u, err := url.Parse(s); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", Want("an http(s) URL such as https://uploads.example.com")
	}
	return s, nil
}

// redisURL checks REDIS_URL's shape; its error names the variable, never the URL (it carries the
// password). The connection's TLS and timeout are the server's to set.
func redisURL(s string) (Secret, error) {
	if _, err := ratelimit.ParseURL(s, true, time.Second); err != nil {
		return "", err
	}
	return Secret(s), nil
}

func logLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, Want("debug, info, warn or error")
	}
	return l, nil
}

func stripMode(s string) (imageguard.Mode, error) {
	m, err := imageguard.ParseMode(s)
	if err != nil {
		return m, Want("gps, all or off")
	}
	return m, nil
}

// parseMinRate reads MIN_UPLOAD_RATE: a size per second (8KiB/s), then optional ,grace=D and
// ,window=D; or off.
func parseMinRate(v string) (admission.Rule, error) {
	bad := Want("a rate such as 8KiB/s, optionally ,grace=10s,window=20s, or off")
	if strings.EqualFold(strings.TrimSpace(v), "off") {
		return admission.Rule{}, nil
	}
	fields := strings.Split(v, ",")
	size, ok := strings.CutSuffix(strings.TrimSpace(fields[0]), "/s")
	n, err := ParseSize(size)
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

// memoryShare checks MAX_MEMORY_PER_CLIENT's form, whatever the budget.
func memoryShare(s string) (string, error) {
	if _, err := ClientMemory(s, 0, 0); err != nil {
		return "", Want(err.Error())
	}
	return s, nil
}

// ClientMemory reads MAX_MEMORY_PER_CLIENT: a percentage of budget (raised to least, what
// one upload may hold), bytes (at least least), or off (0). Its error says what is wanted. The
// table checks the form (least 0); the server, which knows least, the rest.
func ClientMemory(v string, budget, least int64) (int64, error) {
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
	n, err := ParseSize(v)
	if err != nil || n <= 0 {
		return 0, errors.New("a percentage of UPLOAD_MEMORY such as 25%, bytes (or KiB, MiB, GiB), or off")
	}
	if n < least {
		return 0, fmt.Errorf("at least %d bytes: what one chunked upload may hold", least)
	}
	return n, nil
}
