// Package store keeps tilegate's state in PostgreSQL (production) or an embedded SQLite file
// (the default, so a fresh machine needs nothing installed), through GORM.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

//go:embed migrations
var migrations embed.FS

// Dialect names the SQL engine behind a Store.
type Dialect string

const (
	Postgres Dialect = "postgres"
	SQLite   Dialect = "sqlite"
)

// DefaultSQLitePath is used when DATABASE_URL is empty.
const DefaultSQLitePath = "data/tilegate.db"

// Store is the database handle shared by the whole process.
type Store struct {
	db      *gorm.DB
	sqlDB   *sql.DB
	dialect Dialect
	dsn     string
	subs    subscribers
	// retentionBatch is the rows a retention delete removes per statement (0: RetentionBatch).
	retentionBatch int
}

// RetentionBatch is the rows PruneAudit and DeleteUsageBefore delete per statement: small
// enough that a statement ends in milliseconds, large enough that a day's rows take a few.
const RetentionBatch = 5000

// Options tune the connection pool; zero values take the defaults.
type Options struct {
	MaxOpenConns     int
	StatementTimeout time.Duration
	// ConnectTimeout bounds a new PostgreSQL connection, TCP and startup together (default
	// 5s), unless the URL sets connect_timeout.
	ConnectTimeout time.Duration
	// MustExist refuses (ErrNoDatabase) a SQLite file that does not exist yet instead of
	// creating it: commands other than serve and migrate must not leave a second, empty
	// database behind when run from another directory.
	MustExist bool
}

// ParseURL tells which dialect a DATABASE_URL selects and the DSN its driver takes:
// postgres:// and postgresql:// are PostgreSQL, sqlite:PATH or a bare path is SQLite. Any other
// scheme (postgress://, mysql://, file:) is ErrDatabaseURL: read as a path it would silently
// become a new SQLite file named after the URL. The error names the scheme, never the URL (it
// may hold a password).
func ParseURL(databaseURL string) (Dialect, string, error) {
	scheme, _, hasScheme := strings.Cut(databaseURL, ":")
	// A one-letter scheme is a Windows drive (C:\data\tilegate.db); a scheme has no '/' or '.'
	// before its colon, so ./a:b and dir/x:y stay paths.
	if !hasScheme || len(scheme) < 2 || !isScheme(scheme) {
		scheme = ""
	}
	switch lower := strings.ToLower(scheme); {
	case databaseURL == "":
		return SQLite, DefaultSQLitePath, nil
	case lower == "postgres" || lower == "postgresql":
		if !strings.HasPrefix(databaseURL[len(scheme)+1:], "//") {
			return "", "", fmt.Errorf("%w: a PostgreSQL URL is written postgres://user@host:port/dbname", ErrDatabaseURL)
		}
		return Postgres, lower + databaseURL[len(scheme):], nil
	case lower == "sqlite":
		path := strings.TrimPrefix(databaseURL[len(scheme)+1:], "//")
		if path == "" {
			return "", "", fmt.Errorf("%w: sqlite: names no file (write sqlite:PATH)", ErrDatabaseURL)
		}
		return SQLite, path, nil
	case scheme != "":
		return "", "", fmt.Errorf("%w: scheme %q is not supported: use postgres://…, postgresql://… or sqlite:PATH", ErrDatabaseURL, scheme)
	default:
		return SQLite, databaseURL, nil
	}
}

// isScheme reports whether s is an RFC 3986 scheme: a letter, then letters, digits, + - .
func isScheme(s string) bool {
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '+' || r == '-'):
		default:
			return false
		}
	}
	return true
}

// Location says where a DATABASE_URL points, for the line every command logs: the SQLite
// file's absolute path, or PostgreSQL's host, port and database (never the user's password).
func Location(databaseURL string) (string, error) {
	dialect, dsn, err := ParseURL(databaseURL)
	if err != nil {
		return "", err
	}
	if dialect == SQLite {
		abs, err := filepath.Abs(dsn)
		if err != nil {
			return "", fmt.Errorf("SQLite database path %s: %w", dsn, err)
		}
		return "sqlite:" + abs, nil
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "", urlParseError(err) // never quotes the URL
	}
	// pgx knows the defaults (port 5432, a host= parameter); a setting it refuses is Open's
	// to report, with its reason, so the URL's own parts are enough here.
	host, port, db := u.Hostname(), u.Port(), strings.TrimPrefix(u.Path, "/")
	if cfg, err := pgx.ParseConfig(dsn); err == nil {
		host, port, db = cfg.Host, fmt.Sprint(cfg.Port), cfg.Database
	}
	if port == "" {
		port = "5432"
	}
	return "postgres://" + net.JoinHostPort(host, port) + "/" + db, nil
}

