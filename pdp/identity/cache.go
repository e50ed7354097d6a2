package identity

import (
	"context"
	"encoding/binary"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	lru "github.com/hashicorp/golang-lru/v2"
)

// DefaultTokenCacheEntries is how many verified tokens the token cache
// holds unless identity.token_cache.max_entries says otherwise.
const DefaultTokenCacheEntries = 10_000

// tokenCacheShards splits the cache so that 64 clients verifying at once
// rarely wait on one another's lock (a hit moves its entry to the front of
// its shard's LRU list, so even a hit takes the shard's lock).
const tokenCacheShards = 16

// tokenSweepEvery is how often Run drops the entries whose tokens expired.
const tokenSweepEvery = time.Minute

// cachedToken is what a full verification of a token established: what
// follows from its bytes and the key that verified it, which no later
// check can change while that key is in the issuer's set, and the times
// that every use checks again.
type cachedToken struct {
	id      *Identity
	times   jwt.Claims // exp, nbf and iat only
	maxLife time.Duration
	// iss, kid, alg and gen are which key verified the signature: the
	// entry serves only while iss finds a key for kid and alg in a set of
	// the same gen.
	iss      tokenIssuer
	kid, alg string
	gen      uint64
	// until is exp plus the clock skew: past it every use is refused, so
	// the entry is dropped.
	until time.Time
}

// tokenCache holds verified tokens by the SHA-256 of their bytes: a
// one-byte change is another entry, and only tokens that verified are
// added, so a forged token can neither be served from the cache nor evict
// one by colliding. It holds at most its max entries (least recently used
// evicted first, within a shard).
type tokenCache struct {
	shards       []*lru.Cache[[32]byte, *cachedToken]
	hits, misses atomic.Uint64
}

// newTokenCache holds up to maxEntries (> 0) tokens in all, spread over
// up to tokenCacheShards shards.
func newTokenCache(maxEntries int) *tokenCache {
	n := min(maxEntries, tokenCacheShards)
	c := &tokenCache{shards: make([]*lru.Cache[[32]byte, *cachedToken], n)}
	for i := range c.shards {
		size := maxEntries / n
		if i < maxEntries%n {
			size++
		}
		s, err := lru.New[[32]byte, *cachedToken](size)
		if err != nil { // only for a size < 1, which n ≤ maxEntries rules out
			panic(err)
		}
		c.shards[i] = s
	}
	return c
}

func (c *tokenCache) shard(sum [32]byte) *lru.Cache[[32]byte, *cachedToken] {
	return c.shards[binary.LittleEndian.Uint64(sum[:8])%uint64(len(c.shards))]
}

func (c *tokenCache) get(sum [32]byte) *cachedToken {
	e, _ := c.shard(sum).Get(sum)
	return e
}

func (c *tokenCache) add(sum [32]byte, e *cachedToken) { c.shard(sum).Add(sum, e) }
func (c *tokenCache) remove(sum [32]byte)              { c.shard(sum).Remove(sum) }

func (c *tokenCache) len() int {
	n := 0
	for _, s := range c.shards {
		n += s.Len()
	}
	return n
}

// sweep drops the entries whose tokens expired by now.
func (c *tokenCache) sweep(now time.Time) {
	for _, s := range c.shards {
		for _, k := range s.Keys() {
			if e, ok := s.Peek(k); ok && !now.Before(e.until) {
				s.Remove(k)
			}
		}
	}
}

// TokenCacheStats are the token cache's counts since the Verifier was made.
type TokenCacheStats struct {
	Hits    uint64 // verifications answered from the cache, refusals for time included
	Misses  uint64 // tokens verified in full: new, evicted, or their issuer's keys changed
	Entries int    // tokens held now
}

// TokenCacheStats reports the token cache's counts; all zero when the
// cache is off (identity.token_cache.max_entries: 0).
func (v *Verifier) TokenCacheStats() TokenCacheStats {
	if v.cache == nil {
		return TokenCacheStats{}
	}
	return TokenCacheStats{Hits: v.cache.hits.Load(), Misses: v.cache.misses.Load(), Entries: v.cache.len()}
}

// sweepTokens drops expired tokens from the cache every tokenSweepEvery
// until ctx is done, so that an entry lives no longer than its token.
func (v *Verifier) sweepTokens(ctx context.Context) {
	t := time.NewTicker(tokenSweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			v.cache.sweep(v.now())
		}
	}
}
