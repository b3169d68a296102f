//go:build modernc

package sqliteproto

// modernc.org/sqlite's own database/sql driver: a *sql.Stmt keeps its sqlite3_stmt.
import _ "modernc.org/sqlite"
