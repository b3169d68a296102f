package server

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/mbtiles"
	"github.com/tilegate/tilegate/store"
)

// uploadPrefix starts the name of every upload in progress in the data directory.
const uploadPrefix = ".upload-"

// UploadTiles replaces a dataset's MBTiles file. The body is streamed to a temporary file in the
// data directory (never held in memory), validated, given the tile index reads need, synced, and
// renamed to a name of its own; then the dataset row takes the file and its metadata in one
// transaction, and only after that commits is the previous file let go. Anything failing on the
// way — a bad file, a client that hangs up mid-body — leaves the previous tiles serving and no
// file behind.
func (s *Server) UploadTiles(ctx context.Context, req gen.UploadTilesRequestObject) (gen.UploadTilesResponseObject, error) {
	a, status, err := s.ownedDataset(ctx, req.DatasetId)
	if err != nil {
		return nil, err
	}
	switch status {
	case 404:
		return gen.UploadTiles404JSONResponse{NotFoundJSONResponse: notFound()}, nil
	case 403:
		return gen.UploadTiles403JSONResponse{ForbiddenJSONResponse: forbiddenOwner()}, nil
	}
	r := requestFrom(ctx)
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/octet-stream" {
		return nil, invalid([]any{"header", "Content-Type"}, nullIfEmpty(r.Header.Get("Content-Type")),
			"send the MBTiles file as application/octet-stream")
	}
	if r.ContentLength > s.cfg.MaxUpload {
		return tooLarge(s.cfg.MaxUpload), nil
	}

	if err := os.MkdirAll(s.cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	tmp, err := os.CreateTemp(s.cfg.DataDir, uploadPrefix+req.DatasetId.String()+"-*.mbtiles")
	if err != nil {
		return nil, fmt.Errorf("create upload file: %w", err)
	}
	tmpPath := tmp.Name()
	published := ""
	defer func() {
		_ = tmp.Close()
		removeSQLiteFiles(tmpPath)
		if published != "" {
			_ = os.Remove(published)
		}
	}()

	n, err := io.Copy(tmp, io.LimitReader(req.Body, s.cfg.MaxUpload+1))
	switch {
	case n > s.cfg.MaxUpload:
		return tooLarge(s.cfg.MaxUpload), nil
	case err != nil:
		if ctx.Err() != nil || isBodyReadError(err) {
			s.log.Info("upload interrupted", "dataset", req.DatasetId, "bytes", n, "err", err)
			return nil, invalid([]any{"body"}, nil, "the request body could not be read to its end")
		}
		return nil, fmt.Errorf("write upload: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("write upload: %w", err)
	}

	md, err := mbtiles.Inspect(ctx, tmpPath)
	if errors.Is(err, mbtiles.ErrInvalid) {
		return nil, invalid([]any{"body"}, nil, invalidReason(err))
	}
	if err != nil {
		return nil, err
	}
	if md.Kind != a.Kind {
		return nil, invalid([]any{"body"}, nil, fmt.Sprintf("the file holds %s tiles (%s) but the dataset is %s", md.Kind, md.Format, a.Kind))
	}
	if !servedFormats[md.Format] {
		return nil, invalid([]any{"body"}, nil, fmt.Sprintf("tile format %s is not served; use pbf, png, jpg or webp", md.Format))
	}
	var layers store.JSON
	if md.Kind == "vector" && md.VectorLayers != nil {
		if layers, err = vectorLayers(md.VectorLayers); err != nil {
			return nil, invalid([]any{"body"}, nil, err.Error())
		}
	}
	if err := prepareTiles(ctx, tmpPath); err != nil {
		if errors.Is(err, mbtiles.ErrInvalid) {
			return nil, invalid([]any{"body"}, nil, invalidReason(err))
		}
		return nil, err
	}
	if err := syncFile(tmpPath); err != nil {
		return nil, err
	}

	name, err := tileFileName(req.DatasetId)
	if err != nil {
		return nil, err
	}
	final := filepath.Join(s.cfg.DataDir, name)
	if err := os.Rename(tmpPath, final); err != nil {
		return nil, fmt.Errorf("publish upload: %w", err)
	}
	published = final
	if err := syncFile(s.cfg.DataDir); err != nil {
		return nil, err
	}

	d, old, err := s.store.ReplaceTiles(ctx, a.AccountID, req.DatasetId, func(d *store.Dataset) error {
		if d.Kind != md.Kind { // kind never changes, but the row is what counts
			return invalid([]any{"body"}, nil, fmt.Sprintf("the file holds %s tiles but the dataset is %s", md.Kind, d.Kind))
		}
		applyMetadata(d, md, layers)
		d.TileFile = &name
		return nil
	})
	if isNotFound(err) {
		return gen.UploadTiles404JSONResponse{NotFoundJSONResponse: notFound()}, nil
	}
	if err != nil {
		return nil, err
	}
	published = "" // the dataset's now: keep it (the store's change evicted the cache entry)
	if old != nil && *old != name {
		s.retired.retire(filepath.Join(s.cfg.DataDir, *old))
	}
	s.log.Info("tiles uploaded", "dataset", req.DatasetId, "file", name, "bytes", n, "format", md.Format)
	return gen.UploadTiles200JSONResponse(datasetOut(d)), nil
}

// retiredFiles removes replaced tile files after a grace period (Config.ReplacedTilesGrace), so
// reads in flight on them finish — here, and on replicas that have not heard of the upload yet
// (a reader that fails on a vanished file reads the dataset again) — or at once on close.
type retiredFiles struct {
	tiles *mbtiles.Pool
	log   *slog.Logger
	grace time.Duration
	mu    sync.Mutex
	timer map[string]*time.Timer // guarded by mu; nil once closed
}

func newRetiredFiles(tiles *mbtiles.Pool, log *slog.Logger, grace time.Duration) *retiredFiles {
	return &retiredFiles{tiles: tiles, log: log, grace: grace, timer: map[string]*time.Timer{}}
}

// retire stops new reads of path here at once and removes the file after the grace period.
func (r *retiredFiles) retire(path string) {
	r.tiles.Forget(path)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timer == nil || r.grace < 0 {
		r.remove(path)
		return
	}
	if _, ok := r.timer[path]; ok {
		return
	}
	r.timer[path] = time.AfterFunc(r.grace, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.timer != nil {
			delete(r.timer, path)
			r.remove(path)
		}
	})
}

