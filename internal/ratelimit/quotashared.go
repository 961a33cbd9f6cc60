package ratelimit

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// SharedQuotas keeps each client's window in Redis, so that every server using the same Redis
// counts one quota per client. A window is a hash (its start and the bytes used) that expires
// with the window; each call is one Lua script, so two servers cannot both take the last bytes,
// and the clock is Redis's own. When Redis does not answer, this server's MemoryQuotas decides
// (and what it granted is given back there), as the rate limit does: while Redis is down each
// server counts alone, so a client may store up to the quota on each server.
type SharedQuotas struct {
	conn   *Conn
	spec   QuotaSpec
	memory *MemoryQuotas
}

// NewSharedQuotas builds the shared count for spec, which must not be Off, on conn; memory
// decides while Redis is down.
func NewSharedQuotas(conn *Conn, spec QuotaSpec, memory *MemoryQuotas) *SharedQuotas {
	return &SharedQuotas{conn: conn, spec: spec, memory: memory}
}

// quotaNow and quotaWindowOf are the head of both scripts: Redis's time in milliseconds, and the
// key's window (start, used), a new one when there is none or it has ended. Counts are written
// with %d: Lua's own number-to-string would round past 14 digits.
const quotaWindowOf = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local v = redis.call('HMGET', KEYS[1], 's', 'u')
local start, used = tonumber(v[1]), tonumber(v[2])
if not start or not used or now >= start + window then
  start, used = nil, 0
end
`

// reserveQuota: ARGV limit, window (ms), need, want → {granted, window start, remaining, ms to reset}.
var reserveQuota = redis.NewScript(quotaWindowOf + `
local need, want = tonumber(ARGV[3]), tonumber(ARGV[4])
if not start then
  start = now
end
local left = limit - used
if left < need then
  return {0, string.format('%d', start), string.format('%d', left), start + window - now}
end
local grant = math.min(want, left)
redis.call('HSET', KEYS[1], 's', string.format('%d', start), 'u', string.format('%d', used + grant))
redis.call('PEXPIRE', KEYS[1], start + window - now)
return {grant, string.format('%d', start), string.format('%d', left - grant), start + window - now}
`)

// releaseQuota: ARGV limit, window (ms), the grant's window start, n → {remaining, ms to reset}.
var releaseQuota = redis.NewScript(quotaWindowOf + `
if not start then
  return {string.format('%d', limit), window}
end
local n = tonumber(ARGV[4])
if n > 0 and string.format('%d', start) == ARGV[3] then
  used = math.max(used - n, 0)
  redis.call('HSET', KEYS[1], 'u', string.format('%d', used))
end
return {string.format('%d', limit - used), start + window - now}
`)

func (s *SharedQuotas) redisKey(key string) string { return keyPrefix + "quota:" + key }

// Reserve takes between need and want bytes of key's quota in Redis (in memory while Redis is
// down), or nothing.
func (s *SharedQuotas) Reserve(ctx context.Context, key string, need, want int64) (Grant, QuotaState) {
	var res []any
	err := s.conn.call(ctx, func(ctx context.Context) error {
		var err error
		res, err = reserveQuota.Run(ctx, s.conn.client, []string{s.redisKey(key)},
			s.spec.Bytes, s.spec.Window.Milliseconds(), need, want).Slice()
		return err
	})
	var granted, start, remaining, resetMS int64
	if err == nil {
		err = scanInts(res, &granted, &start, &remaining, &resetMS)
	}
	if err != nil {
		s.conn.fallbacks.Add(1)
		return s.memory.Reserve(ctx, key, need, want)
	}
	st := QuotaState{Remaining: remaining, Reset: time.Duration(resetMS) * time.Millisecond}
	if granted == 0 {
		return Grant{}, st
	}
	return Grant{Bytes: granted, window: start, shared: true}, st
}

// Release gives n bytes of g back where they were taken, and says where key stands.
func (s *SharedQuotas) Release(ctx context.Context, key string, g Grant, n int64) QuotaState {
	if g.Bytes > 0 && !g.shared { // taken in memory while Redis was down: given back there
		return s.memory.Release(ctx, key, g, n)
	}
	if g.Bytes == 0 {
		n = 0
	}
	var res []any
	err := s.conn.call(ctx, func(ctx context.Context) error {
		var err error
		res, err = releaseQuota.Run(ctx, s.conn.client, []string{s.redisKey(key)},
			s.spec.Bytes, s.spec.Window.Milliseconds(), g.window, n).Slice()
		return err
	})
	var remaining, resetMS int64
	if err == nil {
		err = scanInts(res, &remaining, &resetMS)
	}
	if err != nil {
		// Bytes taken in Redis stay counted there until their window ends.
		s.conn.fallbacks.Add(1)
		return s.memory.Release(ctx, key, Grant{}, 0)
	}
	return QuotaState{Remaining: remaining, Reset: time.Duration(resetMS) * time.Millisecond}
}

// scanInts reads a script's answer of integers (or integers written as strings) into dst.
func scanInts(res []any, dst ...*int64) error {
	if len(res) != len(dst) {
		return fmt.Errorf("quota script answered %d values, want %d", len(res), len(dst))
	}
	for i, v := range res {
		switch v := v.(type) {
		case int64:
			*dst[i] = v
		case string:
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return fmt.Errorf("quota script answered %q: %w", v, err)
			}
			*dst[i] = n
		default:
			return fmt.Errorf("quota script answered a %T", v)
		}
	}
	return nil
}
