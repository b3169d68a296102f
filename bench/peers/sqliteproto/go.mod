// Evidence for issue #9 (tile reads through the pure-Go SQLite stack), kept as its own module
// so that tilegate's module graph is untouched: modernc.org/sqlite and glebarez/go-sqlite both
// register the driver name "sqlite", so they cannot be linked into one binary.
module github.com/tilegate/tilegate/bench/peers/sqliteproto

go 1.26.0

require (
	github.com/glebarez/go-sqlite v1.23.0
	modernc.org/libc v1.78.0
	modernc.org/sqlite v1.60.1
)

require (
	github.com/dustin/go-humanize v1.1.0 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/mattn/go-isatty v0.0.24 // indirect
	github.com/ncruces/go-strftime v1.0.0 // indirect
	github.com/remyoudompheng/bigfft v0.0.0-20230129092748-24d4a6f8daec // indirect
	golang.org/x/sys v0.48.0 // indirect
	modernc.org/mathutil v1.7.1 // indirect
	modernc.org/memory v1.12.1 // indirect
)
