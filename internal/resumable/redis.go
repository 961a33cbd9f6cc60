package resumable

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a State shared by every instance that uses the same Redis: each upload is one JSON
// value that expires with the upload, its lock a key of its own that its holder renews, and a
// sorted set of the uploads by expiry lets the sweep find what the stores still hold of them.
type Redis struct {
	client *redis.Client
	prefix string
	// lockTTL is how long a lock outlives its holder's last renewal; renewed every third of it.
	lockTTL time.Duration
}

// NewRedis keeps the state in client's Redis under keys that begin with prefix. A lock whose
// holder dies lapses within lockTTL.
func NewRedis(client *redis.Client, prefix string, lockTTL time.Duration) *Redis {
	return &Redis{client: client, prefix: prefix, lockTTL: lockTTL}
}

func (r *Redis) key(id string) string     { return r.prefix + "upload:" + id }
func (r *Redis) lockKey(id string) string { return r.prefix + "lock:" + id }
func (r *Redis) expiryKey() string        { return r.prefix + "expiry" }

func (r *Redis) Create(ctx context.Context, u Upload) error {
	b, err := encode(u)
	if err != nil {
		return err
	}
	_, err = r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, r.key(u.ID), b, 0)
		p.PExpireAt(ctx, r.key(u.ID), u.Expires)
		p.ZAdd(ctx, r.expiryKey(), redis.Z{Score: float64(u.Expires.UnixMilli()), Member: u.StoreID})
		return nil
	})
	if err != nil {
		return fmt.Errorf("resumable: create in redis: %w", err)
	}
	return nil
}

func (r *Redis) Get(ctx context.Context, id string) (Upload, error) {
	b, err := r.client.Get(ctx, r.key(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return Upload{}, ErrNotFound
	}
	if err != nil {
		return Upload{}, fmt.Errorf("resumable: get from redis: %w", err)
	}
	var u Upload
	if err := json.Unmarshal(b, &u); err != nil {
		return Upload{}, fmt.Errorf("resumable: decode %s: %w", id, err)
	}
	return u, nil
}

// saveScript replaces the value only while it exists (an expired or deleted upload stays gone),
// keeping its expiry, and names its store id in the sorted set by expiry (a restarted upload
// has a new one).
var saveScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
return 1
`)

func (r *Redis) Save(ctx context.Context, u Upload) error {
	b, err := encode(u)
	if err != nil {
		return err
	}
	n, err := saveScript.Run(ctx, r.client, []string{r.key(u.ID), r.expiryKey()}, b, u.StoreID, u.Expires.UnixMilli()).Int()
	if err != nil {
		return fmt.Errorf("resumable: save in redis: %w", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

func (r *Redis) Delete(ctx context.Context, id string) error {
	if err := r.client.Del(ctx, r.key(id)).Err(); err != nil {
		return fmt.Errorf("resumable: delete from redis: %w", err)
	}
	return nil
}

// unlockScript and renewScript act only on the lock their holder took.
var (
	unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)
	renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`)
)

func (r *Redis) Lock(ctx context.Context, id string) (func(), error) {
	token := NewID()
	ok, err := r.client.SetNX(ctx, r.lockKey(id), token, r.lockTTL).Result()
	if err != nil {
		return nil, fmt.Errorf("resumable: lock in redis: %w", err)
	}
	if !ok {
		return nil, ErrLocked
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // renews the lock while its holder lives
		defer close(done)
		t := time.NewTicker(r.lockTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				rctx, cancel := context.WithTimeout(context.Background(), r.lockTTL/3)
				_ = renewScript.Run(rctx, r.client, []string{r.lockKey(id)}, token, r.lockTTL.Milliseconds()).Err()
				cancel()
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stop)
			<-done
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.lockTTL/3)
			defer cancel()
			_ = unlockScript.Run(rctx, r.client, []string{r.lockKey(id)}, token).Err() // else it lapses
		})
	}, nil
}

func (r *Redis) Expired(ctx context.Context, now time.Time) ([]Upload, error) {
	ids, err := r.client.ZRangeByScore(ctx, r.expiryKey(), &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10)}).Result()
	if err != nil {
		return nil, fmt.Errorf("resumable: sweep redis: %w", err)
	}
	var out []Upload
	for _, id := range ids { // store ids
		// ZREM says which instance sweeps it: the one that removed it.
		n, err := r.client.ZRem(ctx, r.expiryKey(), id).Result()
		if err != nil {
			return out, fmt.Errorf("resumable: sweep redis: %w", err)
		}
		if n == 0 {
			continue
		}
		// The value itself has expired in Redis by now; what the stores hold is named by the store id.
		out = append(out, Upload{StoreID: id})
	}
	return out, nil
}

func encode(u Upload) ([]byte, error) {
	u.Params.Memory = nil
	b, err := json.Marshal(u)
	if err != nil {
		return nil, fmt.Errorf("resumable: encode %s: %w", u.ID, err)
	}
	return b, nil
}
