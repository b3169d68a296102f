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
//
// Each step that stops the request returns an error the error handler answers; the steps run in this order.
func (s *Server) UploadTiles(ctx context.Context, req gen.UploadTilesRequestObject) (gen.UploadTilesResponseObject, error) {
	// 1. the dataset (its owner only) and the request's form
	a, err := s.uploadTarget(ctx, req)
	if err != nil {
		return nil, err
	}
	// 2. the body, to a temporary file
	up, err := s.receiveUpload(ctx, req)
	if err != nil {
		return nil, err
	}
	defer up.cleanup()
	// 3. the file's checks, under a time budget by size (mbtiles.Inspect, and tilegate's own
	// limits on what it brings in)
	up.startChecks(ctx)
	defer up.cancelChecks()
	md, layout, layers, err := s.checkUpload(up, a)
	if err != nil {
		return nil, err
	}
	// 4. ready for serving (mbtiles.Prepare), synced, and published under a name of its own
	name, err := s.publishUpload(up, layout)
	if err != nil {
		return nil, err
	}
	// 5. the dataset takes the file; the previous one retires
	return s.commitUpload(up, a, md, layers, name)
}

// upload is one upload in progress: the temporary file, and where it stands.
type upload struct {
	ctx     context.Context // the request's: it ends when the client hangs up
	dataset uuid.UUID
	tmpPath string
	lock    *os.File // held open (and locked) while the upload is live, for sweeps (tileFiles)
	size    int64
	// published is the final file while the dataset does not have it yet (removed on cleanup).
	published string

	// checkCtx bounds the checks and preparation: budget by size, and ctx.
	checkCtx     context.Context
	cancelChecks context.CancelFunc
	budget       time.Duration
}

// uploadTarget finds the dataset (its owner only: 404/403) and checks the request's form.
func (s *Server) uploadTarget(ctx context.Context, req gen.UploadTilesRequestObject) (store.DatasetAccess, error) {
	// The route is outside dbDeadline (its body streams for minutes), so each database call
	// takes its own DBTimeout.
	dbCtx, cancel := context.WithTimeout(ctx, s.cfg.DBTimeout)
	a, status, err := s.ownedDataset(dbCtx, req.DatasetId)
	cancel()
	if err != nil {
		return a, err
	}
	switch status {
	case 404:
		return a, notFound()
	case 403:
		return a, forbiddenOwner()
	}
	r := requestFrom(ctx)
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/octet-stream" {
		return a, invalid([]any{"header", "Content-Type"}, nullIfEmpty(r.Header.Get("Content-Type")),
			"send the MBTiles file as application/octet-stream")
	}
	if r.ContentLength > s.cfg.MaxUpload {
		return a, tooLarge(s.cfg.MaxUpload)
	}
	return a, nil
}

// receiveUpload streams the body to a temporary file in the data directory, at most MaxUpload
// bytes. The caller must call cleanup on the upload returned.
func (s *Server) receiveUpload(ctx context.Context, req gen.UploadTilesRequestObject) (*upload, error) {
	if err := os.MkdirAll(s.cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	tmp, err := os.CreateTemp(s.cfg.DataDir, uploadPrefix+req.DatasetId.String()+"-*.mbtiles")
	if err != nil {
		return nil, fmt.Errorf("create upload file: %w", err)
	}
	up := &upload{ctx: ctx, dataset: req.DatasetId, tmpPath: tmp.Name(), cancelChecks: func() {}}
	// The lock marks the upload live for sweeps (tileFiles) until it has cleaned up.
	if up.lock, err = os.Open(up.tmpPath); err != nil {
		_ = tmp.Close()
		mbtiles.RemoveFile(up.tmpPath)
		return nil, fmt.Errorf("open upload file: %w", err)
	}
	if err := lockUpload(up.lock); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		s.log.Warn("lock upload file", "file", up.tmpPath, "err", err)
	}

	n, err := io.Copy(tmp, io.LimitReader(req.Body, s.cfg.MaxUpload+1))
	if cerr := tmp.Close(); err == nil && cerr != nil {
		err = cerr
	}
	up.size = n
	switch {
	case n > s.cfg.MaxUpload:
		up.cleanup()
		return nil, tooLarge(s.cfg.MaxUpload)
	case err != nil:
		up.cleanup()
		if ctx.Err() != nil || isBodyReadError(err) {
			s.log.Info("upload interrupted", "dataset", req.DatasetId, "bytes", n, "err", err)
			return nil, invalid([]any{"body"}, nil, "the request body could not be read to its end")
		}
		return nil, fmt.Errorf("write upload: %w", err)
	}
	return up, nil
}

// cleanup removes the temporary file (and a published file the dataset did not take) and
// lets the lock go.
func (up *upload) cleanup() {
	mbtiles.RemoveFile(up.tmpPath)
	if up.published != "" {
		_ = os.Remove(up.published)
	}
	_ = up.lock.Close()
}

// startChecks sets the time budget of the checks. ctx ends when the client hangs up (net/http
// watches the connection once the body is read): every scan then stops, and cleanup removes
// the file. The budget by size is well above what an honest file needs: SQL a file carries
// (index expressions, CHECK constraints) runs during the integrity check.
func (up *upload) startChecks(ctx context.Context) {
	up.budget = checkBudget(up.size)
	up.checkCtx, up.cancelChecks = context.WithTimeout(ctx, up.budget)
}

