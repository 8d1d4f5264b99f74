package enrich

import (
	"container/list"
	"strings"
	"sync"
	"time"

	"github.com/bendstream/bend/internal/metricnames"
	metrics "github.com/rcrowley/go-metrics"
)

// cache is a least-recently-used cache of at most size entries, each of
// which expires ttl after it was added. Safe for concurrent use.
//
// It is written here rather than taken from golang-lru/v2/expirable, whose
// NewLRU starts a cleanup goroutine that can never be stopped: every Build
// (and every test) would leak one. This one has no goroutine: an expired
// entry is dropped when it is looked up, or evicted as the least recently
// used, so memory stays bounded by size.
type cache[V any] struct {
	size int
	ttl  time.Duration
	now  func() time.Time // time.Now; tests replace it

	hits, misses metrics.Counter

	mu    sync.Mutex
	order list.List // of *cacheEntry[V], most recently used first
	items map[string]*list.Element
}

type cacheEntry[V any] struct {
	key     string
	val     V
	expires time.Time
}

// newCache returns an empty cache counting its hits and misses as
// enrich.NAME.cache_hits and enrich.NAME.cache_misses in reg.
func newCache[V any](name string, size int, ttl time.Duration, reg metrics.Registry) *cache[V] {
	return &cache[V]{
		size: size, ttl: ttl, now: time.Now,
		hits:   metrics.GetOrRegisterCounter(metricnames.Enricher(name, metricnames.EnricherCacheHits), reg),
		misses: metrics.GetOrRegisterCounter(metricnames.Enricher(name, metricnames.EnricherCacheMisses), reg),
		items:  make(map[string]*list.Element, min(size, 1024)),
	}
}

// get returns the live value under key, counting a hit or a miss.
func (c *cache[V]) get(key string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		e := el.Value.(*cacheEntry[V])
		if c.now().Before(e.expires) {
			c.order.MoveToFront(el)
			c.hits.Inc(1)
			return e.val, true
		}
		c.removeLocked(el)
	}
	c.misses.Inc(1)
	var zero V
	return zero, false
}

// add stores val under key for ttl, evicting the least recently used entry
// when the cache is full.
func (c *cache[V]) add(key string, val V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	expires := c.now().Add(c.ttl)
	if el, ok := c.items[key]; ok {
		e := el.Value.(*cacheEntry[V])
		e.val, e.expires = val, expires
		c.order.MoveToFront(el)
		return
	}
	if c.order.Len() >= c.size {
		if el := c.order.Back(); el != nil {
			c.removeLocked(el)
		}
	}
	// A key may share an activity's record buffer (activity.Parse): the
	// copy keeps the cache's memory its own.
	key = strings.Clone(key)
	c.items[key] = c.order.PushFront(&cacheEntry[V]{key: key, val: val, expires: expires})
}

// len returns the number of entries held, expired ones included.
func (c *cache[V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

func (c *cache[V]) removeLocked(el *list.Element) {
	c.order.Remove(el)
	delete(c.items, el.Value.(*cacheEntry[V]).key)
}
