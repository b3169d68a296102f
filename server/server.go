// Package server implements tilegate's HTTP API: the handlers of the generated strict-server
// interface, and the middleware that routes, authenticates and validates every request against
// the embedded openapi.yaml before a handler runs.
package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/tilegate/tilegate/blobstore"
	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/tileaccess"
	"github.com/tilegate/tilegate/internal/usage"
	"github.com/tilegate/tilegate/mbtiles"
	"github.com/tilegate/tilegate/metrics"
	"github.com/tilegate/tilegate/sealed"
	"github.com/tilegate/tilegate/store"
	"github.com/tilegate/tilegate/tilehttp"
	"github.com/tilegate/tilegate/tilesource"
	"github.com/tilegate/tilegate/tilestore"
	"github.com/tilegate/tilegate/tiletoken"
	"github.com/tilegate/tilegate/upstream"
)

// Config is what the server needs beyond the store.
type Config struct {
	// PublicURL is the absolute base of the URLs tilegate hands out (tile templates).
	PublicURL string
	// BodyLimit caps JSON request bodies (413 beyond).
	BodyLimit int64
	// AuthCacheTTL is how long a resolved service token is trusted before it is looked up again:
	// the longest a revoked token keeps working.
	AuthCacheTTL time.Duration
	// Signer mints and verifies tile tokens; nil loads SigningKeys("") from the store.
	Signer *tiletoken.Signer
	// DataDir holds the datasets' MBTiles files; with a Bucket, it is this replica's own:
	// uploads being received and checked, and the cache of the bucket's files.
	DataDir string
	// Bucket, when set, is where the datasets' tile files live, shared by the replicas
	// (TILEGATE_STORAGE_URL s3://…; see tilestore).
	Bucket blobstore.Store
	// StorageCacheBytes bounds this replica's cache of the bucket's files (default 10 GiB).
	StorageCacheBytes int64
	// StorageFetchWait is the longest a tile waits for its file to come from the bucket
	// (default 10s); past it, 503 with Retry-After while the fetch goes on.
	StorageFetchWait time.Duration
	// MaxUpload caps an MBTiles upload (413 beyond).
	MaxUpload int64
	// MaxConcurrentUploads caps the uploads this process receives and checks at once (default
	// DefaultMaxConcurrentUploads); one more is answered 503 with Retry-After.
	MaxConcurrentUploads int
	// TileCacheTTL is how long the tile path trusts a cached API key or dataset without hearing
	// of a change: the fallback bound on staleness while PostgreSQL notifications cannot arrive.
	TileCacheTTL time.Duration
	// LastUsedInterval is how often the keys' last_used times are written.
	LastUsedInterval time.Duration
	// PublicTileMaxAge and PrivateTileMaxAge are the Cache-Control max-age of public datasets'
	// tiles and of the others'.
	PublicTileMaxAge, PrivateTileMaxAge time.Duration
	// ReplacedTilesGrace is how long a replaced MBTiles file stays on disk for reads in flight,
	// here and on replicas that have not heard of the upload yet (default 30s; negative: none).
	ReplacedTilesGrace time.Duration
	// MaxTileBytes is the largest tile an upload may hold and a read returns (default
	// mbtiles.DefaultMaxTileBytes).
	MaxTileBytes int64
	// HotTileBytes bounds the memory of recently served tiles kept for reuse (tile bytes plus
	// ~150 bytes each; see tilesource.Hot): default DefaultHotTileBytes, negative
	// turns the cache off.
	HotTileBytes int64
	// FileSweepInterval is how often the data directory is swept of abandoned uploads and
	// unreferenced tile files (default 5m; see tileFiles).
	FileSweepInterval time.Duration
	// DBTimeout is the deadline of a request's database work (default 3s): past it the
	// request answers 503, so an unreachable database is a quick 503, never a hang. Uploads
	// are exempt (their body streams for minutes).
	DBTimeout time.Duration
	// TileLoadWait is the longest a tile request waits for its key or dataset to be loaded
	// (default 1s); the load itself goes on (once, shared) for up to DBTimeout.
	TileLoadWait time.Duration
	// TileMaxLoads bounds the tile path's key and dataset loads under way at once (default 4):
	// each holds a database connection, and made-up keys or ids must not take the connections
	// management calls need. Beyond it a tile that needs a load is 503 with Retry-After.
	TileMaxLoads int
	// StaleIfError is how long past TileCacheTTL a cached key or dataset keeps serving when it
	// cannot be refreshed because the database is unavailable (default 10m; negative: not at all).
	StaleIfError time.Duration
	// OutageLogEvery is how often a continuing database outage logs its count of failures
	// (default 10s).
	OutageLogEvery time.Duration
	// RefusalLogEvery is the least time between two "tile refused" lines of one reason (default
	// 1s); the refusals in between are counted in the next line's "suppressed".
	RefusalLogEvery time.Duration
	// UsageFlushInterval is how often tile usage counts are written (default 10s): what a crash
	// loses at most. UsageRetention is how long usage is kept (default 400 days),
	// UsageRetentionEvery how often older usage is deleted (default 1h, one replica at a time).
	UsageFlushInterval, UsageRetention, UsageRetentionEvery time.Duration
	// ReplicaHeartbeat is how often this replica tells the others it is alive (default 2s): each
	// of N live replicas admits 1/N of a key's rate limit.
	ReplicaHeartbeat time.Duration
	// Now is the clock of usage hours, quota months and rate limits, and of keys' expiry and
	// rotation grace (default time.Now).
	Now func() time.Time
	// UsageOff counts no usage and enforces no rate limits or quotas (benchmark baselines).
	UsageOff bool
	// Metrics receives the server's Prometheus series (one Metrics per server); nil: a private
	// one nobody scrapes.
	Metrics *metrics.Metrics

	// AnonymousMintRate is how many tile token calls without a credential one client address
	// may make per second on this replica (default 5; negative: unlimited), AnonymousMintBurst how
	// many at once (default 50). The address follows TrustedProxies.
	AnonymousMintRate  float64
	AnonymousMintBurst int

	// TrustedProxies are the peers whose X-Forwarded-For tells the client address that keys'
	// ip_ranges are checked against (TILEGATE_TRUSTED_PROXIES); none by default.
	TrustedProxies []netip.Prefix
	// SecretKeys seal what datasets store of their upstreams' credentials (package sealed); the
	// first seals, all open. nil: derived from the signing keys stored in the database.
	SecretKeys []sealed.Key
	// Upstream bounds the fetches from upstream tile servers; its Guard decides which addresses
	// they may reach (nil: the defaults, which refuse loopback and link-local addresses).
	Upstream upstream.Config
	// AuditRetention is how long audit events are kept (default 400 days); AuditPruneInterval
	// how often older ones are deleted (default 1h).
	AuditRetention, AuditPruneInterval time.Duration

	Logger *slog.Logger
}

