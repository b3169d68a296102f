package mbtiles

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// What an uploaded MBTiles file may be. A file is untrusted input: SQLite runs whatever SQL its
// schema holds (views, generated columns, virtual tables) whenever tilegate reads through it, so
// a view can compute forever or return gigabytes. tilegate therefore never reads through SQL the
// file brings: metadata and tiles must be plain tables, or tiles the common deduplicated layout
// (plain tables map and images joined by tile_id), whose tiles view is replaced by tilegate's
// own definition at upload (Prepare).

// Layout is how a file stores its tiles.
type Layout int

const (
	// LayoutTable is a plain tiles table.
	LayoutTable Layout = iota + 1
	// LayoutDeduplicated is plain map and images tables joined by tile_id, read through a tiles
	// view that Prepare writes (the file's own view is never used).
	LayoutDeduplicated
)

// Limits bound what Inspect accepts; zero fields take the defaults.
type Limits struct {
	// MaxTileBytes is the largest tile (DefaultMaxTileBytes).
	MaxTileBytes int64
	// MaxMetadataRows is the most metadata rows (DefaultMaxMetadataRows).
	MaxMetadataRows int
	// MaxMetadataValueBytes is the largest metadata value (DefaultMaxMetadataValueBytes).
	MaxMetadataValueBytes int64
	// MaxMetadataBytes bounds the names and values of all metadata rows together
	// (DefaultMaxMetadataBytes): what reading the metadata may cost in memory.
	MaxMetadataBytes int64
}

// Defaults of Limits.
const (
	DefaultMaxTileBytes          = 4 << 20
	DefaultMaxMetadataRows       = 1000
	DefaultMaxMetadataValueBytes = 1 << 20
	// DefaultMaxMetadataBytes holds every key tilegate reads at its largest value and more:
	// real files carry a few KiB (a large vector_layers a few hundred).
	DefaultMaxMetadataBytes = 4 << 20
)

// WithDefaults is l with its zero fields set to the defaults (the PMTiles checks share these
// limits).
func (l Limits) WithDefaults() Limits { return l.withDefaults() }

func (l Limits) withDefaults() Limits {
	if l.MaxTileBytes <= 0 {
		l.MaxTileBytes = DefaultMaxTileBytes
	}
	if l.MaxMetadataRows <= 0 {
		l.MaxMetadataRows = DefaultMaxMetadataRows
	}
	if l.MaxMetadataValueBytes <= 0 {
		l.MaxMetadataValueBytes = DefaultMaxMetadataValueBytes
	}
	if l.MaxMetadataBytes <= 0 {
		l.MaxMetadataBytes = DefaultMaxMetadataBytes
	}
	return l
}

// FieldError blames one value of the file (a metadata row, a part of it, a tile). Loc locates
// it, e.g. ["metadata", "json", "vector_layers", 3, "id"]. It wraps ErrInvalid.
type FieldError struct {
	Loc []any
	Msg string
}

func (e *FieldError) Error() string {
	parts := make([]string, len(e.Loc))
	for i, l := range e.Loc {
		parts[i] = fmt.Sprint(l)
	}
	return fmt.Sprintf("%s: %s: %s", ErrInvalid, strings.Join(parts, "."), e.Msg)
}

func (e *FieldError) Unwrap() error { return ErrInvalid }

// ErrDamaged is wrapped by read errors that SQLite reports as a damaged file (SQLITE_CORRUPT,
// SQLITE_NOTADB): the file will not get better by retrying.
var ErrDamaged = errors.New("the MBTiles file is damaged")

// ErrTileTooLarge is returned by Pool.Tile for a tile above the pool's size limit.
var ErrTileTooLarge = errors.New("tile larger than the limit")

// SQLite primary result codes (sqlite3.h) that mean the file itself is damaged.
const (
	sqliteCorrupt = 11
	sqliteNotADB  = 26
)

// classify wraps err with ErrDamaged when SQLite's result code says the file is damaged. The
// code is read from the typed error (the driver's *sqlite.Error, or the tile reader's
// *sqliteError), never from its message.
func classify(err error) error {
	var se interface{ Code() int }
	if errors.As(err, &se) {
		switch se.Code() & 0xff { // extended codes keep the primary code in the low byte
		case sqliteCorrupt, sqliteNotADB:
			return fmt.Errorf("%w: %w", ErrDamaged, err)
		}
	}
	return err
}