// ErrNoDatabase: Options.MustExist was set and the SQLite file does not exist.
var ErrNoDatabase = errors.New("database does not exist")

// Open connects to the database a DATABASE_URL names. It does not migrate; call Migrate.
func Open(ctx context.Context, databaseURL string, opts Options) (*Store, error) {
	if opts.MaxOpenConns == 0 {
		opts.MaxOpenConns = 20
	}
	if opts.StatementTimeout == 0 {
		opts.StatementTimeout = 10 * time.Second
	}
	if opts.ConnectTimeout == 0 {
		opts.ConnectTimeout = 5 * time.Second
	}
	dialect, dsn, err := ParseURL(databaseURL)
	if err != nil {
		return nil, err
	}
	cfg := &gorm.Config{
		Logger:                 logger.Discard,
		NowFunc:                Now,
		SkipDefaultTransaction: true,
		TranslateError:         true,
		// Open pings below, with a deadline; GORM's own ping has none.
		DisableAutomaticPing: true,
	}
	var dialector gorm.Dialector
	switch dialect {
	case Postgres:
		pgDSN, err := withPostgresDefaults(dsn, opts)
		if err != nil {
			return nil, err // never quotes the URL (urlParseError)
		}
		dsn = pgDSN
		pgCfg, err := PostgresConfig(dsn)
		if err != nil {
			return nil, err
		}
		dialector = postgres.New(postgres.Config{Conn: stdlib.OpenDB(*pgCfg)})
	case SQLite:
		if opts.MustExist {
			if _, err := os.Stat(dsn); errors.Is(err, fs.ErrNotExist) {
				abs, _ := filepath.Abs(dsn)
				return nil, fmt.Errorf("%w: no SQLite file at %s (tilegate migrate or serve creates it; set DATABASE_URL to use another)", ErrNoDatabase, abs)
			}
		}
		if dir := filepath.Dir(dsn); dir != "." {
			if err := os.MkdirAll(dir, 0o750); err != nil {
				return nil, fmt.Errorf("create database directory %s: %w", dir, err)
			}
		}
		dialector = sqlite.Open(sqliteDSN(dsn, opts.StatementTimeout))
	}
	// Errors past this point can quote the connection string: redact masks its password.
	db, err := gorm.Open(dialector, cfg)
	if err != nil {
		return nil, redact(fmt.Errorf("open %s database: %w", dialect, err), dsn)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, redact(fmt.Errorf("open %s database: %w", dialect, err), dsn)
	}
	switch dialect {
	case Postgres:
		sqlDB.SetMaxOpenConns(opts.MaxOpenConns)
		sqlDB.SetMaxIdleConns(opts.MaxOpenConns)
		sqlDB.SetConnMaxIdleTime(5 * time.Minute)
		sqlDB.SetConnMaxLifetime(time.Hour)
	case SQLite:
		// One writer at a time is SQLite's model; WAL lets readers proceed meanwhile.
		sqlDB.SetMaxOpenConns(opts.MaxOpenConns)
		sqlDB.SetMaxIdleConns(opts.MaxOpenConns)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := sqlDB.PingContext(pingCtx); err != nil {
		_ = sqlDB.Close()
		return nil, redact(fmt.Errorf("connect to %s database: %w", dialect, err), dsn)
	}
	return &Store{db: db, sqlDB: sqlDB, dialect: dialect, dsn: dsn}, nil
}

// withPostgresDefaults adds statement_timeout (a PostgreSQL runtime parameter pgx passes on)
// and connect_timeout (pgx's, whole seconds) unless the URL already sets them.
func withPostgresDefaults(dsn string, opts Options) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", urlParseError(err)
	}
	q := u.Query()
	if q.Get("statement_timeout") == "" {
		q.Set("statement_timeout", fmt.Sprint(opts.StatementTimeout.Milliseconds()))
	}
	if q.Get("connect_timeout") == "" {
		q.Set("connect_timeout", fmt.Sprint(max(1, int(opts.ConnectTimeout.Round(time.Second)/time.Second))))
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// sqliteDSN configures every SQLite connection. _txlock=immediate makes each transaction begin
// with BEGIN IMMEDIATE, taking the single write lock up front: a deferred transaction that reads
// first and writes later cannot wait for that lock (SQLite answers SQLITE_BUSY or
// SQLITE_BUSY_SNAPSHOT at once, without the busy handler, because waiting could deadlock or would
// write over a stale snapshot), while BEGIN IMMEDIATE waits for up to busy_timeout. It also makes
// a transaction's reads and writes one atomic step, which the read-modify-write of keys and
// datasets relies on (see lockForUpdate). Do not add _time_format: go-sqlite v1.23 returns from
// its DSN parsing right after it, so _txlock would be silently ignored (the concurrency tests in
// store/concurrency_test.go fail when it is).
// TCP keepalive of PostgreSQL connections: a peer that vanished without closing (a crashed host,
// a dropped route) is noticed after about Idle + Count×Interval of silence, instead of the
// kernel's default of hours; an idle pooled connection that died is then gone before a request
// picks it up. (A connection whose peer still acknowledges packets but never answers is bounded
// by the request deadlines instead.)
var pgKeepAlive = net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3}