// close removes every file still waiting.
func (r *retiredFiles) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for path, t := range r.timer {
		t.Stop()
		r.remove(path)
	}
	r.timer = nil
}

func (r *retiredFiles) remove(path string) {
	r.tiles.Forget(path) // a read may have reopened it meanwhile
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		r.log.Warn("remove replaced tiles", "file", path, "err", err)
	}
}

// servedFormats are the tile formats the tile endpoint declares (openapi.yaml).
var servedFormats = map[string]bool{"pbf": true, "png": true, "jpg": true, "webp": true}

func tooLarge(limit int64) gen.UploadTilesResponseObject {
	return gen.UploadTiles413JSONResponse{TooLargeJSONResponse: gen.TooLargeJSONResponse{
		Detail: fmt.Sprintf("The MBTiles file is larger than the %d bytes this server accepts", limit)}}
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// isBodyReadError tells a body that ended early (the client hung up) from a failure to write.
func isBodyReadError(err error) bool {
	var pe *os.PathError
	return !errors.As(err, &pe)
}

// invalidReason is the client's part of an mbtiles.ErrInvalid error, without server paths.
func invalidReason(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, mbtiles.ErrInvalid.Error()); i >= 0 {
		msg = msg[i:]
	}
	return msg
}

// vectorLayers checks the file's vector_layers against the VectorLayer schema and compacts them.
func vectorLayers(raw json.RawMessage) (store.JSON, error) {
	var layers []gen.VectorLayer
	if err := json.Unmarshal(raw, &layers); err != nil {
		return nil, fmt.Errorf("the file's vector_layers do not match the VectorLayer schema: %v", err)
	}
	for i, l := range layers {
		if l.Id == "" {
			return nil, fmt.Errorf("the file's vector_layers[%d] has no id", i)
		}
	}
	b, err := json.Marshal(layers)
	if err != nil {
		return nil, err
	}
	return store.JSON(b), nil
}

// applyMetadata takes what the file's metadata says; what it leaves out keeps its current value.
func applyMetadata(d *store.Dataset, md *mbtiles.Metadata, layers store.JSON) {
	d.Format = md.Format
	if md.MinZoom != nil {
		d.MinZoom = *md.MinZoom
	}
	if md.MaxZoom != nil {
		d.MaxZoom = *md.MaxZoom
	}
	if d.MinZoom > d.MaxZoom { // one of them came from the file, the other did not
		if md.MinZoom != nil {
			d.MaxZoom = d.MinZoom
		} else {
			d.MinZoom = d.MaxZoom
		}
	}
	if md.Bounds != nil {
		d.Bounds = mustJSON(md.Bounds[:])
	}
	if md.Center != nil {
		c := *md.Center
		c[2] = math.Round(c[2]) // datasets keep whole zooms (checkDataset)
		d.Center = mustJSON(c[:])
	}
	if md.Attribution != "" {
		attribution := md.Attribution
		d.Attribution = &attribution
	}
	if layers != nil {
		d.VectorLayers = layers
	}
}

