package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
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
	// The route is outside dbDeadline (its body streams for minutes), so each database call
	// takes its own DBTimeout.
	dbCtx, cancel := context.WithTimeout(ctx, s.cfg.DBTimeout)
	a, status, err := s.ownedDataset(dbCtx, req.DatasetId)
	cancel()
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
	// The lock marks the upload live for sweeps (tileFiles) until it has cleaned up.
	lock, err := os.Open(tmpPath)
	if err != nil {
		_ = tmp.Close()
		removeSQLiteFiles(tmpPath)
		return nil, fmt.Errorf("open upload file: %w", err)
	}
	if err := lockUpload(lock); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		s.log.Warn("lock upload file", "file", tmpPath, "err", err)
	}
	defer func() {
		_ = tmp.Close()
		removeSQLiteFiles(tmpPath)
		if published != "" {
			_ = os.Remove(published)
		}
		_ = lock.Close()
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

	// ctx ends when the client hangs up (net/http watches the connection once the body is
	// read): every scan below then stops, and the deferred cleanup removes the file. The checks
	// also have a time budget by size, well above what an honest file needs: SQL a file carries
	// (index expressions, CHECK constraints) runs during the integrity check.
	budget := checkBudget(n)
	checkCtx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	md, layout, err := mbtiles.Inspect(checkCtx, tmpPath, mbtiles.Limits{MaxTileBytes: s.cfg.MaxTileBytes})
	if err != nil {
		return nil, s.uploadError(ctx, checkCtx, budget, req, err)
	}
	if md.Kind != a.Kind {
		return nil, invalid([]any{"body"}, nil, fmt.Sprintf("the file holds %s tiles (%s) but the dataset is %s", md.Kind, md.Format, a.Kind))
	}
	if !servedFormats[md.Format] {
		return nil, invalid([]any{"body"}, nil, fmt.Sprintf("tile format %s is not served; use pbf, png, jpg or webp", md.Format))
	}
	if err := s.checkUploadLimits(md); err != nil {
		return nil, err
	}
	var layers store.JSON
	if md.Kind == "vector" && md.VectorLayers != nil {
		if layers, err = vectorLayers(md.VectorLayers); err != nil {
			return nil, invalid([]any{"body", "metadata", "json", "vector_layers"}, nil, err.Error())
		}
		if int64(len(layers)) > s.cfg.BodyLimit {
			return nil, invalid([]any{"body", "metadata", "json", "vector_layers"}, nil, fmt.Sprintf(
				"the vector layers are %d bytes of JSON; the API accepts at most %d", len(layers), s.cfg.BodyLimit))
		}
	}
	if err := mbtiles.Prepare(checkCtx, tmpPath, layout); err != nil {
		return nil, s.uploadError(ctx, checkCtx, budget, req, err)
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

	dbCtx, cancel = context.WithTimeout(ctx, s.cfg.DBTimeout)
	defer cancel()
	d, old, err := s.store.ReplaceTiles(dbCtx, a.AccountID, req.DatasetId, func(d *store.Dataset) error {
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

// uploadError maps a failure to inspect or prepare the file: a problem with the file is a 422
// (at the value it names, when it names one); a client that hung up gets nothing (the answer
// goes nowhere); the rest is the server's.
func (s *Server) uploadError(ctx, checkCtx context.Context, budget time.Duration, req gen.UploadTilesRequestObject, err error) error {
	var fe *mbtiles.FieldError
	switch {
	case ctx.Err() != nil:
		s.log.Info("upload abandoned by the client", "dataset", req.DatasetId, "err", err)
		return invalid([]any{"body"}, nil, "the client went away")
	case checkCtx.Err() != nil:
		s.log.Warn("upload refused: checking the file took too long", "dataset", req.DatasetId, "budget", budget)
		return invalid([]any{"body"}, nil, fmt.Sprintf(
			"checking the file took longer than the %s allowed for its size; it may only hold plain tables and indexes", budget))
	case errors.As(err, &fe):
		return invalid(append([]any{"body"}, fe.Loc...), nil, fe.Msg)
	case errors.Is(err, mbtiles.ErrInvalid):
		return invalid([]any{"body"}, nil, invalidReason(err))
	}
	return err
}

// checkBudget is the time the checks of an n-byte upload may take: 30 s plus 30 s per GiB,
// some 20 times what an honest file needs (BenchmarkUploadChecks: about 1.3 s per GB).
func checkBudget(n int64) time.Duration {
	return 30*time.Second + time.Duration(float64(n)/(1<<30)*float64(30*time.Second))
}

// checkUploadLimits holds what the file brings in to the limits the API sets on the same
// fields (DatasetCreate in openapi.yaml, read from the spec so the two cannot drift): a file
// over them is refused, never clipped — an attribution is a licence obligation, and a clipped
// layer list would silently break styles.
func (s *Server) checkUploadLimits(md *mbtiles.Metadata) error {
	props := s.spec.Components.Schemas["DatasetCreate"].Value.Properties
	if md.Attribution != "" {
		if err := props["attribution"].Value.VisitJSON(md.Attribution); err != nil {
			return invalid([]any{"body", "metadata", "attribution"}, nil, schemaReason(err))
		}
	}
	if md.VectorLayers != nil {
		var v any
		if err := json.Unmarshal(md.VectorLayers, &v); err != nil {
			return invalid([]any{"body", "metadata", "json", "vector_layers"}, nil, err.Error())
		}
		if err := props["vector_layers"].Value.VisitJSON(v); err != nil {
			loc := []any{"body", "metadata", "json", "vector_layers"}
			var se *openapi3.SchemaError
			if errors.As(err, &se) {
				for _, p := range se.JSONPointer() {
					if i, err := strconv.Atoi(p); err == nil {
						loc = append(loc, i)
					} else {
						loc = append(loc, p)
					}
				}
			}
			return invalid(loc, nil, schemaReason(err))
		}
	}
	return nil
}

// schemaReason is a schema error's reason without the value (which may be megabytes).
func schemaReason(err error) string {
	var se *openapi3.SchemaError
	if errors.As(err, &se) {
		return se.Reason + " (the API's rule for this field)"
	}
	return err.Error()
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

// extendUploadDeadline lets an upload take longer than the server's read and write timeouts
// (sized for API calls): an hour for the whole body and the answer.
func extendUploadDeadline(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(time.Hour))
	_ = rc.SetWriteDeadline(time.Now().Add(time.Hour))
}
