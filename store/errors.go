package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"syscall"

	gosqlite "github.com/glebarez/go-sqlite"
	"github.com/jackc/pgx/v5/pgconn"
	sqlite3 "modernc.org/sqlite/lib"
)

// Reasons the database is unavailable, as UnavailableReason reports them. They key the
// server's aggregated outage log, so each is a small fixed set of words.
const (
	// ReasonTimeout: the database did not answer within the deadline (a black hole, an
	// overloaded server, statement_timeout).
	ReasonTimeout = "timeout"
	// ReasonConnection: the connection could not be made or was lost (refused, reset, closed in
	// the middle of a query).
	ReasonConnection = "connection"
	// ReasonServer: the server refused to work (shutting down, out of resources).
	ReasonServer = "server"
	// ReasonBusy: SQLite's file is locked by another writer beyond the busy timeout.
	ReasonBusy = "busy"
	// ReasonStorage: SQLite cannot read or write its file (I/O error, disk full, cannot open).
	ReasonStorage = "storage"
)

// IsUnavailable reports whether err means the database could not be reached or did not answer
// in time, as opposed to a problem with the request: the server answers those with 503.
func IsUnavailable(err error) bool { return UnavailableReason(err) != "" }

// UnavailableReason classifies err by the drivers' error types and codes (never by its text):
// one of the Reason constants, or "" when err is not about the database's availability.
func UnavailableReason(err error) string {
	if err == nil {
		return ""
	}
	// Whatever stopped a connection from being made (the server's own refusal included, such
	// as 55000 "not currently accepting connections" or 57P03 "starting up") makes the database
	// unavailable to this request.
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return ReasonConnection
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgReason(pgErr.Code)
	}
	var sqliteErr *gosqlite.Error
	if errors.As(err, &sqliteErr) {
		return sqliteReason(sqliteErr.Code())
	}
	netErr, isNet := networkError(err)
	switch {
	case errors.Is(err, context.DeadlineExceeded), pgconn.Timeout(err):
		return ReasonTimeout
	case isNet && netErr.Timeout():
		return ReasonTimeout
	}
	if isNet || pgconn.SafeToRetry(err) {
		return ReasonConnection
	}
	// A connection that went away: refused or reset by the peer, closed under a query (the
	// reply cut short: io.EOF or io.ErrUnexpectedEOF from the protocol reader), or closed by
	// the driver after such a failure.
	for _, target := range []error{
		syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE, syscall.ETIMEDOUT,
		io.ErrUnexpectedEOF, io.EOF, net.ErrClosed,
		driver.ErrBadConn, sql.ErrConnDone, pgconn.ErrConnClosed,
	} {
		if errors.Is(err, target) {
			return ReasonConnection
		}
	}
	return ""
}

// networkError finds a network error in err's chain. A bare syscall.Errno also satisfies
// net.Error, so a local file system's ENOSPC, EACCES, EMFILE or EROFS (an *fs.PathError around
// the errno) would otherwise read as a lost database connection: only errors the net package
// made (an *net.OpError, a DNS error) count; a connection refused or reset without one is
// matched by its errno in UnavailableReason.
func networkError(err error) (net.Error, bool) {
	var netErr net.Error
	if !errors.As(err, &netErr) {
		return nil, false
	}
	if _, errno := netErr.(syscall.Errno); errno {
		return nil, false
	}
	return netErr, true
}

// pgReason classifies a PostgreSQL SQLSTATE: class 08 connection exceptions, 57 operator
// intervention (57014 a cancelled statement: statement_timeout; 57P01..57P05 shutdown, crash,
// cannot connect now, idle session timeout), 53 insufficient resources (too many connections,
// out of memory or disk).
func pgReason(code string) string {
	switch {
	case code == "57014":
		return ReasonTimeout
	case len(code) < 2:
		return ""
	}
	switch code[:2] {
	case "08":
		return ReasonConnection
	case "57", "53":
		return ReasonServer
	}
	return ""
}

// sqliteReason classifies an SQLite result code by its primary code (the low byte; extended
// codes such as SQLITE_BUSY_SNAPSHOT share it).
func sqliteReason(code int) string {
	switch code & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return ReasonBusy
	case sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_NOLFS:
		return ReasonStorage
	}
	return ""
}