// tileFileName is "<dataset>-<random>.mbtiles": unique per upload, so a new file never replaces
// one that open handles (here or on other replicas) still read, and ETags change with the file.
func tileFileName(id uuid.UUID) (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return id.String() + "-" + hex.EncodeToString(b) + ".mbtiles", nil
}

// prepareTiles readies an uploaded file for serving: rollback journal mode (tiles are opened
// read-only and immutable; a WAL-mode file would need its -wal and -shm), and an index on
// (zoom_level, tile_column, tile_row) when tiles is a table without one, so no tile read scans.
// A tiles view that cannot be read without a scan is refused (ErrInvalid).
func prepareTiles(ctx context.Context, path string) error {
	u := url.URL{Scheme: "file", Path: path, OmitHost: true, RawQuery: "mode=rw"}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, "PRAGMA journal_mode=DELETE"); err != nil {
		return fmt.Errorf("%w: set journal mode: %v", mbtiles.ErrInvalid, err)
	}
	var typ string
	if err := db.QueryRowContext(ctx, `SELECT type FROM sqlite_master WHERE lower(name) = 'tiles' AND type IN ('table', 'view')`).Scan(&typ); err != nil {
		return fmt.Errorf("%w: find tiles: %v", mbtiles.ErrInvalid, err)
	}
	if typ == "table" {
		indexed, err := hasTileIndex(ctx, db)
		if err != nil {
			return fmt.Errorf("%w: read the indexes of tiles: %v", mbtiles.ErrInvalid, err)
		}
		if !indexed {
			if _, err := db.ExecContext(ctx, "CREATE INDEX tilegate_tile_index ON tiles (zoom_level, tile_column, tile_row)"); err != nil {
				return fmt.Errorf("%w: index tiles: %v", mbtiles.ErrInvalid, err)
			}
		}
		return nil
	}
	rows, err := db.QueryContext(ctx, "EXPLAIN QUERY PLAN SELECT tile_data FROM tiles WHERE zoom_level = 0 AND tile_column = 0 AND tile_row = 0")
	if err != nil {
		return fmt.Errorf("%w: plan a tile read: %v", mbtiles.ErrInvalid, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	vals := make([]any, len(cols))
	for i := range vals {
		vals[i] = new(any)
	}
	for rows.Next() {
		if err := rows.Scan(vals...); err != nil {
			return fmt.Errorf("%w: plan a tile read: %v", mbtiles.ErrInvalid, err)
		}
		detail := fmt.Sprint(*(vals[len(vals)-1].(*any)))
		if strings.HasPrefix(detail, "SCAN ") {
			return fmt.Errorf("%w: reading a tile from the tiles view scans %s; index its zoom_level, tile_column and tile_row",
				mbtiles.ErrInvalid, strings.TrimPrefix(detail, "SCAN "))
		}
	}
	return rows.Err()
}

// hasTileIndex reports whether an index of tiles starts with zoom_level, tile_column and
// tile_row in any order (all three equality lookups then use it).
func hasTileIndex(ctx context.Context, db *sql.DB) (bool, error) {
	rows, err := db.QueryContext(ctx, "SELECT name FROM pragma_index_list('tiles')")
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
		cols, err := db.QueryContext(ctx, "SELECT lower(name) FROM pragma_index_info(?) ORDER BY seqno LIMIT 3", n)
		if err != nil {
			return false, err
		}
		seen := map[string]bool{}
		for cols.Next() {
			var c sql.NullString
			if err := cols.Scan(&c); err != nil {
				cols.Close()
				return false, err
			}
			seen[c.String] = true
		}
		cols.Close()
		if seen["zoom_level"] && seen["tile_column"] && seen["tile_row"] {
			return true, nil
		}
	}
	return false, nil
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}

func removeSQLiteFiles(path string) {
	for _, suffix := range []string{"", "-journal", "-wal", "-shm"} {
		_ = os.Remove(path + suffix)
	}
}

// sweepUploads removes uploads a crashed process left behind. Only old ones: replicas sharing
// the data directory may be receiving uploads right now.
func (s *Server) sweepUploads() {
	entries, err := os.ReadDir(s.cfg.DataDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), uploadPrefix) {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > 24*time.Hour {
			path := filepath.Join(s.cfg.DataDir, e.Name())
			if err := os.Remove(path); err == nil {
				s.log.Info("removed abandoned upload", "file", path)
			}
		}
	}
}

// extendUploadDeadline lets an upload take longer than the server's read and write timeouts
// (sized for API calls): an hour for the whole body and the answer.
func extendUploadDeadline(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(time.Hour))
	_ = rc.SetWriteDeadline(time.Now().Add(time.Hour))
}
