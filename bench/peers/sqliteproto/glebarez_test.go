//go:build !modernc

package sqliteproto

// The driver tilegate links today: it prepares the SQL inside every query.
import _ "github.com/glebarez/go-sqlite"
