// Command tilegate serves tiles behind API keys and tile tokens, and bootstraps accounts.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/google/uuid"
	"golang.org/x/term"

	"github.com/tilegate/tilegate/metrics"
	"github.com/tilegate/tilegate/server"
	"github.com/tilegate/tilegate/store"
	"github.com/tilegate/tilegate/tiletoken"
	"github.com/tilegate/tilegate/upstream"
)

type dbFlags struct {
	DatabaseURL string `name:"database-url" env:"DATABASE_URL" help:"postgres://… for PostgreSQL; sqlite:PATH or a path for SQLite (default ${default_sqlite})."`
}

// open opens and migrates the database. create is for serve and migrate only: other commands
// refuse a SQLite file that does not exist rather than leave a new, empty one behind in
// whatever directory they ran from. Every command logs the absolute location it uses, so a
// second database is noticed at once.
func (f dbFlags) open(ctx context.Context, create bool) (*store.Store, error) {
	loc, err := store.Location(f.DatabaseURL)
	if err != nil {
		return nil, err
	}
	slog.Info("database", "location", loc)
	st, err := store.Open(ctx, f.DatabaseURL, store.Options{MustExist: !create})
	if err != nil {
		return nil, err
	}
	if err := st.Migrate(ctx); err != nil {
		_ = st.Close()
		return nil, err
	}
	return st, nil
}

type cli struct {
	LogLevel  slog.Level `name:"log-level" env:"TILEGATE_LOG_LEVEL" default:"info" help:"debug, info, warn or error; served tiles are logged at debug."`
	LogFormat string     `name:"log-format" env:"TILEGATE_LOG_FORMAT" enum:"auto,json,text" default:"auto" help:"auto: text lines when stderr is a terminal, JSON lines otherwise (the journal, containers, pipes); json; text."`

	Serve    serveCmd    `cmd:"" help:"Serve the API and tiles."`
	Migrate  migrateCmd  `cmd:"" help:"Apply pending database migrations and exit."`
	Admin    adminCmd    `cmd:"" help:"Bootstrap accounts and service tokens."`
	Datasets datasetsCmd `cmd:"" help:"Datasets, through a running server's API (TILEGATE_URL, TILEGATE_TOKEN)."`

	Version     versionCmd     `cmd:"" help:"Print the version, VCS revision and Go version this binary was built from."`
	Healthcheck healthcheckCmd `cmd:"" help:"Exit 0 when a running server's /readyz answers 200 (for container health checks: no curl needed)."`
}

