// Package testenv gives tests the real thing: a fresh PostgreSQL database per test package (from
// TEST_DATABASE_URL, default the local server) and a SQLite file, a tilegate server on real HTTP,
// generated clients whose every response is validated against openapi.yaml, and a statement counter.
package testenv

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"gorm.io/gorm"

	"github.com/tilegate/tilegate/internal/scratchdb"
	"github.com/tilegate/tilegate/store"
)

// DefaultPostgres is where tests look for PostgreSQL when TEST_DATABASE_URL is unset.
const DefaultPostgres = scratchdb.DefaultURL

// Database is one engine the package's tests run against.
type Database struct {
	Name  string // "postgres" or "sqlite"
	URL   string // DATABASE_URL of the package's fresh database
	Store *store.Store
	// Statements counts every SQL statement the store issues through GORM.
	Statements atomic.Int64
}

var databases []*Database

// Main creates the package's databases, runs its tests and drops them. Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
func Main(m *testing.M) int {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	ctx := context.Background()
	cleanup, err := setup(ctx)
	defer cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		return 1
	}
	return m.Run()
}

func setup(ctx context.Context) (func(), error) {
	var cleanups []func()
	cleanup := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	pgURL, drop, err := createPostgres(ctx)
	switch {
	case err != nil && os.Getenv("CI") != "":
		return cleanup, fmt.Errorf("PostgreSQL is required in CI: %w", err)
	case err != nil:
		fmt.Fprintf(os.Stderr, "testenv: PostgreSQL unavailable, running on SQLite only: %v\n", err)
	default:
		cleanups = append(cleanups, drop)
		if err := add(ctx, "postgres", pgURL, &cleanups); err != nil {
			return cleanup, err
		}
	}
	dir, err := os.MkdirTemp("", "tilegate-test-*")
	if err != nil {
		return cleanup, err
	}
	cleanups = append(cleanups, func() { _ = os.RemoveAll(dir) })
	if err := add(ctx, "sqlite", "sqlite:"+filepath.Join(dir, "test.db"), &cleanups); err != nil {
		return cleanup, err
	}
	return cleanup, nil
}

func add(ctx context.Context, name, dbURL string, cleanups *[]func()) error {
	st, err := store.Open(ctx, dbURL, store.Options{})
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	*cleanups = append(*cleanups, func() { _ = st.Close() })
	if err := st.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate %s: %w", name, err)
	}
	d := &Database{Name: name, URL: dbURL, Store: st}
	countStatements(st.DB(), &d.Statements)
	databases = append(databases, d)
	return nil
}

// createPostgres makes a fresh database for this test package and returns its URL.
func createPostgres(ctx context.Context) (string, func(), error) {
	wd, _ := os.Getwd()
	db, err := scratchdb.Create(ctx, scratchdb.BaseURL(), "tilegate_test_"+sanitize(filepath.Base(wd)))
	if err != nil {
		return "", nil, err
	}
	return db.URL, func() {
		if err := db.Drop(); err != nil {
			fmt.Fprintln(os.Stderr, "testenv:", err)
		}
	}, nil
}

func sanitize(s string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(s) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// Databases are the package's databases (PostgreSQL first when available).
func Databases() []*Database { return databases }

// ForEach runs fn as a subtest on every database.
func ForEach(t *testing.T, fn func(t *testing.T, db *Database)) {
	t.Helper()
	if len(databases) == 0 {
		t.Fatal("testenv.Main did not run: add TestMain to the package")
	}
	for _, d := range databases {
		t.Run(d.Name, func(t *testing.T) { fn(t, d) })
	}
}

func countStatements(db *gorm.DB, n *atomic.Int64) {
	inc := func(*gorm.DB) { n.Add(1) }
	cb := db.Callback()
	_ = cb.Create().After("gorm:create").Register("testenv:count", inc)
	_ = cb.Query().After("gorm:query").Register("testenv:count", inc)
	_ = cb.Update().After("gorm:update").Register("testenv:count", inc)
	_ = cb.Delete().After("gorm:delete").Register("testenv:count", inc)
	_ = cb.Row().After("gorm:row").Register("testenv:count", inc)
	_ = cb.Raw().After("gorm:raw").Register("testenv:count", inc)
}
