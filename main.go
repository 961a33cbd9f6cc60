// Command cloudinary-upload-api is an HTTP server that streams browser and
// script uploads into Cloudinary without ever showing them the API secret.
//
// This package is the HTTP layer: the routes, each way in turning its request into
// uploads, the middleware, and errors.go, the one place that decides what a client
// sees. What has a vocabulary of its own and no need of HTTP statuses lives under
// internal/ (docs/architecture.md).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	envconfig "cloudinary-upload-api/internal/config"
	"cloudinary-upload-api/internal/ratelimit"
	"cloudinary-upload-api/internal/upload"
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "cloudinary-upload-api:", err)
		os.Exit(1)
	}
}

// runOptions are the parts of the machine run reads besides its arguments and environment;
// only tests change them.
type runOptions struct {
	cgroupRoot string // where /proc/self/cgroup and the cgroup file systems are: "/"
}

// runOption changes a runOptions.
type runOption func(*runOptions)

// withCgroupRoot makes run read the container's memory limit under dir instead of "/".
func withCgroupRoot(dir string) runOption { return func(o *runOptions) { o.cgroupRoot = dir } }

// run is the whole program; main only hands it the process's outside world.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, opts ...runOption) error {
	o := runOptions{cgroupRoot: "/"}
	for _, opt := range opts {
		opt(&o)
	}
	if exit, err := parseArgs(args, stdout); exit || err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	getenv, err := withDotEnv(getenv, envconfig.EnvFile(getenv))
	if err != nil {
		return err
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		if !strings.Contains(err.Error(), "\n") {
			return fmt.Errorf("configuration: %w", err) // one mistake, one line
		}
		return fmt.Errorf("configuration:\n%w", err)
	}
	terminal := isTerminal(stdout)
	logger := newLogger(stdout, logFormat(cfg.LogFormat, terminal), cfg.LogLevel)
	// The uploads' buffers are reserved from UPLOAD_MEMORY, but the collector would let garbage
	// grow to twice the live heap: the runtime's memory limit makes it collect before the
	// process outgrows the budget and a little more. A GOMEMLIMIT of the operator's wins.
	mem := planMemory(cfg, o.cgroupRoot)
	cfg.UploadMemory = mem.uploadMemory
	// A share given as a percentage is of the budget just chosen; loadConfig checked the setting.
	if cfg.maxMemoryPerClient, err = envconfig.ClientMemory(cfg.ClientMemoryShare, cfg.UploadMemory, cfg.uploadReservation(true)); err != nil {
		return fmt.Errorf("configuration:\nMAX_MEMORY_PER_CLIENT: %w", err)
	}
	goLimit := "GOMEMLIMIT"
	if prev := debug.SetMemoryLimit(-1); prev == math.MaxInt64 {
		debug.SetMemoryLimit(mem.goLimit)
		defer debug.SetMemoryLimit(prev)
		goLimit = mib(mem.goLimit)
	}

	ln, err := net.Listen("tcp", ":"+cfg.Port)
	if err != nil {
		return fmt.Errorf("listen on PORT=%s: %w", cfg.Port, err)
	}
	defer func() { _ = ln.Close() }() // for the returns before Serve, which closes it otherwise
	// Past MAX_CONNECTIONS, Accept waits for a connection to close: the others wait in the
	// kernel's listen queue instead of the process running out of file descriptors.
	maxConns := connectionLimit(cfg.MaxConnections)
	ln = newLimitListener(ln, maxConns)
	// On a terminal, a developer's first look: where to open the page, before the details.
	if terminal {
		logger.Info("open " + localURL(ln.Addr(), cfg.DemoPage) + " in a browser")
	}

	logger.Info("memory: UPLOAD_MEMORY="+mib(mem.uploadMemory)+", "+mem.why+"; Go memory limit "+goLimit,
		"upload_memory", mem.uploadMemory, "go_memory_limit", goLimit)
	if mem.warning != "" {
		logger.Warn(mem.warning)
	}

	authCtx, stopAuth := context.WithCancel(ctx) // ends the JWKS's background refresh
	defer stopAuth()
	if err := cfg.signIn.start(authCtx, logger); err != nil {
		return err
	}

	st, closeStore, err := openStore(cfg, logger)
	if err != nil {
		return err
	}
	defer func() {
		if err := closeStore(); err != nil {
			logger.Warn("close store", "err", err)
		}
	}()

	health := newHealthState()
	if cfg.RedisURL != "" {
		conn, err := ratelimit.Open(ratelimit.Config{
			URL: string(cfg.RedisURL), TLSVerify: cfg.RedisTLSVerify, Timeout: cfg.RedisTimeout, Logger: logger,
		})
		if err != nil {
			return err // loadConfig has checked the URL: not reached
		}
		defer func() {
			if err := conn.Close(); err != nil {
				logger.Warn("close redis", "err", err)
			}
		}()
		health.redis = conn
	}
	defer health.stop() // after the server has stopped, before Redis closes
	srv := &http.Server{
		Handler:           newServer(logger, cfg, st, health),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout, // slowloris: a client that trickles its headers is cut off
		// MaxHeaderBytes: Go answers 431 itself, in plain text, past this plus 4 KiB of slack.
		// No ReadTimeout or WriteTimeout: they would cut a long upload. Heroku's router
		// keeps idle connections for up to 90 s, so ours must outlive that.
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		Protocols:      serverProtocols(),
	}
	serveErr := make(chan error, 1) // buffered, so Serve's goroutine can always finish
	go func() { serveErr <- srv.Serve(ln) }()
	// Before "listening": a test that waits for that line finds this one.
	if unchecked := upload.UncheckedImageTypes(cfg.AllowedTypes); len(unchecked) > 0 {
		logger.Warn("ALLOWED_TYPES admits images whose size the server cannot check: MAX_PIXELS and MAX_FRAMES do not apply to them",
			"types", strings.Join(unchecked, ","))
	}
	logger.Info("listening", "addr", ln.Addr().String(), "version", buildVersion(debug.ReadBuildInfo()), "max_connections", maxConns)
	if cfg.Metrics && cfg.MetricsToken == "" {
		logger.Warn("GET /metrics is open to anyone who can reach the server: set METRICS_TOKEN")
	}
	if cfg.uploadTokens == nil && !cfg.signIn.on() && !isLoopback(ln.Addr()) {
		logger.Warn("UPLOAD_TOKENS is not set: anyone who can reach this server can upload")
	}
	logger.Info("access", "tokens_required", cfg.uploadTokens != nil, "sign_in", cfg.signIn.on(), "rate_limit", cfg.RateLimit.Text, "user_quota", cfg.UserQuota.Text, "trust_proxy", cfg.trustProxy.String(),
		"shared_through_redis", cfg.RedisURL != "")

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// In-flight uploads get SHUTDOWN_TIMEOUT to finish; their contexts are not cancelled.
	health.drain()
	logger.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", errors.Join(err, srv.Close()))
	}
	logger.Info("stopped")
	return nil
}

