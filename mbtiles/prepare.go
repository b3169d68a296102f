package mbtiles

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// Prepare readies a file that Inspect accepted for serving, in place: rollback journal mode
// (tiles are opened read-only and immutable; a WAL-mode file would need its -wal and -shm); for
// the map/images layout, tilegate's own tiles view instead of the file's; and the indexes a
// tile read needs. A file whose tile read would still scan is refused (ErrInvalid). Every
// statement stops when ctx ends.
func Prepare(ctx context.Context, path string, layout Layout) error {
	u := url.URL{Scheme: "file", Path: path, OmitHost: true, RawQuery: "mode=rw"}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return fmt.Errorf("prepare %s: %w", path, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if err := prepare(ctx, db, layout); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("prepare %s: %w", path, ctx.Err())
		}
		return fmt.Errorf("prepare %s: %w", path, err)
	}
	return nil
}

func prepare(ctx context.Context, db *sql.DB, layout Layout) error {
	if _, err := db.ExecContext(ctx, "PRAGMA journal_mode=DELETE"); err != nil {
		return invalid("set journal mode", err)
	}
	switch layout {
	case LayoutTable:
		if err := ensureIndex(ctx, db, "tiles", "tilegate_tile_index", "zoom_level", "tile_column", "tile_row"); err != nil {
			return err
		}
	case LayoutDeduplicated:
		// The file's view is SQL it brought: replace it by ours, in one transaction.
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, "DROP VIEW tiles"); err != nil {
			return invalid("drop the file's tiles view", err)
		}
		if _, err := tx.ExecContext(ctx, tilesView); err != nil {
			return invalid("create the tiles view", err)
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		if err := ensureIndex(ctx, db, "map", "tilegate_map_index", "zoom_level", "tile_column", "tile_row"); err != nil {
			return err
		}
		if err := ensureIndex(ctx, db, "images", "tilegate_images_index", "tile_id"); err != nil {
			return err
		}
	default:
		return fmt.Errorf("prepare: unknown layout %d", layout)
	}
	return checkTilePlan(ctx, db)
}

// ensureIndex creates an index on table(cols) unless one starts with cols in some order.
func ensureIndex(ctx context.Context, db *sql.DB, table, name string, cols ...string) error {
	indexed, err := hasIndex(ctx, db, table, cols)
	if err != nil {
		return invalid("read the indexes of "+table, err)
	}
	if indexed {
		return nil
	}
	// An index build reads the whole table: Exec, so that ctx interrupts it.
	if _, err := db.ExecContext(ctx, fmt.Sprintf("CREATE INDEX %s ON %s (%s)", name, table, strings.Join(cols, ", "))); err != nil {
		return invalid("index "+table, err)
	}
	return nil
}

// checkTilePlan refuses a file whose tile read would scan (a partial index, misleading
// sqlite_stat tables): each tile read must be an index lookup.
func checkTilePlan(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+tileQuery, 0, 0, 0, 0)
	if err != nil {
		return invalid("plan a tile read", err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	vals := make([]any, len(cols))
	for i := range vals {
		vals[i] = new(any)
	}
	for rows.Next() {
		if err := rows.Scan(vals...); err != nil {
			return invalid("plan a tile read", err)
		}
		detail := fmt.Sprint(*(vals[len(vals)-1].(*any)))
		if strings.HasPrefix(detail, "SCAN ") {
			return fmt.Errorf("%w: reading a tile scans %s; index its zoom_level, tile_column and tile_row",
				ErrInvalid, strings.TrimPrefix(detail, "SCAN "))
		}
	}
	return rows.Err()
}

// hasIndex reports whether an index of table starts with cols in any order (equality lookups
// on all of them then use it). Partial indexes do not count.
func hasIndex(ctx context.Context, db *sql.DB, table string, cols []string) (bool, error) {
	rows, err := db.QueryContext(ctx, "SELECT name FROM pragma_index_list(?) WHERE partial = 0", table)
	if err != nil {
		return false, err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return false, err
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, err
	}
	for _, n := range names {
		ok, err := indexCovers(ctx, db, n, cols)
		if err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

func indexCovers(ctx context.Context, db *sql.DB, index string, cols []string) (bool, error) {
	rows, err := db.QueryContext(ctx, "SELECT lower(name) FROM pragma_index_info(?) ORDER BY seqno LIMIT ?", index, len(cols))
	if err != nil {
		return false, err
	}
	defer rows.Close()
	seen := map[string]bool{}
	for rows.Next() {
		var c sql.NullString
		if err := rows.Scan(&c); err != nil {
			return false, err
		}
		seen[c.String] = true
	}
	if err := rows.Err(); err != nil {
		return false, err
	}
	for _, c := range cols {
		if !seen[c] {
			return false, nil
		}
	}
	return true, nil
}

// RemoveFile removes an MBTiles file with the files SQLite may have left beside it (a rollback
// journal, a WAL and its index), ignoring those that do not exist.
func RemoveFile(path string) {
	for _, suffix := range []string{"", "-journal", "-wal", "-shm"} {
		_ = os.Remove(path + suffix)
	}
}
