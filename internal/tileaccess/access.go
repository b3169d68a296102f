// Package tileaccess is the tile path's decision and caching layer: it resolves a tile
// request's dataset and API key from in-process caches (no SQL on a warm cache), decides whether
// the request's credentials may read the dataset (Decide: the one place every key and token
// rule lives, with refusals as values), keeps the caches in step with changes made here and on
// other replicas (PostgreSQL LISTEN/NOTIFY), and records keys' last use without a write per
// tile. The HTTP wiring (parsing, writing, headers) is the server's.
package tileaccess

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/store"
	"github.com/tilegate/tilegate/tilesource"
	"github.com/tilegate/tilegate/tiletoken"
)

// Config is what Access needs; every duration must be set (the server applies the defaults).
type Config struct {
	Store  *store.Store
	Signer *tiletoken.Signer
	// Sources opens the datasets' tile sources (nil: entries have none). A source a dataset no
	// longer uses is closed by the first load that sees it gone.
	Sources Sources
	// TTL is how long a cached key or dataset is trusted without hearing of a change;
	// StaleIfError how long past it an entry keeps serving while the database is unavailable.
	TTL, StaleIfError time.Duration
	// LoadWait is the longest a request waits for an entry to load; DBTimeout the load's deadline.
	LoadWait, DBTimeout time.Duration
	// MaxLoads bounds the loads under way at once (each holds a database connection); a load
	// beyond it is refused at once with ErrBusy. 0: 4.
	MaxLoads int
	// Entries are the caches' sizes; zero fields take the defaults.
	Entries Entries
	// PublicTileMaxAge and PrivateTileMaxAge are the tiles' Cache-Control max-ages.
	PublicTileMaxAge, PrivateTileMaxAge time.Duration
	// LastUsedInterval is how often keys' last_used is written.
	LastUsedInterval time.Duration
	Logger           *slog.Logger
	// RefreshFailed is told of every refresh that failed because the database is unavailable
	// (an aggregated outage log); nil: nobody.
	RefreshFailed func(kind string, began time.Time, attrs ...slog.Attr)
	// Observe is told how every cache lookup was answered (metrics); nil: nobody. It runs on
	// the hot path: it must be cheap and must not block.
	Observe func(Kind, Outcome)
	// TrustedProxies are the peers whose X-Forwarded-For is believed (for keys' ip_ranges).
	TrustedProxies []netip.Prefix
	// Evicted is told of every entry dropped from a cache (invalidated, expired or over
	// capacity); nil: nobody. Same constraints as Observe.
	Evicted func(Kind)
}

// Sources opens the tile sources of datasets as their entries are loaded: once per change of
// the dataset's source, not per tile nor per reload.
type Sources interface {
	// Key names the source d's row points at: an equal key means the same bytes, and the
	// source loaded before is kept. "" when d has none (nothing uploaded yet).
	Key(d store.Dataset) string
	// Open builds the source Key(d) names, without I/O (sources open lazily). An error (such as
	// an upstream's headers sealed under a key no longer configured) is kept in the entry and
	// answered to its tile requests.
	Open(d store.Dataset) (tilesource.Source, error)
}

// Entries are the tile caches' sizes: Keys and Datasets found (defaults 100,000 and 20,000),
// Missing the negative entries of each (unknown tokens, unknown ids; default 20,000 each).
type Entries struct {
	Keys, Datasets, Missing int
}

// Kind names a cache for Observe.
type Kind uint8

const (
	KindKey Kind = iota
	KindDataset
)

func (k Kind) String() string {
	if k == KindKey {
		return "key"
	}
	return "dataset"
}

// Outcome is how a cache lookup was answered.
type Outcome uint8

const (
	Hit     Outcome = iota // a fresh entry
	Miss                   // loaded from the database (new or invalidated; expired with none usable)
	Stale                  // served past its TTL while it is refreshed (or cannot be: the database is unavailable)
	Failed                 // nothing could be loaded (the request answers 503)
	Invalid                // a key that cannot exist, refused without a lookup
)