// PostgresConfig parses a PostgreSQL DSN into the pgx configuration every tilegate connection
// uses (the pool's and the cache listener's): connect_timeout bounds the dial and the startup
// together, and connections keep TCP keepalives.
func PostgresConfig(dsn string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	dialer := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAliveConfig: pgKeepAlive}
	cfg.DialFunc = dialer.DialContext
	return cfg, nil
}

func sqliteDSN(path string, timeout time.Duration) string {
	return fmt.Sprintf("file:%s?_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate",
		path, timeout.Milliseconds())
}

// Dialect reports which engine the store runs on.
func (s *Store) Dialect() Dialect { return s.dialect }

// DSN is the driver connection string (used by the PostgreSQL listener).
func (s *Store) DSN() string { return s.dsn }

// DB exposes the GORM handle for tests that count statements.
func (s *Store) DB() *gorm.DB { return s.db }

// Close releases every connection.
func (s *Store) Close() error { return s.sqlDB.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.sqlDB.PingContext(ctx); err != nil {
		return fmt.Errorf("ping database: %w", err)
	}
	return nil
}

// Writable checks that the database accepts a change: a PostgreSQL standby or a server in
// read-only mode, and an SQLite file that cannot be written, answer Ping yet refuse every write.
// The probe changes nothing: an UPDATE that matches no row, in a transaction rolled back.
func (s *Store) Writable(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	tx, err := s.sqlDB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin write probe: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, "UPDATE accounts SET name = name WHERE id IS NULL"); err != nil {
		return fmt.Errorf("write probe: %w", err)
	}
	return nil
}

// Migrate applies every pending migration of the store's dialect. On PostgreSQL a session
// lock keeps replicas that start together from migrating twice.
func (s *Store) Migrate(ctx context.Context) error {
	provider, err := s.migrations()
	if err != nil {
		return err
	}
	results, err := provider.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, r := range results {
		slog.Info("migration applied", "version", r.Source.Version, "path", r.Source.Path)
	}
	return nil
}

func (s *Store) migrations() (*goose.Provider, error) {
	sub, err := fs.Sub(migrations, "migrations/"+string(s.dialect))
	if err != nil {
		return nil, fmt.Errorf("migrations for %s: %w", s.dialect, err)
	}
	gooseDialect := goose.DialectSQLite3
	var opts []goose.ProviderOption
	if s.dialect == Postgres {
		gooseDialect = goose.DialectPostgres
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return nil, fmt.Errorf("migration lock: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	provider, err := goose.NewProvider(gooseDialect, s.sqlDB, sub, opts...)
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return provider, nil
}

// Now is the store's clock: UTC at microsecond precision, what both engines keep exactly.
func Now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

var (
	// ErrNotFound: no such row in the caller's account.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a unique rule would be broken.
	ErrConflict = errors.New("conflict")
)