// DefaultMaxConcurrentUploads is Config.MaxConcurrentUploads's default. An upload's checks
// keep a core busy (about 1.3 s per GB) and its metadata takes up to
// mbtiles.DefaultMaxMetadataBytes of memory.
const DefaultMaxConcurrentUploads = 4

// DefaultStorageCacheBytes is Config.StorageCacheBytes's default: 10 GiB of the bucket's
// files on each replica's disk.
const DefaultStorageCacheBytes = 10 << 30

// DefaultHotTileBytes is Config.HotTileBytes's default: 64 MiB holds ~250,000 small vector
// tiles or ~1,300 50 KB ones. Side by side with mbtileserver (make bench-peers, 32 MB of tiles
// cached) tilegate's peak RSS was 112–189 MiB with it, 50 MiB without: the Go heap grows to
// about twice what is live.
const DefaultHotTileBytes = 64 << 20

// Server holds the handlers' dependencies.
type Server struct {
	store       *store.Store
	auditPruner *auditPruner
	cfg         Config
	log         *slog.Logger
	spec        *openapi3.T
	router      routers.Router
	tileOp      *routers.Route // getTile, resolved once (findRoute)
	// tileQuery checks getTile's query parameters (contract), nil for the generic validation.
	tileQuery queryRules
	// tileCheck accepts valid tile requests without kin-openapi (tilecheck.go); nil: never.
	tileCheck *tileCheck
	creds     *credentials
	specJSON  map[string]any // /openapi.json
	tileBase  string         // PublicURL, JSON-escaped, for token templates
	signer    *tiletoken.Signer
	tiles     *mbtiles.Pool     // the MBTiles files open
	hot       *tilesource.Hot   // the hot-tile cache, in front of every file-backed source
	box       *sealed.Box       // opens and seals upstream headers
	upstream  *upstream.Fetcher // upstream datasets' tiles

	// The tile path: cached keys and datasets, their invalidation, access decisions, key use.
	access   *tileaccess.Access
	meter    *usage.Meter // tile usage counts, rate limits and quotas
	anonMint *anonLimiter // token calls without a credential, per client address
	// tilestore is the datasets' tile files: uploads, publishing, retiring, sweeps.
	tilestore *tilestore.Store
	// tileHTTP answers tile requests and forward-auth decisions (package tilehttp).
	tileHTTP *tilehttp.Handler
	// unsubscribe stops the store's change events, which evict tile cache entries at once here
	// (other replicas hear of them through the listener).
	unsubscribe func()
	closeOnce   sync.Once

	// outages aggregates the 503s' log lines (per error class), cacheOutage the tile cache's
	// refresh failures: one line per outage and a count every OutageLogEvery, not one a request.
	outages, cacheOutage *outageLog
	readiness            readiness // why /readyz fails, logged when that changes
	// uploadWriter, when set (tests), wraps the file an upload's body is written to: a full
	// disk is injected there.
	uploadWriter func(*os.File) io.Writer
	// uploads holds a token per upload in progress (Config.MaxConcurrentUploads).
	uploads chan struct{}
	// metrics are the series requests update, resolved once.
	metrics *requestMetrics
	// ids number the requests (X-Request-Id); refusals logs refused tiles, rate-limited.
	ids      *requestIDs
	refusals *refusalLog
}

