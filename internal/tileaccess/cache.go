package tileaccess

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/sync/singleflight"

	"github.com/tilegate/tilegate/access"
	usagemeter "github.com/tilegate/tilegate/internal/usage"
	"github.com/tilegate/tilegate/keytoken"
	"github.com/tilegate/tilegate/mbtiles"
	"github.com/tilegate/tilegate/origin"
	"github.com/tilegate/tilegate/store"
	"github.com/tilegate/tilegate/tilesource"
	"github.com/tilegate/tilegate/tiletoken"
)

// tileCache keeps what the tile path needs of API keys and datasets in process, so a tile
// request on a warm cache runs no SQL. Entries are dropped when this process changes a key or a
// dataset (evictKey, evictDataset), when another replica's change arrives through PostgreSQL
// LISTEN/NOTIFY (listener.go), all at once whenever that listener (re)connects, and in any case
// after ttl: the bound on staleness while notifications cannot arrive.
//
// Unknown tokens and ids are cached too (negative entries), so a repeated made-up key costs one
// query per ttl, not one per request. They live in caches of their own (missingKeys,
// missingDatasets): a flood of distinct made-up keys or ids churns those and can never push a
// real key or dataset out. A token whose form no issued key has (keytoken.Check: a bad checksum,
// the wrong length) is refused without a query or an entry at all, and at most maxLoads loads
// run at once (the rest are refused at once with ErrBusy, a 503), so the tile path cannot take
// the connections management calls need.
//
// The database being away must not stop tiles: an entry past its ttl that cannot be refreshed
// because the database is unavailable keeps serving (stale-if-error) for up to staleIfError
// more; a load never holds a tile request longer than loadWait (concurrent loads of one entry
// share one query, which has dbTimeout); and what cannot be loaded is an error (503), never a
// negative entry. An entry past its ttl whose freshness is merely unknown (no notification
// dropped it: the ttl ran out, or the listener reconnected and may have missed some) serves at
// once while it is refreshed in the background; only a request with no usable entry (never
// loaded, or dropped by a notification) waits for a load. Invalidations still apply at once: an
// evicted entry is gone, stale or not.
type tileCache struct {
	store    *store.Store
	keys     *expirable.LRU[string, *KeyEntry]
	datasets *expirable.LRU[uuid.UUID, *DatasetEntry]
	// missingKeys and missingDatasets are the negative entries.
	missingKeys     *expirable.LRU[string, *KeyEntry]
	missingDatasets *expirable.LRU[uuid.UUID, *DatasetEntry]
	loads           singleflight.Group
	// loading holds a slot per load under way (at most maxLoads).
	loading chan struct{}
	sources Sources // nil: entries have no source
	// publicCC and privateCC are the Cache-Control of public and of other datasets' tiles.
	publicCC, privateCC string

	// mu orders loads against invalidations: a load that began before an invalidation must not
	// store what it read, or a change could be undone until the ttl ran out.
	mu    sync.Mutex
	epoch uint64 // guarded by mu; bumped by every invalidation
	// srcs: dataset id → the source its last load saw, reused while the key stays the same
	// (its hot tiles, open files and cached directories stay warm across reloads); guarded by mu.
	srcs map[uuid.UUID]sourceRef
	// tokens: key id → the tokens its entries are cached under (evictKey); guarded by mu.
	tokens map[uuid.UUID][]string

	// started is called after every load: the listener (PostgreSQL) starts with the first entry,
	// as nothing needs invalidating before.
	started func()

	ttl, staleIfError, loadWait, dbTimeout time.Duration
	// refreshFailed is told of refresh failures for want of a database (an aggregated log).
	refreshFailed func(kind string, began time.Time, attrs ...slog.Attr)
	// observe is told how every lookup was answered (metrics).
	observe func(Kind, Outcome)
	// flushed is when the cache was last flushed: entries loaded before are not fresh.
	flushed atomic.Pointer[time.Time]
}

