package ratelimit

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// keyPrefix starts every key this server writes, so that it can share a Redis with other programs.
const keyPrefix = "upload-api:"

// Config says how to reach Redis.
type Config struct {
	URL       string        // redis:// or rediss://; it may carry a password
	TLSVerify bool          // false accepts any certificate (Heroku's are self-signed)
	Timeout   time.Duration // the deadline of every call, dial included
	// ProbeEvery is how often a Redis that failed is asked again whether it answers; 0 means 1s.
	ProbeEvery time.Duration
	Logger     *slog.Logger
}

// ErrBadURL is ParseURL's only error. It never quotes the URL: the URL carries the password.
var ErrBadURL = errors.New("REDIS_URL: want redis://[:PASSWORD@]HOST[:PORT][/DB] or rediss://… for TLS")

// ParseURL checks a REDIS_URL and turns it into the client's options.
func ParseURL(raw string, tlsVerify bool, timeout time.Duration) (*redis.Options, error) {
	if !strings.HasPrefix(raw, "redis://") && !strings.HasPrefix(raw, "rediss://") {
		return nil, ErrBadURL
	}
	opt, err := redis.ParseURL(raw)
	if err != nil { // not wrapped: url.Parse's message quotes the URL, password included
		return nil, ErrBadURL
	}
	if opt.TLSConfig != nil && !tlsVerify {
		opt.TLSConfig.InsecureSkipVerify = true // REDIS_TLS_VERIFY=false, as Heroku's self-signed certificates need
	}
	opt.DialTimeout = timeout
	opt.ReadTimeout = timeout
	opt.WriteTimeout = timeout
	opt.PoolTimeout = timeout
	opt.ContextTimeoutEnabled = true // every call carries our own deadline too
	opt.MaxRetries = 1               // one retry on a fresh connection, after Redis restarted, within the deadline
	opt.MaxRetryBackoff = timeout / 4
	opt.DialerRetries = 1
	opt.DisableIdentity = true // no CLIENT SETINFO round trip on each new connection
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	if opt.TLSConfig != nil && opt.TLSConfig.MinVersion == 0 {
		opt.TLSConfig.MinVersion = tls.VersionTLS12
	}
	return opt, nil
}

// Conn is the one Redis that the shared limiter and the leases use, and what is known of its
// health. A call that fails or passes its deadline marks Redis down: callers then decide in memory
// at once, without waiting on Redis, and one goroutine asks Redis every ProbeEvery until it answers.
// The outage is logged once when it begins and once when it ends.
type Conn struct {
	client     *redis.Client
	timeout    time.Duration
	probeEvery time.Duration
	log        *slog.Logger

	up        atomic.Bool
	outages   atomic.Uint64
	fallbacks atomic.Uint64
	down      chan struct{} // buffered: wakes the prober
	stop      chan struct{}
	done      chan struct{}
}

// Open makes the client and asks Redis once whether it answers. Only a bad URL is an error: a
// Redis that is down at start-up is an outage like any other.
func Open(cfg Config) (*Conn, error) {
	opt, err := ParseURL(cfg.URL, cfg.TLSVerify, cfg.Timeout)
	if err != nil {
		return nil, err
	}
	// go-redis logs each failed dial through a package-level logger that no client can set for
	// itself: during an outage, a line a second on stderr. Conn logs the outage once, so those go.
	logging.Disable()
	c := &Conn{
		client:     redis.NewClient(opt),
		timeout:    cfg.Timeout,
		probeEvery: cfg.ProbeEvery,
		log:        cfg.Logger,
		down:       make(chan struct{}, 1),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	if c.probeEvery <= 0 {
		c.probeEvery = time.Second
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.up.Store(true)
	if err := c.call(context.Background(), func(ctx context.Context) error { return c.client.Ping(ctx).Err() }); err == nil {
		c.log.Info("redis: rate limits and uploads in flight are shared through Redis", "addr", opt.Addr)
	}
	go c.probe()
	return c, nil
}

// Close stops the prober and closes the connections.
func (c *Conn) Close() error {
	close(c.stop)
	<-c.done
	return c.client.Close()
}

// Client is the Redis client, for state shared through the same Redis (resumable uploads').
func (c *Conn) Client() *redis.Client { return c.client }

// Healthy says whether Redis answered the last call.
func (c *Conn) Healthy() bool { return c.up.Load() }

// Outages counts the times Redis stopped answering.
func (c *Conn) Outages() uint64 { return c.outages.Load() }

// Fallbacks counts the decisions taken in memory because Redis did not answer.
func (c *Conn) Fallbacks() uint64 { return c.fallbacks.Load() }

// errDown is what call returns while Redis is known to be down.
var errDown = errors.New("redis is down")

// call runs fn with the deadline, unless Redis is known to be down. The caller's cancellation is
// not passed on (a client that goes away says nothing about Redis), its values are.
func (c *Conn) call(ctx context.Context, fn func(ctx context.Context) error) error {
	if !c.up.Load() {
		return errDown
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
	err := fn(ctx)
	if err != nil && c.up.CompareAndSwap(true, false) {
		c.outages.Add(1)
		c.log.Warn("redis does not answer: rate limits and uploads in flight are counted by this server alone until it does", "err", err)
		select {
		case c.down <- struct{}{}:
		default:
		}
	}
	return err
}

// probe waits for an outage, then pings Redis every probeEvery until it answers.
func (c *Conn) probe() {
	defer close(c.done)
	for {
		select {
		case <-c.stop:
			return
		case <-c.down:
		}
		t := time.NewTicker(c.probeEvery)
		for !c.up.Load() {
			select {
			case <-c.stop:
				t.Stop()
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
			err := c.client.Ping(ctx).Err()
			cancel()
			if err == nil && c.up.CompareAndSwap(false, true) {
				c.log.Info("redis answers again: rate limits and uploads in flight are shared again")
			}
		}
		t.Stop()
	}
}