// column is one column of a table, from pragma_table_xinfo.
type column struct {
	name   string
	hidden int // 0 normal, 1 hidden (virtual tables), 2 and 3 generated
}

// checkLayout checks the file's schema against the rules above, reading sqlite_master and the
// tables' column lists only, and returns the tiles layout.
func checkLayout(ctx context.Context, db *sql.DB) (Layout, error) {
	objects, err := schemaObjects(ctx, db)
	if err != nil {
		return 0, err
	}
	if err := checkPlainTable(ctx, db, objects, "metadata", "name", "value"); err != nil {
		return 0, err
	}
	switch objects["tiles"].typ {
	case "table":
		if err := checkPlainTable(ctx, db, objects, "tiles", "zoom_level", "tile_column", "tile_row", "tile_data"); err != nil {
			return 0, err
		}
		return LayoutTable, nil
	case "view":
		if err := checkPlainTable(ctx, db, objects, "map", "zoom_level", "tile_column", "tile_row", "tile_id"); err != nil {
			return 0, fmt.Errorf("%w (tiles is a view: only the map/images layout is accepted)", err)
		}
		if err := checkPlainTable(ctx, db, objects, "images", "tile_id", "tile_data"); err != nil {
			return 0, fmt.Errorf("%w (tiles is a view: only the map/images layout is accepted)", err)
		}
		return LayoutDeduplicated, nil
	case "":
		return 0, fmt.Errorf("%w: no tiles table", ErrInvalid)
	default:
		return 0, fmt.Errorf("%w: tiles is a %s, not a table", ErrInvalid, objects["tiles"].typ)
	}
}

type schemaObject struct{ typ, sql string }

// schemaObjects returns the tables and views of the main schema by lower-case name (SQLite
// names are case-insensitive).
func schemaObjects(ctx context.Context, db *sql.DB) (map[string]schemaObject, error) {
	rows, err := db.QueryContext(ctx, `SELECT lower(name), type, coalesce(sql, '') FROM sqlite_master WHERE type IN ('table', 'view')`)
	if err != nil {
		return nil, invalid("read schema", classify(err))
	}
	defer rows.Close()
	out := map[string]schemaObject{}
	for rows.Next() {
		var name string
		var o schemaObject
		if err := rows.Scan(&name, &o.typ, &o.sql); err != nil {
			return nil, invalid("read schema", classify(err))
		}
		out[name] = o
	}
	if err := rows.Err(); err != nil {
		return nil, invalid("read schema", classify(err))
	}
	return out, nil
}

// checkPlainTable requires name to be an ordinary table (not a view or a virtual table) with
// the given columns, none of them generated.
func checkPlainTable(ctx context.Context, db *sql.DB, objects map[string]schemaObject, name string, want ...string) error {
	o, ok := objects[name]
	switch {
	case !ok:
		return fmt.Errorf("%w: no %s table", ErrInvalid, name)
	case o.typ != "table":
		return fmt.Errorf("%w: %s is a %s; it must be a plain table", ErrInvalid, name, o.typ)
	case strings.HasPrefix(strings.ToUpper(strings.Join(strings.Fields(o.sql), " ")), "CREATE VIRTUAL TABLE"):
		return fmt.Errorf("%w: %s is a virtual table; it must be a plain table", ErrInvalid, name)
	}
	cols, err := tableColumns(ctx, db, name)
	if err != nil {
		return err
	}
	for _, w := range want {
		c, ok := cols[w]
		if !ok {
			return fmt.Errorf("%w: table %s has no column %s", ErrInvalid, name, w)
		}
		if c.hidden != 0 {
			return fmt.Errorf("%w: column %s.%s is computed; it must be stored", ErrInvalid, name, w)
		}
	}
	return nil
}

func tableColumns(ctx context.Context, db *sql.DB, table string) (map[string]column, error) {
	rows, err := db.QueryContext(ctx, `SELECT lower(name), hidden FROM pragma_table_xinfo(?)`, table)
	if err != nil {
		return nil, invalid("read the columns of "+table, classify(err))
	}
	defer rows.Close()
	out := map[string]column{}
	for rows.Next() {
		var c column
		if err := rows.Scan(&c.name, &c.hidden); err != nil {
			return nil, invalid("read the columns of "+table, classify(err))
		}
		out[c.name] = c
	}
	if err := rows.Err(); err != nil {
		return nil, invalid("read the columns of "+table, classify(err))
	}
	return out, nil
}