// KeyEntry is an API key as the tile path sees it; Found is false for a negative entry.
type KeyEntry struct {
	loaded    time.Time
	Found     bool
	ID        uuid.UUID
	AccountID uuid.UUID
	// Rules are the key's rules for access.UseKey.
	Rules access.Key
	// Policy is the key's compiled origin and user agent rules.
	Policy *origin.Policy
	// RateLimit and MonthlyQuota are the key's limits (nil: none), applied by the server.
	RateLimit    *usagemeter.RateLimit
	MonthlyQuota *int64
}

// DatasetEntry is a dataset with everything a tile request derives from it precomputed.
type DatasetEntry struct {
	loaded  time.Time
	Found   bool
	Dataset store.Dataset
	granted []uuid.UUID // accounts the dataset is shared with
	Public  bool
	// Source is where the dataset's tiles come from (whatever its kind); nil before the first
	// upload, or when it could not be opened (SourceErr says why). SourceKey names it (Sources.Key).
	Source    tilesource.Source
	SourceKey string
	SourceErr error
	// ETag is the quoted ETag prefix: the source's version; a tile's ETag appends z/x/y. "" when
	// the source has no version (no ETag, no 304).
	ETag string
	// scope is the scope a valid token must carry now; scopePrefix is its account:dataset part,
	// which tells a stale token (403 scope) from one for another dataset (404).
	scope, scopePrefix string
	// CacheControl and ContentType are the tile responses' headers; the Values are the same
	// as header values, built once and shared by every response (never modify them): setting
	// a header from a string allocates its []string each time.
	CacheControl, ContentType           string
	CacheControlValue, ContentTypeValue []string
}

// sourceRef is the source a dataset's entries share.
type sourceRef struct {
	key string
	src tilesource.Source
}

// The caches' default sizes (Config.Entries) and the default bound on concurrent loads.
const (
	keyCacheSize     = 100_000
	datasetCacheSize = 20_000
	missCacheSize    = 20_000
	defaultMaxLoads  = 4
)

func newTileCache(cfg Config) *tileCache {
	// Entries stay in the LRU while they may still serve stale; freshness is checked on read.
	keep := cfg.TTL + cfg.StaleIfError
	evicted := cfg.Evicted
	if evicted == nil {
		evicted = func(Kind) {}
	}
	size := cfg.Entries
	if size.Keys <= 0 {
		size.Keys = keyCacheSize
	}
	if size.Datasets <= 0 {
		size.Datasets = datasetCacheSize
	}
	if size.Missing <= 0 {
		size.Missing = missCacheSize
	}
	if cfg.MaxLoads <= 0 {
		cfg.MaxLoads = defaultMaxLoads
	}
	onKey := func(string, *KeyEntry) { evicted(KindKey) }
	onDataset := func(uuid.UUID, *DatasetEntry) { evicted(KindDataset) }
	c := &tileCache{
		store:           cfg.Store,
		keys:            expirable.NewLRU(size.Keys, onKey, keep),
		datasets:        expirable.NewLRU(size.Datasets, onDataset, keep),
		missingKeys:     expirable.NewLRU(size.Missing, onKey, keep),
		missingDatasets: expirable.NewLRU(size.Missing, onDataset, keep),
		loading:         make(chan struct{}, cfg.MaxLoads),
		ttl:             cfg.TTL,
		staleIfError:    cfg.StaleIfError,
		loadWait:        cfg.LoadWait,
		dbTimeout:       cfg.DBTimeout,
		refreshFailed:   cfg.RefreshFailed,
		observe:         cfg.Observe,
		sources:         cfg.Sources,
		publicCC:        "public, max-age=" + seconds(cfg.PublicTileMaxAge),
		privateCC:       "private, max-age=" + seconds(cfg.PrivateTileMaxAge),
		srcs:            map[uuid.UUID]sourceRef{},
		tokens:          map[uuid.UUID][]string{},
		started:         func() {},
	}
	if c.refreshFailed == nil {
		c.refreshFailed = func(string, time.Time, ...slog.Attr) {}
	}
	if c.observe == nil {
		c.observe = func(Kind, Outcome) {}
	}
	c.flushed.Store(&time.Time{})
	return c
}

func seconds(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) }

