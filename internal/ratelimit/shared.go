package ratelimit

import (
	"context"

	"github.com/go-redis/redis_rate/v10"
)

// Shared is a Limiter whose buckets live in Redis, so that every server using the same Redis
// draws on one budget per client. It is GCRA (redis_rate's one Lua script), which is the token
// bucket of Memory seen from the other side: the same rate and burst, the same answers, a refused
// request spends nothing. The clock is Redis's own, so the servers' clocks need not agree. When
// Redis does not answer, the decision comes from memory, this server's own buckets.
type Shared struct {
	conn   *Conn
	limit  redis_rate.Limit
	gcra   *redis_rate.Limiter
	memory *Memory
}

// NewShared builds the shared limiter for spec, which must not be Off, on conn; memory decides
// while Redis is down.
func NewShared(conn *Conn, spec Spec, memory *Memory) *Shared {
	return &Shared{
		conn:   conn,
		limit:  redis_rate.Limit{Rate: spec.Count, Period: spec.Period, Burst: spec.Burst},
		gcra:   redis_rate.NewLimiter(conn.client),
		memory: memory,
	}
}

// Allow takes one request from key's budget in Redis, or in memory while Redis is down.
func (s *Shared) Allow(ctx context.Context, key string) Decision {
	var res *redis_rate.Result
	err := s.conn.call(ctx, func(ctx context.Context) error {
		var err error
		res, err = s.gcra.Allow(ctx, keyPrefix+key, s.limit) // redis_rate adds "rate:" in front
		return err
	})
	if err != nil {
		s.conn.fallbacks.Add(1)
		return s.memory.Allow(ctx, key)
	}
	d := Decision{Allowed: res.Allowed > 0, Remaining: max(res.Remaining, 0), Reset: max(res.ResetAfter, 0)}
	if !d.Allowed {
		d.RetryAfter = max(res.RetryAfter, 0)
	}
	return d
}