var _ gen.StrictServerInterface = (*Server)(nil)

// New builds a server on an open, migrated store.
func New(st *store.Store, cfg Config) (*Server, error) {
	if cfg.BodyLimit == 0 {
		cfg.BodyLimit = 1 << 20
	}
	if cfg.AuthCacheTTL == 0 {
		cfg.AuthCacheTTL = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.AuditRetention == 0 {
		cfg.AuditRetention = store.DefaultAuditRetention
	}
	if cfg.AuditPruneInterval == 0 {
		cfg.AuditPruneInterval = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DataDir == "" {
		cfg.DataDir = "data"
	}
	if cfg.MaxUpload == 0 {
		cfg.MaxUpload = 2 << 30
	}
	if cfg.StorageCacheBytes <= 0 {
		cfg.StorageCacheBytes = DefaultStorageCacheBytes
	}
	if cfg.StorageFetchWait <= 0 {
		cfg.StorageFetchWait = 10 * time.Second
	}
	if cfg.TileCacheTTL == 0 {
		cfg.TileCacheTTL = time.Minute
	}
	if cfg.LastUsedInterval == 0 {
		cfg.LastUsedInterval = 30 * time.Second
	}
	if cfg.PublicTileMaxAge == 0 {
		cfg.PublicTileMaxAge = time.Hour
	}
	if cfg.PrivateTileMaxAge == 0 {
		cfg.PrivateTileMaxAge = 10 * time.Minute
	}
	if cfg.ReplacedTilesGrace == 0 {
		cfg.ReplacedTilesGrace = 30 * time.Second
	}
	if cfg.MaxTileBytes <= 0 {
		cfg.MaxTileBytes = mbtiles.DefaultMaxTileBytes
	}
	switch {
	case cfg.HotTileBytes == 0:
		cfg.HotTileBytes = DefaultHotTileBytes
	case cfg.HotTileBytes < 0:
		cfg.HotTileBytes = 0
	}
	if cfg.MaxConcurrentUploads <= 0 {
		cfg.MaxConcurrentUploads = DefaultMaxConcurrentUploads
	}
	if cfg.FileSweepInterval <= 0 {
		cfg.FileSweepInterval = 5 * time.Minute
	}
	if cfg.DBTimeout <= 0 {
		cfg.DBTimeout = 3 * time.Second
	}
	if cfg.TileLoadWait <= 0 {
		cfg.TileLoadWait = time.Second
	}
	switch {
	case cfg.StaleIfError == 0:
		cfg.StaleIfError = 10 * time.Minute
	case cfg.StaleIfError < 0:
		cfg.StaleIfError = 0
	}
	if cfg.AnonymousMintRate == 0 {
		cfg.AnonymousMintRate = DefaultAnonymousMintRate
	}
	if cfg.AnonymousMintBurst <= 0 {
		cfg.AnonymousMintBurst = DefaultAnonymousMintBurst
	}
	if cfg.RefusalLogEvery <= 0 {
		cfg.RefusalLogEvery = time.Second
	}
	if cfg.OutageLogEvery <= 0 {
		cfg.OutageLogEvery = 10 * time.Second
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	if cfg.Signer == nil {
		keys, err := SigningKeys(context.Background(), st, "")
		if err != nil {
			return nil, err
		}
		if cfg.Signer, err = tiletoken.New(keys); err != nil {
			return nil, err
		}
	}
	if cfg.SecretKeys == nil {
		keys, err := SigningKeys(context.Background(), st, "")
		if err != nil {
			return nil, err
		}
		cfg.SecretKeys = SecretKeys(keys)
	}
	box, err := sealed.New(cfg.SecretKeys)
	if err != nil {
		return nil, err
	}
	if cfg.Upstream.Guard == nil {
		cfg.Upstream.Guard = upstream.NewGuard(nil, nil)
	}
	if cfg.Upstream.MaxTileBytes == 0 {
		cfg.Upstream.MaxTileBytes = cfg.MaxTileBytes
	}
	spec, err := LoadSpec()
	if err != nil {
		return nil, err
	}
	router, err := gorillamux.NewRouter(spec)
	if err != nil {
		return nil, fmt.Errorf("build router: %w", err)
	}
	tileOp, err := tileOperation(router)
	if err != nil {
		return nil, err
	}
	specJSON, err := specDocument(spec)
	if err != nil {
		return nil, err
	}
	s := &Server{
		store:     st,
		cfg:       cfg,
		log:       cfg.Logger,
		spec:      spec,
		router:    router,
		tileOp:    tileOp,
		tileQuery: compileQueryRules(tileOp.Operation),
		tileCheck: compileTileCheck(tileOp),
		creds:     newCredentials(st, cfg.AuthCacheTTL),
		specJSON:  specJSON,
		tileBase:  jsonEscaped(cfg.PublicURL),
		signer:    cfg.Signer,
		tiles:     mbtiles.NewPool(64),
		hot:       tilesource.NewHot(0),
		box:       box,
		upstream:  upstream.New(cfg.Upstream),
		metrics:   newRequestMetrics(cfg.Metrics, spec),
		uploads:   make(chan struct{}, cfg.MaxConcurrentUploads),
		ids:       newRequestIDs(),
		refusals:  newRefusalLog(cfg.Logger, cfg.RefusalLogEvery),
	}
	s.anonMint = newAnonLimiter(cfg.AnonymousMintRate, cfg.AnonymousMintBurst)
	s.readiness.log = cfg.Logger
	s.outages = newOutageLog(cfg.Logger, cfg.OutageLogEvery, st.Ping, outageMessages{
		first: "database unavailable", still: "database still unavailable", recovered: "database available again",
	})
	s.cacheOutage = newOutageLog(cfg.Logger, cfg.OutageLogEvery, st.Ping, outageMessages{
		first:     "tile cache: serving stale entries, the database is unavailable",
		still:     "tile cache: still cannot refresh entries",
		recovered: "tile cache: database available again",
	})
	s.access = tileaccess.New(tileaccess.Config{
		Store: st, Signer: cfg.Signer, Sources: tileSources{s},
		TTL: cfg.TileCacheTTL, StaleIfError: cfg.StaleIfError,
		LoadWait: cfg.TileLoadWait, DBTimeout: cfg.DBTimeout, MaxLoads: cfg.TileMaxLoads,
		PublicTileMaxAge: cfg.PublicTileMaxAge, PrivateTileMaxAge: cfg.PrivateTileMaxAge,
		LastUsedInterval: cfg.LastUsedInterval, Logger: cfg.Logger,
		RefreshFailed: s.cacheOutage.failure,
		Observe:       s.metrics.cacheLookup, Evicted: s.metrics.cacheEvicted,
		TrustedProxies: cfg.TrustedProxies,
	})
	s.meter = usage.New(usage.Config{
		Store: st, FlushInterval: cfg.UsageFlushInterval, Retention: cfg.UsageRetention,
		RetentionEvery: cfg.UsageRetentionEvery, Heartbeat: cfg.ReplicaHeartbeat, Now: cfg.Now, SyncWait: cfg.TileLoadWait,
		Logger: cfg.Logger, Flushed: func(at time.Time, rows int) { cfg.Metrics.UsageFlushed(rows, at) },
		FlushFailed: cfg.Metrics.UsageFlushFailed, Off: cfg.UsageOff,
	})
	s.tilestore, err = tilestore.New(tilestore.Config{
		Dir: cfg.DataDir, Pool: s.tiles, MaxTileBytes: cfg.MaxTileBytes,
		Grace: cfg.ReplacedTilesGrace, SweepInterval: cfg.FileSweepInterval,
		Referenced: st.TileFiles, Logger: cfg.Logger,
		Bucket: cfg.Bucket, CacheBytes: cfg.StorageCacheBytes, FetchWait: cfg.StorageFetchWait,
		CommitTimeout: cfg.DBTimeout, MaxUpload: cfg.MaxUpload,
	})
	if err != nil {
		_ = s.access.Close(context.Background())
		return nil, err
	}
	s.tileHTTP = &tilehttp.Handler{Access: s.access, Meter: s.meter, Log: cfg.Logger, Now: s.now,
		UpstreamRetryAfter: s.upstream.RetryAfter}
	if err := s.registerMetrics(); err != nil {
		_ = s.access.Close(context.Background())
		return nil, err
	}
	s.unsubscribe = st.Subscribe(s.access.Apply)
	s.tiles.SetMaxTileBytes(cfg.MaxTileBytes)
	s.hot.SetBytes(cfg.HotTileBytes)
	s.tilestore.Start()
	s.auditPruner = startAuditPruner(st, cfg.AuditRetention, cfg.AuditPruneInterval, cfg.Now, cfg.Logger)
	return s, nil
}

// Handler returns the complete HTTP handler: operational routes, Swagger UI and the API.
func (s *Server) Handler() http.Handler {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	// The tile dispatch runs the same middleware, in the same order (tileChain).
	pre := []echo.MiddlewareFunc{securityHeaders, s.requestID, closeOnUnreadBody, s.tileHTTP.Headers, s.tokenHeaders, headAsGet}
	use := []echo.MiddlewareFunc{restoreHead, middleware.Recover(), s.requestLog, s.dbDeadline}
	e.Pre(pre...)
	e.Use(use...)

	docs := docsHandler()
	e.GET(docsPath, docs)
	e.GET(docsPath+"/*", docs)

	api := e.Group("", s.contract) // tileChain applies s.contract too
	gen.RegisterHandlers(api, gen.NewStrictHandler(s, []gen.StrictMiddlewareFunc{s.strictHooks}))
	// getTile is not generated (echo cannot route {y}.{format}); it still goes through the contract.
	api.GET(tileRoute, s.tileHTTP.ServeTile)
	api.HEAD(tileRoute, s.tileHTTP.ServeTile)
	api.GET(tilehttp.AuthRoute, s.tileHTTP.Authorize)
	return geolensAlias{&tileDispatch{e: e, tiles: tileChain(s.contract(s.tileHTTP.ServeTile), pre, use)}}
}

// uploadRoute streams a file for minutes: its database work is not under DBTimeout.
const uploadRoute = "/api/datasets/:dataset_id/tiles/"

// dbDeadline gives every request a deadline for its database work, so an unreachable or
// silent database answers 503 within DBTimeout instead of holding the request. Tiles are
// bounded by the tile cache instead (TileLoadWait), without a timer per tile.
func (s *Server) dbDeadline(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		switch c.Path() {
		case tileRoute, uploadRoute:
			return next(c)
		}
		r := c.Request()
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.DBTimeout)
		defer cancel()
		c.SetRequest(r.WithContext(ctx))
		return next(c)
	}
}