type serveCmd struct {
	dbFlags
	Addr                string        `env:"TILEGATE_ADDR" default:"127.0.0.1:8080" help:"Listen address."`
	PublicURL           string        `name:"public-url" env:"TILEGATE_PUBLIC_URL" help:"Absolute base URL of tile links, as clients reach tilegate (https://tiles.example.com). Default http:// + the listen address; required when that is all interfaces (:8080, 0.0.0.0:8080, [::]:8080)."`
	AuthCacheTTL        time.Duration `name:"auth-cache-ttl" env:"TILEGATE_AUTH_CACHE_TTL" default:"10s" help:"How long a resolved service token is trusted; the longest a revoked token keeps working."`
	TrustedProxies      []string      `name:"trusted-proxies" env:"TILEGATE_TRUSTED_PROXIES" sep:"," help:"CIDRs of proxies whose X-Forwarded-For gives the client address for keys' ip_ranges (default none: the peer address)."`
	AuditRetention      time.Duration `name:"audit-retention" env:"TILEGATE_AUDIT_RETENTION" default:"9600h" help:"How long audit events are kept (default 400 days)."`
	ShutdownTimeout     time.Duration `name:"shutdown-timeout" env:"TILEGATE_SHUTDOWN_TIMEOUT" default:"20s" help:"How long in-flight requests may take to finish on SIGTERM; what remains is then cut (logged at WARN) and tilegate exits 0."`
	ReadTimeout         time.Duration `name:"read-timeout" env:"TILEGATE_READ_TIMEOUT" default:"30s" help:"How long a request's headers and body may take to arrive; an authenticated upload gets an hour."`
	SigningKeys         string        `name:"signing-keys" env:"TILEGATE_SIGNING_KEYS" help:"Tile token keys, id:hex,id:hex (the first signs, all verify), each at least 32 random bytes (e.g. openssl rand -hex 32): one byte value, a repeated pattern, a counting sequence, printable text or under 4 bits of estimated entropy per byte is refused. Unset: a generated key stored in the database."`
	TokenWindow         time.Duration `name:"token-window" env:"TILEGATE_TOKEN_WINDOW" default:"900s" help:"Tile tokens' alignment window (10s to 24h): exp is the next multiple of it, or the one after when less than window/15 remains."`
	StorageURL          string        `name:"storage-url" env:"TILEGATE_STORAGE_URL" help:"Where the datasets' tile files live: a directory (the default: TILEGATE_DATA_DIR) or an S3-compatible bucket, s3://BUCKET/PREFIX?endpoint=http://HOST:PORT&region=REGION&use_path_style=true, with credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or the AWS shared files, or the instance's role)."`
	DataDir             string        `name:"data-dir" env:"TILEGATE_DATA_DIR" default:"data" help:"Directory of the datasets' MBTiles files (shared by all replicas); with a bucket (TILEGATE_STORAGE_URL), this replica's own: uploads being checked and the cache of the bucket's files."`
	StorageCacheBytes   int64         `name:"storage-cache-bytes" env:"TILEGATE_STORAGE_CACHE_BYTES" default:"10737418240" help:"With a bucket: the most disk this replica's copies of the bucket's files take, in bytes; least recently used copies not being read are removed beyond."`
	StorageFetchWait    time.Duration `name:"storage-fetch-wait" env:"TILEGATE_STORAGE_FETCH_WAIT" default:"10s" help:"With a bucket: the longest a tile waits for its dataset's file to be fetched; past it, 503 with Retry-After while the fetch goes on."`
	MaxUpload           int64         `name:"max-upload" env:"TILEGATE_MAX_UPLOAD" default:"2147483648" help:"Largest MBTiles upload, in bytes."`
	MaxUploads          int           `name:"max-concurrent-uploads" env:"TILEGATE_MAX_CONCURRENT_UPLOADS" default:"4" help:"Uploads this process receives and checks at once; one more is answered 503 with Retry-After."`
	TileCacheTTL        time.Duration `name:"tile-cache-ttl" env:"TILEGATE_TILE_CACHE_TTL" default:"60s" help:"How long the tile path trusts a cached API key or dataset when no change notification arrives (PostgreSQL LISTEN/NOTIFY invalidates at once; this bounds staleness while it is reconnecting)."`
	LastUsedInterval    time.Duration `name:"last-used-interval" env:"TILEGATE_LAST_USED_INTERVAL" default:"30s" help:"How often API keys' last_used times are written."`
	TileMaxAge          time.Duration `name:"tile-max-age" env:"TILEGATE_TILE_MAX_AGE" default:"1h" help:"Cache-Control max-age of public datasets' tiles."`
	PrivateTileMaxAge   time.Duration `name:"private-tile-max-age" env:"TILEGATE_PRIVATE_TILE_MAX_AGE" default:"10m" help:"Cache-Control max-age (private) of other datasets' tiles."`
	ReplacedTilesGrace  time.Duration `name:"replaced-tiles-grace" env:"TILEGATE_REPLACED_TILES_GRACE" default:"30s" help:"How long a replaced MBTiles file stays on disk for reads in flight (here and on replicas)."`
	MaxTileBytes        int64         `name:"max-tile-bytes" env:"TILEGATE_MAX_TILE_BYTES" default:"4194304" help:"Largest tile an uploaded MBTiles file may hold (422 beyond) and a read returns."`
	HotTileCacheBytes   int64         `name:"hot-tile-cache-bytes" env:"TILEGATE_HOT_TILE_CACHE_BYTES" default:"67108864" help:"Memory for recently served tiles kept for reuse, in bytes (tile bytes plus ~150 per tile); 0 turns it off."`
	FileSweepInterval   time.Duration `name:"file-sweep-interval" env:"TILEGATE_FILE_SWEEP_INTERVAL" default:"5m" help:"How often the data directory is swept of abandoned uploads and tile files no dataset references."`
	DBTimeout           time.Duration `name:"db-timeout" env:"TILEGATE_DB_TIMEOUT" default:"3s" help:"Deadline of a request's database work; past it the request answers 503 (uploads exempt)."`
	TileLoadWait        time.Duration `name:"tile-load-wait" env:"TILEGATE_TILE_LOAD_WAIT" default:"1s" help:"Longest a tile request waits for its API key or dataset to be loaded from the database."`
	TileMaxLoads        int           `name:"tile-max-loads" env:"TILEGATE_TILE_MAX_LOADS" default:"4" help:"Most API key and dataset loads the tile path runs at once (each holds a database connection); beyond it a tile that needs one is answered 503."`
	AdminAddr           string        `name:"admin-addr" env:"TILEGATE_ADMIN_ADDR" default:"127.0.0.1:9464" help:"Listen address of /metrics (Prometheus) and /debug/pprof/; empty disables. Keep it off the public network."`
	StaleIfError        time.Duration `name:"stale-if-error" env:"TILEGATE_STALE_IF_ERROR" default:"10m" help:"How long past the tile cache TTL a cached API key or dataset keeps serving while the database is unavailable (0: not at all)."`
	UsageFlushInterval  time.Duration `name:"usage-flush-interval" env:"TILEGATE_USAGE_FLUSH_INTERVAL" default:"10s" help:"How often tile usage counts are written to the database (one statement); a crash loses at most this much usage."`
	UsageRetention      time.Duration `name:"usage-retention" env:"TILEGATE_USAGE_RETENTION" default:"9600h" help:"How long hourly usage rows are kept (default 400 days); older ones are deleted hourly by one replica at a time."`
	UsageOff            bool          `name:"usage-off" env:"TILEGATE_USAGE_OFF" help:"Count no usage and enforce no rate limits or monthly quotas (a baseline for benchmarks; not for production)."`
	UpstreamAllow       []string      `name:"upstream-allow" env:"TILEGATE_UPSTREAM_ALLOW" sep:"," help:"CIDRs upstream tile servers may be at besides the default (which refuses loopback, link-local and tilegate's own listeners), e.g. 127.0.0.1/32 for a tile server on this host."`
	UpstreamTimeout     time.Duration `name:"upstream-timeout" env:"TILEGATE_UPSTREAM_TIMEOUT" default:"5s" help:"Deadline of a request to an upstream tile server (504 beyond)."`
	UpstreamMaxInFlight int           `name:"upstream-max-in-flight" env:"TILEGATE_UPSTREAM_MAX_IN_FLIGHT" default:"64" help:"Requests in flight per upstream host; beyond, tiles answer 429 with Retry-After."`
	UpstreamCacheBytes  int64         `name:"upstream-cache-bytes" env:"TILEGATE_UPSTREAM_CACHE_BYTES" default:"67108864" help:"Memory for upstream tiles kept for reuse (their Cache-Control and ETag honoured); 0 turns it off."`
	ReplicaHeartbeat    time.Duration `name:"replica-heartbeat" env:"TILEGATE_REPLICA_HEARTBEAT" default:"2s" help:"How often a replica announces itself in PostgreSQL; each of N live replicas (seen within 3 heartbeats) admits 1/N of a key's rate limit."`
	AnonMintRate        float64       `name:"anonymous-mint-rate" env:"TILEGATE_ANONYMOUS_MINT_RATE" default:"5" help:"Tile token calls without a credential (public datasets) one client address may make per second on each replica; negative: unlimited."`
	AnonMintBurst       int           `name:"anonymous-mint-burst" env:"TILEGATE_ANONYMOUS_MINT_BURST" default:"50" help:"How many such calls one address may make at once."`
}