// tileSource is what to read the layout's tiles FROM, with tilegate's own SQL: columns
// zoom_level, tile_column, tile_row and tile_data.
func (l Layout) tileSource() string {
	if l == LayoutDeduplicated {
		return `(SELECT map.zoom_level AS zoom_level, map.tile_column AS tile_column, map.tile_row AS tile_row,
			images.tile_data AS tile_data FROM map JOIN images ON images.tile_id = map.tile_id)`
	}
	return `tiles`
}

// tilesView is the only tiles view tilegate serves from: its own, over map and images.
const tilesView = `CREATE VIEW tiles AS SELECT map.zoom_level AS zoom_level, map.tile_column AS tile_column,
	map.tile_row AS tile_row, images.tile_data AS tile_data FROM map JOIN images ON images.tile_id = map.tile_id`

// execScan runs a statement that may scan the whole file as Exec, materialising its result in a
// TEMP table: the driver interrupts SQLite when ctx ends only while a statement executes inside
// Exec (rows.Next is not interruptible), so long reads must run there.
//
// The table is created empty first and filled by INSERT … SELECT: an integrity check then sees
// the TEMP database consistent (it checks every attached database; the pragma's schema column
// cannot restrict it, a filter on it returns no rows).
func execScan(ctx context.Context, conn *sql.Conn, table, query string, args ...any) error {
	if _, err := conn.ExecContext(ctx, "DROP TABLE IF EXISTS temp."+table); err != nil {
		return err
	}
	if _, err := conn.ExecContext(ctx, "CREATE TEMP TABLE "+table+" AS SELECT * FROM ("+query+") LIMIT 0", args...); err != nil {
		return err
	}
	_, err := conn.ExecContext(ctx, "INSERT INTO temp."+table+" "+query, args...)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return err
}

// checkIntegrity runs PRAGMA integrity_check: every page and b-tree of the file is read, and
// every index is checked against its table — a damaged tile index would otherwise serve
// "no tile" for tiles the file has, without any error. It costs about 1.5 times quick_check
// (measured: 120,000 tiles, 354 MB, 0.46 s against 0.30 s; BenchmarkUploadChecks). A damaged
// file is ErrInvalid.
func checkIntegrity(ctx context.Context, conn *sql.Conn) error {
	if err := execScan(ctx, conn, "tilegate_integrity_check", `SELECT integrity_check AS msg FROM pragma_integrity_check LIMIT 5`); err != nil {
		if ctx.Err() != nil {
			return err
		}
		return invalid("integrity check", classify(err))
	}
	rows, err := conn.QueryContext(ctx, `SELECT msg FROM temp.tilegate_integrity_check`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			return err
		}
		if m != "ok" {
			problems = append(problems, m)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: the file is damaged (SQLite integrity_check: %s)", ErrInvalid, strings.Join(problems, "; "))
	}
	return nil
}

// checkTileSizes refuses a file with a tile above max. length() of a stored blob is read from
// the record header: the tile data itself is not loaded.
func checkTileSizes(ctx context.Context, conn *sql.Conn, l Layout, max int64) error {
	q := `SELECT zoom_level AS z, tile_column AS x, tile_row AS y, octet_length(tile_data) AS n FROM ` + l.tileSource() +
		` WHERE octet_length(tile_data) > ? LIMIT 1`
	if err := execScan(ctx, conn, "tilegate_big_tile", q, max); err != nil {
		if ctx.Err() != nil {
			return err
		}
		return invalid("read tile sizes", classify(err))
	}
	var z, x, y, n int64
	err := conn.QueryRowContext(ctx, `SELECT z, x, y, n FROM temp.tilegate_big_tile`).Scan(&z, &x, &y, &n)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return err
	}
	return &FieldError{Loc: []any{"tiles"},
		Msg: fmt.Sprintf("the tile at zoom_level %d, tile_column %d, tile_row %d is %d bytes; the limit is %d", z, x, y, n, max)}
}
