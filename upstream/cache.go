package upstream

import (
	"container/list"
	"sync"
	"time"
)

// entry is a cached upstream tile: its bytes, the validator to revalidate it with, and until when
// it may be served without asking the upstream.
type entry struct {
	tile    Tile
	etag    string
	expires time.Time
}

// cacheEntryOverhead approximates an entry's memory besides the tile and key (list element,
// map slot, struct), so that the byte bound holds for small tiles too.
const cacheEntryOverhead = 160

// cache is a byte-bounded LRU of upstream tiles. Expired entries stay (until evicted) because
// their ETag lets the next request revalidate instead of downloading the tile again.
type cache struct {
	mu    sync.Mutex
	max   int64
	size  int64
	ll    *list.List
	items map[string]*list.Element
	hits  uint64
}

type cacheItem struct {
	key  string
	e    entry
	cost int64
}

func newCache(maxBytes int64) *cache {
	if maxBytes <= 0 {
		return nil
	}
	return &cache{max: maxBytes, ll: list.New(), items: map[string]*list.Element{}}
}

func (c *cache) get(key string) (entry, bool) {
	if c == nil {
		return entry{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return entry{}, false
	}
	c.ll.MoveToFront(el)
	it := el.Value.(*cacheItem)
	if time.Now().Before(it.e.expires) {
		c.hits++
	}
	return it.e, true
}

func (c *cache) put(key string, e entry) {
	if c == nil {
		return
	}
	cost := int64(len(key)+len(e.tile.Data)+len(e.etag)+len(e.tile.ContentType)) + cacheEntryOverhead
	if cost > c.max/16 {
		return // one huge tile must not flush everything else
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		it := el.Value.(*cacheItem)
		c.size += cost - it.cost
		it.e, it.cost = e, cost
		c.ll.MoveToFront(el)
	} else {
		c.items[key] = c.ll.PushFront(&cacheItem{key: key, e: e, cost: cost})
		c.size += cost
	}
	for c.size > c.max {
		el := c.ll.Back()
		it := el.Value.(*cacheItem)
		c.ll.Remove(el)
		delete(c.items, it.key)
		c.size -= it.cost
	}
}

func (c *cache) hitCount() uint64 {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits
}