// ErrBusy means an entry could not be loaded because maxLoads loads are under way already: the
// request is answered 503 with Retry-After, as for a database outage.
var ErrBusy = errors.New("tile cache: too many loads under way")

var unknownKey = &KeyEntry{}

// key returns the key with that token; a negative entry when there is none.
func (c *tileCache) key(ctx context.Context, token string) (*KeyEntry, error) {
	e, ok := c.keys.Get(token)
	if !ok {
		e, ok = c.missingKeys.Get(token)
	}
	if ok && c.fresh(e.loaded) {
		c.observe(KindKey, Hit)
		return e, nil
	}
	if keytoken.Check(token) == keytoken.Invalid {
		c.observe(KindKey, Invalid)
		return unknownKey, nil
	}
	v, err := c.load(ctx, "k"+token, ok && c.usable(e.loaded), func(lctx context.Context) (any, error) {
		return c.loadKey(lctx, token)
	})
	if err != nil {
		if ok && c.usable(e.loaded) && unavailable(err) {
			c.observe(KindKey, Stale)
			return e, nil
		}
		c.observe(KindKey, Failed)
		return nil, err
	}
	if v == nil { // served stale; a refresh is under way
		c.observe(KindKey, Stale)
		return e, nil
	}
	c.observe(KindKey, Miss)
	return v.(*KeyEntry), nil
}

func (c *tileCache) loadKey(ctx context.Context, token string) (*KeyEntry, error) {
	epoch := c.currentEpoch()
	k, previous, err := c.store.APIKeyByToken(ctx, token)
	e := &KeyEntry{loaded: time.Now()}
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("load API key: %w", err)
	default:
		ua := ""
		if k.UserAgent != nil {
			ua = *k.UserAgent
		}
		policy, err := origin.Compile(k.Origins, ua)
		if err != nil {
			// Rules are validated when written; one that no longer compiles refuses
			// everything rather than allowing everything.
			policy, _ = origin.Compile([]string{"invalid.invalid"}, "")
		}
		e = &KeyEntry{loaded: e.loaded, Found: true, ID: k.ID, AccountID: k.AccountID, Policy: policy,
			Rules: keyRules(k, previous), MonthlyQuota: k.MonthlyQuota}
		if k.RateLimitRPS != nil && k.RateLimitBurst != nil {
			e.RateLimit = &usagemeter.RateLimit{RPS: *k.RateLimitRPS, Burst: *k.RateLimitBurst}
		}
	}
	c.mu.Lock()
	if c.epoch == epoch {
		c.addKey(token, e)
	}
	c.mu.Unlock()
	c.started()
	return e, nil
}

// keyRules are k's rules for access.UseKey, as looked up by its previous token or its current one.
func keyRules(k store.APIKey, previous bool) access.Key {
	r := access.Key{Account: k.AccountID, Disabled: !k.Enabled, Datasets: k.DatasetIDs}
	if k.ExpiresAt != nil {
		r.Expires = *k.ExpiresAt
	}
	if k.IPRanges != nil {
		r.IPRanges = make([]netip.Prefix, 0, len(*k.IPRanges))
		for _, s := range *k.IPRanges {
			if p, err := netip.ParsePrefix(s); err == nil {
				r.IPRanges = append(r.IPRanges, p)
			}
			// Ranges are validated when written; one that no longer parses allows nothing.
		}
	}
	if previous {
		r.TokenUntil = time.Unix(0, 0) // no grace recorded: retired
		if k.PreviousTokenExpiresAt != nil {
			r.TokenUntil = *k.PreviousTokenExpiresAt
		}
	}
	return r
}

// dataset returns the dataset's entry; a negative one when there is no such dataset.
func (c *tileCache) dataset(ctx context.Context, id uuid.UUID) (*DatasetEntry, error) {
	e, ok := c.datasets.Get(id)
	if !ok {
		e, ok = c.missingDatasets.Get(id)
	}
	if ok && c.fresh(e.loaded) {
		c.observe(KindDataset, Hit)
		return e, nil
	}
	v, err := c.load(ctx, "d"+id.String(), ok && c.usable(e.loaded), func(lctx context.Context) (any, error) {
		return c.loadDataset(lctx, id)
	})
	if err != nil {
		if ok && c.usable(e.loaded) && unavailable(err) {
			c.observe(KindDataset, Stale)
			return e, nil
		}
		c.observe(KindDataset, Failed)
		return nil, err
	}
	if v == nil {
		c.observe(KindDataset, Stale)
		return e, nil
	}
	c.observe(KindDataset, Miss)
	return v.(*DatasetEntry), nil
}