// checkUpload inspects the file (mbtiles.Inspect: a valid MBTiles file, within the upload
// rules) and holds what it brings in to the dataset's kind, the served formats and the API's
// limits. It returns the metadata, the tile layout and the vector layers (nil for none).
func (s *Server) checkUpload(up *upload, a store.DatasetAccess) (*mbtiles.Metadata, mbtiles.Layout, store.JSON, error) {
	md, layout, err := mbtiles.Inspect(up.checkCtx, up.tmpPath, mbtiles.Limits{MaxTileBytes: s.cfg.MaxTileBytes})
	if err != nil {
		return nil, 0, nil, s.uploadError(up, err)
	}
	if md.Kind != a.Kind {
		return nil, 0, nil, invalid([]any{"body"}, nil, fmt.Sprintf("the file holds %s tiles (%s) but the dataset is %s", md.Kind, md.Format, a.Kind))
	}
	if !servedFormats[md.Format] {
		return nil, 0, nil, invalid([]any{"body"}, nil, fmt.Sprintf("tile format %s is not served; use pbf, png, jpg or webp", md.Format))
	}
	if err := s.checkUploadLimits(md); err != nil {
		return nil, 0, nil, err
	}
	var layers store.JSON
	if md.Kind == "vector" && md.VectorLayers != nil {
		if layers, err = vectorLayers(md.VectorLayers); err != nil {
			return nil, 0, nil, invalid([]any{"body", "metadata", "json", "vector_layers"}, nil, err.Error())
		}
		if int64(len(layers)) > s.cfg.BodyLimit {
			return nil, 0, nil, invalid([]any{"body", "metadata", "json", "vector_layers"}, nil, fmt.Sprintf(
				"the vector layers are %d bytes of JSON; the API accepts at most %d", len(layers), s.cfg.BodyLimit))
		}
	}
	return md, layout, layers, nil
}

// publishUpload readies the file for serving (mbtiles.Prepare), syncs it and renames it to a
// name of its own in the data directory, and returns that name.
func (s *Server) publishUpload(up *upload, layout mbtiles.Layout) (string, error) {
	if err := mbtiles.Prepare(up.checkCtx, up.tmpPath, layout); err != nil {
		return "", s.uploadError(up, err)
	}
	if err := syncFile(up.tmpPath); err != nil {
		return "", err
	}
	name, err := tileFileName(up.dataset)
	if err != nil {
		return "", err
	}
	final := filepath.Join(s.cfg.DataDir, name)
	if err := os.Rename(up.tmpPath, final); err != nil {
		return "", fmt.Errorf("publish upload: %w", err)
	}
	up.published = final
	if err := syncFile(s.cfg.DataDir); err != nil {
		return "", err
	}
	return name, nil
}

// commitUpload gives the dataset the published file and its metadata in one transaction, then
// retires the previous file (removed after ReplacedTilesGrace).
func (s *Server) commitUpload(up *upload, a store.DatasetAccess, md *mbtiles.Metadata, layers store.JSON, name string) (gen.UploadTilesResponseObject, error) {
	dbCtx, cancel := context.WithTimeout(up.ctx, s.cfg.DBTimeout)
	defer cancel()
	d, old, err := s.store.ReplaceTiles(dbCtx, a.AccountID, up.dataset, func(d *store.Dataset) error {
		if d.Kind != md.Kind { // kind never changes, but the row is what counts
			return invalid([]any{"body"}, nil, fmt.Sprintf("the file holds %s tiles but the dataset is %s", md.Kind, d.Kind))
		}
		applyMetadata(d, md, layers)
		d.TileFile = &name
		return nil
	})
	if isNotFound(err) {
		return nil, notFound()
	}
	if err != nil {
		return nil, err
	}
	up.published = "" // the dataset's now: keep it (the store's change evicted the cache entry)
	if old != nil && *old != name {
		s.retired.retire(filepath.Join(s.cfg.DataDir, *old))
	}
	s.log.Info("tiles uploaded", "dataset", up.dataset, "file", name, "bytes", up.size, "format", md.Format)
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

func tooLarge(limit int64) error {
	return fail(http.StatusRequestEntityTooLarge, fmt.Sprintf("The MBTiles file is larger than the %d bytes this server accepts", limit))
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
func (s *Server) uploadError(up *upload, err error) error {
	var fe *mbtiles.FieldError
	switch {
	case up.ctx.Err() != nil:
		s.log.Info("upload abandoned by the client", "dataset", up.dataset, "err", err)
		return invalid([]any{"body"}, nil, "the client went away")
	case up.checkCtx.Err() != nil:
		s.log.Warn("upload refused: checking the file took too long", "dataset", up.dataset, "budget", up.budget)
		return invalid([]any{"body"}, nil, fmt.Sprintf(
			"checking the file took longer than the %s allowed for its size; it may only hold plain tables and indexes", up.budget))
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

// extendUploadDeadline lets an upload take longer than the server's read and write timeouts
// (sized for API calls): an hour for the whole body and the answer.
func extendUploadDeadline(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(time.Hour))
	_ = rc.SetWriteDeadline(time.Now().Add(time.Hour))
}