func (c *serveCmd) Run() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// Configuration first: a refusal leaves nothing behind (no database file, no listener).
	if _, _, err := store.ParseURL(c.DatabaseURL); err != nil {
		return err
	}
	public, err := publicURL(c.PublicURL, c.Addr)
	if err != nil {
		return err
	}
	if c.SigningKeys != "" { // a weak or malformed key, before anything is opened (again below, with the store's)
		if _, err := tiletoken.ParseKeys(c.SigningKeys); err != nil {
			return fmt.Errorf("TILEGATE_SIGNING_KEYS: %w", err)
		}
	}
	dataDir, bucket, err := openStorage(ctx, c.StorageURL, c.DataDir)
	if err != nil {
		return err
	}
	st, err := c.open(ctx, true)
	if err != nil {
		return err
	}
	defer st.Close()
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.Addr, err)
	}
	if public == "" {
		public = "http://" + ln.Addr().String()
	}
	keys, err := server.SigningKeys(ctx, st, c.SigningKeys)
	if err != nil {
		return err
	}
	signer, err := tiletoken.New(keys, tiletoken.WithWindow(c.TokenWindow))
	if err != nil {
		return fmt.Errorf("TILEGATE_TOKEN_WINDOW: %w", err)
	}
	proxies, err := trustedProxies(c.TrustedProxies)
	if err != nil {
		return err
	}
	guard, err := upstreamGuard(c.UpstreamAllow, ln.Addr().String(), c.AdminAddr)
	if err != nil {
		return err
	}
	m := metrics.New()
	srv, err := server.New(st, server.Config{
		SecretKeys: server.SecretKeys(keys),
		Upstream: upstream.Config{Guard: guard, Timeout: c.UpstreamTimeout, MaxInFlight: c.UpstreamMaxInFlight,
			CacheBytes: c.UpstreamCacheBytes},
		PublicURL: public, AuthCacheTTL: c.AuthCacheTTL, Signer: signer, DataDir: dataDir,
		Bucket: bucket, StorageCacheBytes: c.StorageCacheBytes, StorageFetchWait: c.StorageFetchWait,
		MaxUpload: c.MaxUpload, MaxConcurrentUploads: c.MaxUploads, TileCacheTTL: c.TileCacheTTL, LastUsedInterval: c.LastUsedInterval,
		PublicTileMaxAge: c.TileMaxAge, PrivateTileMaxAge: c.PrivateTileMaxAge, ReplacedTilesGrace: c.ReplacedTilesGrace,
		MaxTileBytes: c.MaxTileBytes, HotTileBytes: hotTileBytes(c.HotTileCacheBytes), FileSweepInterval: c.FileSweepInterval,
		DBTimeout: c.DBTimeout, TileLoadWait: c.TileLoadWait, TileMaxLoads: c.TileMaxLoads, StaleIfError: staleIfError(c.StaleIfError),
		TrustedProxies: proxies, AuditRetention: c.AuditRetention,
		UsageFlushInterval: c.UsageFlushInterval, UsageRetention: c.UsageRetention, ReplicaHeartbeat: c.ReplicaHeartbeat,
		UsageOff: c.UsageOff, AnonymousMintRate: c.AnonMintRate, AnonymousMintBurst: c.AnonMintBurst,
		Metrics: m,
	})
	if err != nil {
		return err
	}
	// After the HTTP server has stopped (deferred calls run in reverse, the store closes last):
	// stop the cache listener, write pending last_used times and usage counts, close the tile files.
	defer func() {
		if err := srv.Close(); err != nil {
			slog.Warn("close server", "err", err)
		}
	}()
	flight := newInFlight()
	httpSrv := &http.Server{
		Handler:           flight.wrap(srv.Handler()),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       c.ReadTimeout, // an upload extends its own once authenticated
		WriteTimeout:      5 * time.Minute,
		IdleTimeout:       2 * time.Minute,
	}
	admin := startAdmin(c.AdminAddr, m)
	defer admin.close()
	slog.Info("tilegate serving", "addr", ln.Addr().String(), "database", string(st.Dialect()), "docs", public+"/docs")
	errc := make(chan error, 1)
	go func() { errc <- httpSrv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdown(httpSrv, flight, c.ShutdownTimeout)
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	slog.Info("stopped")
	return nil
}