func (c *tileCache) loadDataset(ctx context.Context, id uuid.UUID) (*DatasetEntry, error) {
	epoch := c.currentEpoch()
	src, err := c.store.TileSource(ctx, id)
	e := &DatasetEntry{}
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("load dataset %s: %w", id, err)
	default:
		e = c.entry(src)
	}
	e.loaded = time.Now()
	var stale tilesource.Source
	c.mu.Lock()
	// A replaced or deleted dataset's source stays open until told otherwise; whoever first
	// sees the dataset without it lets it go (the uploading process already has). A reload
	// that finds the same key keeps the source the entries share.
	old, had := c.srcs[id]
	switch {
	case had && old.key == e.SourceKey:
		if e.Source != nil && e.Source != old.src {
			stale, e.Source = e.Source, old.src
		}
	default:
		if had {
			stale = old.src
		}
		if e.Source != nil {
			c.srcs[id] = sourceRef{key: e.SourceKey, src: e.Source}
		} else {
			delete(c.srcs, id)
		}
	}
	if c.epoch == epoch {
		if e.Found {
			c.datasets.Add(id, e)
			c.missingDatasets.Remove(id)
		} else {
			c.missingDatasets.Add(id, e)
			c.datasets.Remove(id)
		}
	}
	c.mu.Unlock()
	if stale != nil {
		_ = stale.Close()
	}
	c.started()
	return e, nil
}

// fresh: loaded within the ttl and after the last flush. usable: loaded within the ttl plus
// staleIfError (what may serve when a refresh fails for want of a database).
func (c *tileCache) fresh(loaded time.Time) bool {
	return time.Since(loaded) < c.ttl && loaded.After(*c.flushed.Load())
}
func (c *tileCache) usable(loaded time.Time) bool {
	return time.Since(loaded) < c.ttl+c.staleIfError
}

// load runs fn (one call at a time per key, shared by every request that wants it) with
// dbTimeout, and waits for it at most loadWait or until ctx ends. With a usable stale entry it
// does not wait at all: it starts the refresh and returns (nil, nil), and the caller serves the
// stale entry. Beyond maxLoads loads under way fn does not run: ErrBusy.
func (c *tileCache) load(ctx context.Context, key string, haveStale bool, fn func(context.Context) (any, error)) (any, error) {
	ch := c.loads.DoChan(key, func() (any, error) {
		select {
		case c.loading <- struct{}{}:
			defer func() { <-c.loading }()
		default:
			return nil, ErrBusy
		}
		began := time.Now()
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.dbTimeout)
		defer cancel()
		v, err := fn(lctx)
		c.loaded(err, began)
		return v, err
	})
	if haveStale {
		return nil, nil
	}
	t := time.NewTimer(c.loadWait)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.Val, r.Err
	case <-t.C:
		return nil, fmt.Errorf("tile cache: no answer from the database within %v: %w", c.loadWait, context.DeadlineExceeded)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// unavailable: err is the database's absence or the load bound (ErrBusy): a usable stale
// entry serves instead.
func unavailable(err error) bool { return errors.Is(err, ErrBusy) || store.IsUnavailable(err) }

// loaded notes how a load went: refresh failures for want of a database start (or continue)
// an outage, logged once.
func (c *tileCache) loaded(err error, began time.Time) {
	if store.IsUnavailable(err) {
		c.refreshFailed("refresh", began, slog.String("reason", store.UnavailableReason(err)),
			slog.String("stale_if_error", c.staleIfError.String()), slog.String("err", err.Error()))
	}
}