// serverProtocols are HTTP/1.1 and HTTP/2 without TLS (h2c, with prior knowledge, RFC 9113 §3.3)
// on the one port: a platform that ends TLS at its edge may speak either to the server. Cloud Run
// refuses HTTP/1 requests over 32 MiB, but passes HTTP/2 ones of any size to a server that speaks
// h2c (gcloud run deploy --use-http2). Each HTTP/2 stream has its own read deadline, so
// BODY_IDLE_TIMEOUT and MIN_UPLOAD_RATE hold per upload there too.
func serverProtocols() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return p
}

// runtimeHeadroom is what the process may hold beyond UPLOAD_MEMORY before the collector works
// harder: the runtime, the metrics, the rate limiter's buckets, connections waiting for their headers.
const runtimeHeadroom = 32 << 20

// connectionLimit is MAX_CONNECTIONS, or, when it is auto (0), what the file limit allows: the
// soft RLIMIT_NOFILE (which Go's runtime raises to the hard limit at start-up, on Linux and the
// BSDs) less a quarter of it, at least 256 (but at most half), for the connections to Cloudinary
// and Redis, the local store's files and the process's own.
func connectionLimit(configured int) int {
	if configured > 0 {
		return configured
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur == 0 {
		return defaultFileLimit - defaultFileLimit/4
	}
	files := min(lim.Cur, math.MaxInt32)
	headroom := min(max(files/4, 256), files/2)
	return int(max(files-headroom, 1))
}

// defaultFileLimit is the usual soft file limit, for a system that does not tell.
const defaultFileLimit = 1024

// isTerminal reports whether w is a terminal, as a developer's shell is and a dyno's log is not.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// logFormat is the format LOG_FORMAT asks for: auto is text for a terminal, else json.
func logFormat(setting string, terminal bool) string {
	if setting == "auto" {
		if terminal {
			return "text"
		}
		return "json"
	}
	return setting
}

// localURL is where a developer on this machine opens the server: the demo page, or the API's description.
func localURL(addr net.Addr, demoPage bool) string {
	port := "8080"
	if tcp, ok := addr.(*net.TCPAddr); ok {
		port = strconv.Itoa(tcp.Port)
	}
	u := "http://localhost:" + port + "/"
	if !demoPage {
		u += "openapi.yaml"
	}
	return u
}

// newLogger writes structured lines to w.
func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