func (o Outcome) String() string {
	return [...]string{"hit", "miss", "stale", "failed", "invalid"}[o]
}

// Access resolves and authorises tile requests. Create it with New; Close it when done.
type Access struct {
	signer   *tiletoken.Signer
	cache    *tileCache
	listener *listener
	lastUsed *lastUsed
	// trustedProxies: see Config.TrustedProxies.
	trustedProxies []netip.Prefix
}

// New builds an Access. On PostgreSQL its listener starts with the first cached entry.
func New(cfg Config) *Access {
	a := &Access{
		signer:         cfg.Signer,
		cache:          newTileCache(cfg),
		lastUsed:       newLastUsed(cfg.Store, cfg.Logger, cfg.LastUsedInterval),
		trustedProxies: cfg.TrustedProxies,
	}
	a.listener = newListener(cfg.Store.DSN(), a.cache, cfg.Logger)
	if cfg.Store.Dialect() == store.Postgres {
		a.cache.started = a.listener.start
	}
	return a
}

// Dataset returns the dataset's entry: Found is false when there is no such dataset. The error
// means it could not be loaded (the database is unavailable: 503).
func (a *Access) Dataset(ctx context.Context, id uuid.UUID) (*DatasetEntry, error) {
	return a.cache.dataset(ctx, id)
}

// Reload drops stale (if it is still the cached entry: a fresher one another request loaded
// is kept) and returns the dataset as loaded now. For a read that failed on stale's file: it may
// have been replaced or deleted by a replica whose notification has not arrived yet.
func (a *Access) Reload(ctx context.Context, id uuid.UUID, stale *DatasetEntry) (*DatasetEntry, error) {
	a.cache.evictDatasetEntry(id, stale)
	return a.cache.dataset(ctx, id)
}

// Key returns the API key whose token this is; Found is false when there is none. For callers
// that need the key before any dataset is decided (minting tile tokens with a key: an unknown key
// is refused even for public datasets). The error means it could not be loaded (503).
func (a *Access) Key(ctx context.Context, token string) (*KeyEntry, error) {
	return a.cache.key(ctx, token)
}

// NamedKey is the id of the existing API key a request named (uuid.Nil: none, or no such key),
// for counting its refusals. Decide has just looked the key up: it peeks at the cache without
// counting a lookup.
func (a *Access) NamedKey(d *DatasetEntry, creds *Credentials) uuid.UUID {
	if d.Public || creds.Token() || !creds.HasKey || creds.Key == "" {
		return uuid.Nil
	}
	k, ok := a.cache.keys.Peek(creds.Key)
	if !ok || !k.Found {
		return uuid.Nil
	}
	return k.ID
}

// Apply evicts what a committed change affects (this process's store events; other replicas'
// arrive through the listener).
func (a *Access) Apply(ch store.Change) { a.cache.apply(ch) }

// Listening reports whether the PostgreSQL invalidation listener is connected (always false
// on SQLite, which needs none, and before anything was cached).
func (a *Access) Listening() bool { return a.listener.connected.Load() }

// CacheEntries is how many keys and datasets the caches hold (negative entries included).
func (a *Access) CacheEntries() (keys, datasets int) {
	c := a.cache
	return c.keys.Len() + c.missingKeys.Len(), c.datasets.Len() + c.missingDatasets.Len()
}

// Reconnects is how many times the listener connected again after its first connection.
func (a *Access) Reconnects() uint64 {
	if n := a.listener.connects.Load(); n > 1 {
		return n - 1
	}
	return 0
}

// Close stops the listener and the last-used flusher and writes the pending last-used times.
// It may be called more than once.
func (a *Access) Close(ctx context.Context) error {
	a.listener.close()
	return a.lastUsed.close(ctx)
}
