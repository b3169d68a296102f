package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	_ "github.com/glebarez/go-sqlite" // registers "sqlite"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tilegate/tilegate/internal/scratchdb"
	"github.com/tilegate/tilegate/store"
)

// Errors are classified by the drivers' types and codes: real driver errors are, and errors that
// merely say the same words are not (the old classifier matched message text).
func TestUnavailableReason(t *testing.T) {
	// SQLite: a second writer meets the first one's lock with no busy timeout → SQLITE_BUSY.
	path := filepath.Join(t.TempDir(), "busy.db")
	dsn := "file:" + path + "?_pragma=busy_timeout(0)&_pragma=journal_mode(WAL)"
	a, err := sql.Open("sqlite", dsn)
	must(t, err)
	defer a.Close()
	b, err := sql.Open("sqlite", dsn)
	must(t, err)
	defer b.Close()
	ctx := context.Background()
	_, err = a.ExecContext(ctx, "CREATE TABLE t (x); CREATE TABLE u (x UNIQUE); INSERT INTO u VALUES (1)")
	must(t, err)
	ta, err := a.BeginTx(ctx, nil)
	must(t, err)
	defer ta.Rollback()
	_, err = ta.ExecContext(ctx, "INSERT INTO t VALUES (1)")
	must(t, err)
	_, busy := b.ExecContext(ctx, "INSERT INTO t VALUES (2)")
	if busy == nil {
		t.Fatal("a second writer was not refused")
	}
	// A constraint violation is the client's problem, not an outage.
	_, unique := ta.ExecContext(ctx, "INSERT INTO u VALUES (1)")
	if unique == nil {
		t.Fatal("duplicate accepted")
	}

	// PostgreSQL: nobody listens on the port → a connect error.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := ln.Addr().String()
	ln.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, refused := pgx.Connect(cctx, "postgres://u@"+addr+"/db?sslmode=disable&connect_timeout=2")
	if refused == nil {
		t.Fatal("connected to a closed port")
	}
	expired, cancel2 := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel2()
	// The server's own refusal to connect (a PgError inside the connect error): no such
	// database here; "not accepting connections" and "starting up" arrive the same way.
	var serverRefused error
	if u, err := url.Parse(scratchdb.BaseURL()); err == nil {
		u.Path = "/tilegate_no_such_database"
		_, serverRefused = pgx.Connect(cctx, u.String())
		var pgErr *pgconn.PgError
		if !errors.As(serverRefused, &pgErr) {
			serverRefused = nil // PostgreSQL is not running here: the case is skipped
		}
	}

	// A file where a directory should be: the file system's own error.
	blocker := filepath.Join(t.TempDir(), "file")
	must(t, os.WriteFile(blocker, nil, 0o600))
	_, notADirectory := os.Create(filepath.Join(blocker, "x"))
	if notADirectory == nil {
		t.Fatal("created a file under a file")
	}

	cases := []struct {
		name string
		err  error
		want string
	}{
		{"sqlite busy", busy, store.ReasonBusy},
		{"sqlite busy, wrapped", fmt.Errorf("create key: %w", busy), store.ReasonBusy},
		{"sqlite unique", unique, ""},
		{"pg connect refused", refused, store.ReasonConnection},
		{"deadline", fmt.Errorf("list keys: %w", expired.Err()), store.ReasonTimeout},
		{"pg server refused the connection", serverRefused, store.ReasonConnection},
		{"the words without the type", errors.New("database is locked"), ""},
		{"the words without the type", errors.New("failed to connect to `user=x`: conn closed"), ""},
		{"nil", nil, ""},
		// Local I/O: a syscall.Errno satisfies net.Error, yet a full or read-only disk is no
		// database outage (#15 item 12).
		{"disk full", fmt.Errorf("write upload: %w", &fs.PathError{Op: "write", Path: "/data/x", Err: syscall.ENOSPC}), ""},
		{"permission denied", &fs.PathError{Op: "open", Path: "/data/x", Err: syscall.EACCES}, ""},
		{"too many open files", &fs.PathError{Op: "open", Path: "/data/x", Err: syscall.EMFILE}, ""},
		{"read-only file system", &os.LinkError{Op: "rename", Old: "/data/a", New: "/data/b", Err: syscall.EROFS}, ""},
		{"a real file system error", notADirectory, ""},
		{"a bare errno", syscall.EIO, ""},
		// Network errors still are.
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, store.ReasonConnection},
		{"network timeout", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, store.ReasonTimeout},
		{"bare connection refused", os.NewSyscallError("connect", syscall.ECONNREFUSED), store.ReasonConnection},
	}
	for _, c := range cases {
		if c.err == nil && c.want != "" {
			t.Logf("%s: skipped (no PostgreSQL)", c.name)
			continue
		}
		if got := store.UnavailableReason(c.err); got != c.want {
			t.Errorf("%s (%v): reason %q, want %q", c.name, c.err, got, c.want)
		}
		if got := store.IsUnavailable(c.err); got != (c.want != "") {
			t.Errorf("%s: IsUnavailable %v", c.name, got)
		}
	}
}

// A PostgreSQL server that accepts connections and never answers (a black hole) costs a
// connection attempt ConnectTimeout, not the caller's whole budget, and is "unavailable".
func TestPostgresConnectTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	done := make(chan struct{})
	defer func() { ln.Close(); <-done }()
	go func() {
		defer close(done)
		var held []net.Conn // never read, never answered
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()
	start := time.Now()
	st, err := store.Open(context.Background(), "postgres://u@"+ln.Addr().String()+"/db?sslmode=disable",
		store.Options{ConnectTimeout: time.Second})
	took := time.Since(start)
	if err == nil {
		st.Close()
		t.Fatal("opened a database that never answers")
	}
	if !store.IsUnavailable(err) {
		t.Errorf("%v: not classified as unavailable", err)
	}
	// Open's own ping allows 5s; the 1s connect timeout must end the attempt well before.
	if took > 4*time.Second {
		t.Errorf("connecting to a silent server took %v, want about the 1s connect timeout", took)
	}
}
