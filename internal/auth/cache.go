package auth

import (
	"crypto/sha256"
	"sync"
	"time"
)

// A page that uploads many files sends the same token with each, and checking a signature
// costs more than a small upload's own work (BenchmarkVerify). So a token that verified is
// remembered, by its SHA-256, until it expires (with the leeway) or for cacheTTL, whichever
// comes first: a token is valid until its exp anyway, and cacheTTL bounds how long a key
// removed from the JWKS still lets tokens through that were checked with it.
const (
	cacheTTL          = time.Minute
	DefaultCacheSize  = 10000 // tokens remembered at most (about 1 MB)
	cacheEvictPerMiss = 16    // entries dropped at once when the cache is full
)

type tokenCache struct {
	mu  sync.Mutex
	m   map[[sha256.Size]byte]cachedToken
	max int
}

type cachedToken struct {
	sub   string
	until time.Time
}

func newTokenCache(size int) *tokenCache {
	if size <= 0 {
		return nil
	}
	return &tokenCache{m: make(map[[sha256.Size]byte]cachedToken), max: size}
}

// get returns the subject of a token that verified, if it is remembered and still valid at now.
func (c *tokenCache) get(key [sha256.Size]byte, now time.Time) (string, bool) {
	if c == nil {
		return "", false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok {
		return "", false
	}
	if !now.Before(e.until) {
		delete(c.m, key)
		return "", false
	}
	return e.sub, true
}

// put remembers a token that verified. When the cache is full, expired entries go first, then
// some others (a map's order is random, so no client can keep its own entries in).
func (c *tokenCache) put(key [sha256.Size]byte, sub string, until, now time.Time) {
	if c == nil || !now.Before(until) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		dropped := 0
		for k, e := range c.m {
			if !now.Before(e.until) || dropped < cacheEvictPerMiss {
				delete(c.m, k)
				dropped++
			}
		}
	}
	c.m[key] = cachedToken{sub: sub, until: until}
}