func (c *tileCache) entry(src store.TileSource) *DatasetEntry {
	d := src.Dataset
	e := &DatasetEntry{
		Found: true, Dataset: d, granted: src.GrantedAccounts, Public: d.Visibility == store.Public,
		scope:       tiletoken.Scope(d.AccountID.String(), d.ID.String(), d.AccessVersion),
		ContentType: mbtiles.ContentType(d.Format),
	}
	e.scopePrefix = e.scope[:strings.LastIndexByte(e.scope, ':')+1]
	e.CacheControl = c.privateCC
	if e.Public {
		e.CacheControl = c.publicCC
	}
	e.CacheControlValue, e.ContentTypeValue = []string{e.CacheControl}, []string{e.ContentType}
	if c.sources == nil {
		return e
	}
	if e.SourceKey = c.sources.Key(d); e.SourceKey == "" {
		return e // nothing uploaded yet
	}
	// Reuse the source the dataset already has under this key (no need to open another).
	c.mu.Lock()
	ref, ok := c.srcs[d.ID]
	c.mu.Unlock()
	if ok && ref.key == e.SourceKey {
		e.Source = ref.src
	} else {
		e.Source, e.SourceErr = c.sources.Open(d)
		if e.SourceErr != nil {
			e.Source = nil
		}
	}
	if e.Source != nil {
		if v := e.Source.Version(); v != "" {
			e.ETag = `"` + v + "-"
		}
	}
	return e
}

// Facts is what the access rules need of the dataset, as account (an API key's) sees it.
func (e *DatasetEntry) Facts(account uuid.UUID) access.Dataset {
	return access.Dataset{Owner: e.Dataset.AccountID, Visibility: e.Dataset.Visibility, AccountGrant: slices.Contains(e.granted, account)}
}

func (c *tileCache) currentEpoch() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

// evictKey drops every cached token of a key (its current token and, after a rotation, its
// previous one): a change NOTIFY carries the key's id.
func (c *tileCache) evictKey(id uuid.UUID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	for _, token := range c.tokens[id] {
		c.keys.Remove(token)
	}
	delete(c.tokens, id)
}

// addKey caches e under token (a negative entry among the negative ones) and indexes it by the
// key's id; the caller holds mu. Tokens the LRU has let go are dropped from the index on the
// way, so it holds a key's live tokens only.
func (c *tileCache) addKey(token string, e *KeyEntry) {
	if !e.Found {
		c.missingKeys.Add(token, e)
		c.keys.Remove(token)
		return
	}
	c.keys.Add(token, e)
	c.missingKeys.Remove(token)
	list := c.tokens[e.ID][:0:0]
	for _, t := range c.tokens[e.ID] {
		if _, ok := c.keys.Peek(t); ok && t != token {
			list = append(list, t)
		}
	}
	c.tokens[e.ID] = append(list, token)
}

func (c *tileCache) evictDataset(id uuid.UUID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	c.datasets.Remove(id)
	c.missingDatasets.Remove(id)
}

// evictDatasetEntry drops the dataset's entry if it is still e: a reader that found e stale
// must not throw away a fresher entry another reader has loaded meanwhile.
func (c *tileCache) evictDatasetEntry(id uuid.UUID, e *DatasetEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, ok := c.datasets.Peek(id)
	if !ok {
		cur, ok = c.missingDatasets.Peek(id)
	}
	if ok && cur != e {
		return
	}
	c.epoch++
	c.datasets.Remove(id)
	c.missingDatasets.Remove(id)
}

// apply evicts what a committed change (this process's, or another replica's NOTIFY) affects.
func (c *tileCache) apply(ch store.Change) {
	switch ch.Channel {
	case store.KeyChannel:
		if id, err := uuid.Parse(ch.Payload); err == nil {
			c.evictKey(id)
		}
	case store.DatasetChannel:
		if id, err := uuid.Parse(ch.Payload); err == nil {
			c.evictDataset(id)
		}
	}
}

// flush marks everything for a refresh: after the listener (re)connects, notifications may have
// been missed. Entries are not dropped: should the database go away before they are refreshed,
// they may still serve stale (as any entry past its ttl), rather than the reconnect having turned
// a warm cache cold just before an outage.
func (c *tileCache) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	now := time.Now()
	c.flushed.Store(&now)
}
