package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// LocalLeases counts uploads in flight in this process: admission.NewMemoryLeases. Leases uses
// one to count this server's own uploads, and to decide alone while Redis is down.
type LocalLeases interface {
	Acquire(ctx context.Context, key string, max int) (release func(), ok bool)
}

// Leases counts each client's uploads in flight across every server that uses the same Redis
// (admission's Leases). Each upload holds one lease: a member of a sorted set per client, scored
// by when it expires in Redis's own clock. One Lua script drops the expired members, counts the
// rest and adds the new one, so two servers cannot both take the last place.
//
// A lease is renewed every third of its expiry while its upload runs, and removed when the upload
// ends; a server that dies stops renewing, and its leases lapse by themselves within one expiry.
// The expiry is a little longer than the longest a live upload may go without sending a byte, so
// a live upload's lease outlasts two failed renewals.
//
// Every upload is also counted in the LocalLeases given, which never lets this server alone pass
// max, and which decides alone while Redis does not answer.
type Leases struct {
	conn       *Conn
	local      LocalLeases
	ttl        time.Duration
	renewEvery time.Duration
}

// NewLeases builds the shared count on conn. silence is the longest an upload may go without
// sending a byte before it is ended (BODY_IDLE_TIMEOUT, or UPLOAD_TIMEOUT if longer).
func NewLeases(conn *Conn, local LocalLeases, silence time.Duration) *Leases {
	ttl := silence + silence/4
	return &Leases{conn: conn, local: local, ttl: ttl, renewEvery: ttl / 3}
}

// TTL is how long a lease outlives the last renewal of its server.
func (l *Leases) TTL() time.Duration { return l.ttl }

var acquireLease = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

// renewLease adds the lease back if it was lost (a Redis restarted without its data): its upload runs.
var renewLease = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// Acquire takes one of max places for key, on this server and in Redis.
func (l *Leases) Acquire(ctx context.Context, key string, max int) (func(), bool) {
	releaseLocal, ok := l.local.Acquire(ctx, key, max)
	if !ok {
		return func() {}, false
	}
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24)
	id := hex.EncodeToString(b[:])
	rkey := keyPrefix + "leases:" + key
	ttl := l.ttl.Milliseconds()
	var admitted int64
	err := l.conn.call(ctx, func(ctx context.Context) error {
		var err error
		admitted, err = acquireLease.Run(ctx, l.conn.client, []string{rkey}, id, max, ttl).Int64()
		return err
	})
	if err != nil {
		l.conn.fallbacks.Add(1)
		return releaseLocal, true // counted here alone
	}
	if admitted != 1 {
		releaseLocal()
		return func() {}, false
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(l.renewEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			// A failure marks Redis down; the next tick tries again once it answers.
			_ = l.conn.call(ctx, func(ctx context.Context) error {
				return renewLease.Run(ctx, l.conn.client, []string{rkey}, id, ttl).Err()
			})
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stop)
			<-done
			// Redis down: the lease lapses by itself within its expiry.
			_ = l.conn.call(ctx, func(ctx context.Context) error { return l.conn.client.ZRem(ctx, rkey, id).Err() })
			releaseLocal()
		})
	}, true
}
