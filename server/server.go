// Package server implements tilegate's HTTP API: the handlers of the generated strict-server
// interface, and the middleware that routes, authenticates and validates every request against
// the embedded openapi.yaml before a handler runs.
package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/swaggest/swgui/v5emb"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/mbtiles"
	"github.com/tilegate/tilegate/store"
	"github.com/tilegate/tilegate/tiletoken"
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
	// DataDir holds the datasets' MBTiles files.
	DataDir string
	// MaxUpload caps an MBTiles upload (413 beyond).
	MaxUpload int64
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
	// FileSweepInterval is how often the data directory is swept of abandoned uploads and
	// unreferenced tile files (default 5m; see tileFiles).
	FileSweepInterval time.Duration

	Logger *slog.Logger
}

// Server holds the handlers' dependencies.
type Server struct {
	store  *store.Store
	cfg    Config
	log    *slog.Logger
	spec   *openapi3.T
	router routers.Router
	tileOp *routers.Route // getTile, resolved once (findRoute)
	// tileQuery checks getTile's query parameters (contract), nil for the generic validation.
	tileQuery queryRules
	creds     *credentials
	specJSON  map[string]any // /openapi.json
	tileBase  string         // PublicURL, JSON-escaped, for token templates
	signer    *tiletoken.Signer
	tiles     *mbtiles.Pool

	// The tile path: cached keys and datasets, their invalidation, and key use.
	cache    *tileCache
	listener *listener
	lastUsed *lastUsed
	retired  *retiredFiles
	files    *tileFiles // sweeps of the data directory, unservable files logged
	// unsubscribe stops the store's change events, which evict tile cache entries at once here
	// (other replicas hear of them through the listener).
	unsubscribe func()
	closeOnce   sync.Once
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
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DataDir == "" {
		cfg.DataDir = "data"
	}
	if cfg.MaxUpload == 0 {
		cfg.MaxUpload = 2 << 30
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
	if cfg.FileSweepInterval <= 0 {
		cfg.FileSweepInterval = 5 * time.Minute
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
		creds:     newCredentials(st, cfg.AuthCacheTTL),
		specJSON:  specJSON,
		tileBase:  jsonEscaped(cfg.PublicURL),
		signer:    cfg.Signer,
		tiles:     mbtiles.NewPool(64),
		lastUsed:  newLastUsed(st, cfg.Logger, cfg.LastUsedInterval),
	}
	s.retired = newRetiredFiles(s.tiles, cfg.Logger, cfg.ReplacedTilesGrace)
	s.cache = newTileCache(st, cfg, s.tiles)
	s.listener = newListener(st.DSN(), s.cache, cfg.Logger)
	s.unsubscribe = st.Subscribe(s.cache.apply)
	if st.Dialect() == store.Postgres {
		s.cache.started = s.listener.start
	}
	s.tiles.SetMaxTileBytes(cfg.MaxTileBytes)
	s.files = newTileFiles(s, cfg.FileSweepInterval, cfg.ReplacedTilesGrace)
	s.files.start()
	return s, nil
}

// Handler returns the complete HTTP handler: operational routes, Swagger UI and the API.
func (s *Server) Handler() http.Handler {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.Pre(s.tileHeaders, headAsGet)
	e.Use(restoreHead, middleware.Recover(), s.requestLog)

	docs := v5emb.New("tilegate API", "/openapi.json", "/docs")
	e.GET("/docs", echo.WrapHandler(docs))
	e.GET("/docs/*", echo.WrapHandler(docs))

	api := e.Group("", s.contract)
	gen.RegisterHandlers(api, gen.NewStrictHandler(s, []gen.StrictMiddlewareFunc{s.strictHooks}))
	// getTile is not generated (echo cannot route {y}.{format}); it still goes through the contract.
	api.GET(tileRoute, s.getTile)
	api.HEAD(tileRoute, s.getTile)
	return e
}