// errPublicURL: TILEGATE_PUBLIC_URL is missing where it cannot be guessed, or is not a base URL.
var errPublicURL = errors.New("TILEGATE_PUBLIC_URL")

// publicURL checks TILEGATE_PUBLIC_URL: an absolute http(s) URL with a host and no query, its
// trailing slash dropped. Unset, it is "" (the caller uses the listen address), except when
// the listen address is all interfaces: http://[::]:8080 is no address a client can use, and
// tilegate refuses to start rather than hand out tokens and TileJSON carrying it. It does not
// derive the base from each request's Host or X-Forwarded-Host instead: those are the client's
// (or a proxy's) to choose, TileJSON and tile URLs are cached by CDNs and browsers, and one
// setting the operator reads in the environment is easier to get right than a chain of
// forwarded headers (README, Deployment).
func publicURL(raw, addr string) (string, error) {
	if raw == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return "", fmt.Errorf("TILEGATE_ADDR %q: %w", addr, err)
		}
		if ip, perr := netip.ParseAddr(host); host == "" || perr == nil && ip.IsUnspecified() {
			return "", fmt.Errorf("%w is required when listening on all interfaces (TILEGATE_ADDR %s): set it to the URL clients reach tilegate at, e.g. https://tiles.example.com", errPublicURL, addr)
		}
		return "", nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", fmt.Errorf("%w %q is not a base URL: want http(s)://host[:port][/path], without a query", errPublicURL, raw)
	}
	return strings.TrimRight(raw, "/"), nil
}

// staleIfError maps the flag's 0 ("not at all") to the server's negative (its 0 is the default).
// trustedProxies parses TILEGATE_TRUSTED_PROXIES: CIDRs or single addresses.
// upstreamGuard is the address rule of upstream requests: the allowed ranges given, and never
// tilegate's own listeners (the public one, and the admin one with /metrics and pprof).
func upstreamGuard(allow []string, public, admin string) (*upstream.Guard, error) {
	ranges, err := upstream.ParsePrefixes(strings.Join(allow, ","))
	if err != nil {
		return nil, fmt.Errorf("TILEGATE_UPSTREAM_ALLOW: %w", err)
	}
	var own []netip.AddrPort
	for _, a := range []string{public, admin} {
		own = append(own, upstream.ListenerAddrs(a)...)
	}
	return upstream.NewGuard(ranges, own), nil
}

func trustedProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("TILEGATE_TRUSTED_PROXIES: %q is not a CIDR or an IP address", s)
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func staleIfError(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// hotTileBytes maps the flag's 0 (off) to server.Config's "off", whose 0 means the default.
func hotTileBytes(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

type migrateCmd struct{ dbFlags }

func (c *migrateCmd) Run() error {
	st, err := c.open(context.Background(), true)
	if err != nil {
		return err
	}
	return st.Close()
}

type adminCmd struct {
	CreateAccount createAccountCmd `cmd:"" name:"create-account" help:"Create an account with an admin service token; prints JSON."`
	CreateToken   createTokenCmd   `cmd:"" name:"create-token" help:"Create a principal with a role and a service token; prints JSON."`
	RevokeToken   revokeTokenCmd   `cmd:"" name:"revoke-token" help:"Revoke every service token of a principal."`
	List          listCmd          `cmd:"" help:"List accounts, their principals and their service tokens' ids and dates (never secrets); prints JSON."`
}

type listCmd struct {
	dbFlags
	Account string `help:"Only this account id."`
}

func (c *listCmd) Run() error {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	var id uuid.UUID
	if c.Account != "" {
		var err error
		if id, err = uuid.Parse(c.Account); err != nil {
			return fmt.Errorf("--account: %w", err)
		}
	}
	st, err := c.open(ctx, false)
	if err != nil {
		return err
	}
	defer st.Close()
	accounts, err := st.ListAccounts(ctx, id)
	if err != nil {
		return err
	}
	return printJSON(map[string]any{"accounts": accounts})
}

// adminTimeout bounds an admin command's database work: a database that does not answer
// makes the command fail, not hang.
const adminTimeout = time.Minute

type createAccountCmd struct {
	dbFlags
	Name string `required:"" help:"Account name."`
}

func (c *createAccountCmd) Run() error {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	st, err := c.open(ctx, false)
	if err != nil {
		return err
	}
	defer st.Close()
	issued, err := st.CreateAccount(ctx, c.Name)
	if err != nil {
		return err
	}
	return printJSON(issued)
}

type createTokenCmd struct {
	dbFlags
	Account string `required:"" help:"Account id."`
	Role    string `required:"" enum:"admin,editor,viewer" help:"admin, editor or viewer."`
	Name    string `help:"Principal name."`
}

func (c *createTokenCmd) Run() error {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	accountID, err := uuid.Parse(c.Account)
	if err != nil {
		return fmt.Errorf("--account: %w", err)
	}
	st, err := c.open(ctx, false)
	if err != nil {
		return err
	}
	defer st.Close()
	name := c.Name
	if name == "" {
		name = c.Role
	}
	issued, err := st.CreatePrincipal(ctx, accountID, c.Role, name)
	if err != nil {
		return err
	}
	return printJSON(issued)
}

type revokeTokenCmd struct {
	dbFlags
	Principal string `required:"" help:"Principal id."`
}

func (c *revokeTokenCmd) Run() error {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	id, err := uuid.Parse(c.Principal)
	if err != nil {
		return fmt.Errorf("--principal: %w", err)
	}
	st, err := c.open(ctx, false)
	if err != nil {
		return err
	}
	defer st.Close()
	n, err := st.RevokePrincipalTokens(ctx, id)
	if err != nil {
		return err
	}
	return printJSON(map[string]any{"principal_id": id, "revoked": n})
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func main() {
	var c cli
	k := kong.Parse(&c,
		kong.Name("tilegate"),
		kong.Description("Access control and delivery for map tiles."),
		kong.Vars{"default_sqlite": store.DefaultSQLitePath},
		kong.UsageOnError(),
	)
	text := c.LogFormat == "text" || c.LogFormat == "auto" && term.IsTerminal(int(os.Stderr.Fd()))
	slog.SetDefault(slog.New(logHandler(os.Stderr, text, c.LogLevel)))
	if err := k.Run(); err != nil {
		if text {
			// A person reads this: one line, the error itself.
			fmt.Fprintln(os.Stderr, "tilegate: "+oneLine(err.Error()))
		} else {
			slog.Error("tilegate failed", "err", oneLine(err.Error()))
		}
		os.Exit(1)
	}
}

// logHandler writes the log: JSON lines, or text lines for a person at a terminal. Durations
// are written as durations ("1.5s", "250ms"), not as slog's nanosecond integers.
func logHandler(w io.Writer, text bool, level slog.Leveler) slog.Handler {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Value.Kind() == slog.KindDuration {
			d := a.Value.Duration()
			if d >= time.Millisecond || d <= -time.Millisecond {
				d = d.Round(time.Microsecond)
			}
			return slog.String(a.Key, d.String())
		}
		return a
	}}
	if text {
		return slog.NewTextHandler(w, opts)
	}
	return slog.NewJSONHandler(w, opts)
}

// oneLine keeps an error on one line (a wrapped driver error can hold newlines).
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
