package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/google/uuid"

	"github.com/tilegate/tilegate/blobstore"
	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/mbtiles"
	"github.com/tilegate/tilegate/pmtiles"
	"github.com/tilegate/tilegate/store"
	"github.com/tilegate/tilegate/tilestore"
)

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
	// 2. a place among the uploads in progress (Config.MaxConcurrentUploads)
	select {
	case s.uploads <- struct{}{}:
		defer func() { <-s.uploads }()
	default:
		return nil, uploadsBusy(cap(s.uploads))
	}
	// 3. the body, to a temporary file
	up, err := s.receiveUpload(ctx, req)
	if err != nil {
		return nil, err
	}
	defer up.cleanup()
	// 4. the file's checks, under a time budget by size (mbtiles.Inspect, and tilegate's own
	// limits on what it brings in)
	up.startChecks(ctx)
	defer up.cancelChecks()
	md, layout, layers, err := s.checkUpload(up, a)
	if err != nil {
		return nil, err
	}
	// 5. ready for serving (mbtiles.Prepare), synced, and published under a name of its own
	name, err := s.publishUpload(up, layout)
	if err != nil {
		return nil, err
	}
	// 6. the dataset takes the file; the previous one retires
	return s.commitUpload(up, a, md, layers, name)
}

// upload is one upload in progress: the temporary file, and where it stands.
type upload struct {
	ctx     context.Context // the request's: it ends when the client hangs up
	dataset uuid.UUID
	file    *tilestore.Upload // the temporary file, then the published one
	size    int64

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
	if a.Dataset.UpstreamURL != nil {
		return a, fail(http.StatusConflict, "This dataset's tiles come from its upstream; set upstream to null before uploading a file")
	}
	r := requestFrom(ctx)
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/octet-stream" {
		return a, invalid([]any{"header", "Content-Type"}, nullIfEmpty(r.Header.Get("Content-Type")),
			"send the MBTiles or PMTiles file as application/octet-stream")
	}
	if r.ContentLength > s.cfg.MaxUpload {
		return a, tooLarge(s.cfg.MaxUpload)
	}
	return a, nil
}

// receiveUpload streams the body to a temporary file in the data directory, at most MaxUpload
// bytes. The caller must call cleanup on the upload returned.
func (s *Server) receiveUpload(ctx context.Context, req gen.UploadTilesRequestObject) (*upload, error) {
	file, err := s.tilestore.NewUpload(req.DatasetId)
	if err != nil {
		return nil, err
	}
	up := &upload{ctx: ctx, dataset: req.DatasetId, file: file, cancelChecks: func() {}}
	tmp := file.File

	var sink io.Writer = tmp
	if s.uploadWriter != nil {
		sink = s.uploadWriter(tmp)
	}
	n, err := io.Copy(sink, io.LimitReader(req.Body, s.cfg.MaxUpload+1))
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
// lets the upload's lock go.
func (up *upload) cleanup() { up.file.Cleanup() }

// startChecks sets the time budget of the checks. ctx ends when the client hangs up (net/http
// watches the connection once the body is read): every scan then stops, and cleanup removes
// the file. The budget by size is well above what an honest file needs: SQL a file carries
// (index expressions, CHECK constraints) runs during the integrity check.
func (up *upload) startChecks(ctx context.Context) {
	up.budget = checkBudget(up.size)
	up.checkCtx, up.cancelChecks = context.WithTimeout(ctx, up.budget)
}

// checkUpload inspects the file (inspectUpload: a valid MBTiles file or PMTiles archive, within
// the upload rules) and holds what it brings in to the dataset's kind, the served formats and
// the API's limits. It returns the metadata, the tile layout (MBTiles) and the vector layers
// (nil for none).
func (s *Server) checkUpload(up *upload, a store.DatasetAccess) (*mbtiles.Metadata, mbtiles.Layout, store.JSON, error) {
	md, layout, err := s.inspectUpload(up)
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
			return nil, 0, nil, invalid(layersLoc(md), nil, err.Error())
		}
		if int64(len(layers)) > s.cfg.BodyLimit {
			return nil, 0, nil, invalid(layersLoc(md), nil, fmt.Sprintf(
				"the vector layers are %d bytes of JSON; the API accepts at most %d", len(layers), s.cfg.BodyLimit))
		}
	}
	return md, layout, layers, nil
}

// inspectUpload checks the file as what its content says it is (tilestore.DetectKind, never
// its name): a PMTiles archive (pmtiles.Inspect) or else an MBTiles file (mbtiles.Inspect),
// under the same limits; both describe themselves alike.
func (s *Server) inspectUpload(up *upload) (*mbtiles.Metadata, mbtiles.Layout, error) {
	kind, err := up.file.Detect()
	if err != nil {
		return nil, 0, err
	}
	lim := mbtiles.Limits{MaxTileBytes: s.cfg.MaxTileBytes}
	if kind == tilestore.PMTiles {
		f, err := pmtiles.OpenFile(up.file.Path)
		if err != nil {
			return nil, 0, err
		}
		defer f.Close()
		md, _, err := pmtiles.Inspect(up.checkCtx, f, lim)
		return md, 0, err
	}
	return mbtiles.Inspect(up.checkCtx, up.file.Path, lim)
}

// layersLoc is where the file keeps its vector layers, as a 422's loc.
func layersLoc(md *mbtiles.Metadata) []any {
	if md.VectorLayersLoc == nil {
		return []any{"body", "metadata", "json", "vector_layers"}
	}
	return append([]any{"body"}, md.VectorLayersLoc...)
}

// publishUpload readies the file for serving (mbtiles.Prepare) and publishes it under a name
// of its own (tilestore: in the data directory, or streamed to the bucket under the request's
// context and a deadline by size), and returns that name. A bucket that cannot be written is a
// 503 with Retry-After; nothing is visible and the previous tiles keep serving.
func (s *Server) publishUpload(up *upload, layout mbtiles.Layout) (string, error) {
	if up.file.Kind == tilestore.MBTiles { // a PMTiles archive is served as uploaded
		if err := mbtiles.Prepare(up.checkCtx, up.file.Path, layout); err != nil {
			return "", s.uploadError(up, err)
		}
	}
	name, err := up.file.Publish(up.ctx)
	switch {
	case err == nil:
		return name, nil
	case up.ctx.Err() != nil:
		s.log.Info("upload abandoned by the client", "dataset", up.dataset, "err", err)
		return "", invalid([]any{"body"}, nil, "the client went away")
	case errors.Is(err, blobstore.ErrUnavailable):
		s.log.Error("upload not stored: the bucket cannot be written", "dataset", up.dataset, "err", err)
		return "", &failure{status: http.StatusServiceUnavailable, retryAfter: 30,
			detail: "The tile storage (bucket) cannot be written right now; the file was not stored; retry later"}
	}
	return "", err
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
	if err != nil {
		return s.commitFailed(up, name, md, err)
	}
	up.file.Keep() // the dataset's now (the store's change evicted the cache entry)
	if old != nil && *old != name {
		s.tilestore.Retire(*old)
	}
	s.log.Info("tiles uploaded", "dataset", up.dataset, "file", name, "bytes", up.size, "format", md.Format)
	return gen.UploadTiles200JSONResponse(s.datasetOut(d)), nil
}

// commitFailed answers an upload whose transaction failed. A refusal (the change's own 422, a
// dataset deleted meanwhile) left the dataset as it was, and cleanup removes the published
// file. Any other failure may have met the COMMIT itself: when its reply is lost the
// transaction may have committed, and the dataset may name the file now. Such a file is never
// removed here: the dataset is read again, and when it names the file the upload succeeded;
// otherwise the file is left to the sweep, which removes it once no dataset references it
// (tilestore). The previous file is left to the sweep too.
func (s *Server) commitFailed(up *upload, name string, md *mbtiles.Metadata, err error) (gen.UploadTilesResponseObject, error) {
	var f *failure
	var vf *validationFailure
	switch {
	case isNotFound(err):
		return nil, notFound()
	case errors.As(err, &f), errors.As(err, &vf):
		return nil, err
	}
	up.file.Keep()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(up.ctx), s.cfg.DBTimeout)
	defer cancel()
	a, status, rerr := s.ownedDataset(ctx, up.dataset)
	if rerr == nil && status == 0 && a.TileFile != nil && *a.TileFile == name {
		s.log.Warn("upload committed though its commit failed", "dataset", up.dataset, "file", name, "err", err)
		s.log.Info("tiles uploaded", "dataset", up.dataset, "file", name, "bytes", up.size, "format", md.Format)
		return gen.UploadTiles200JSONResponse(s.datasetOut(a.Dataset)), nil
	}
	s.log.Warn("upload's commit failed; its file is left to the sweep", "dataset", up.dataset, "file", name, "err", err, "reread_err", rerr)
	return nil, err
}

// servedFormats are the tile formats the tile endpoint declares (openapi.yaml).
var servedFormats = map[string]bool{"pbf": true, "png": true, "jpg": true, "webp": true}

func tooLarge(limit int64) error {
	return fail(http.StatusRequestEntityTooLarge, fmt.Sprintf("The tile file is larger than the %d bytes this server accepts", limit))
}

// uploadsBusy answers an upload beyond Config.MaxConcurrentUploads: the body is not read.
func uploadsBusy(n int) error {
	return &failure{status: http.StatusServiceUnavailable, retryAfter: 5,
		detail: fmt.Sprintf("This server is receiving %d uploads already, its most at once; retry after Retry-After seconds", n)}
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
	var pfe *pmtiles.FieldError
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
	case errors.As(err, &pfe):
		return invalid(append([]any{"body"}, pfe.Loc...), nil, pfe.Msg)
	case errors.Is(err, mbtiles.ErrInvalid):
		return invalid([]any{"body"}, nil, invalidReason(err, mbtiles.ErrInvalid))
	case errors.Is(err, pmtiles.ErrInvalid):
		return invalid([]any{"body"}, nil, invalidReason(err, pmtiles.ErrInvalid))
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
		if err := checkAttribution([]any{"body", "metadata", "attribution"}, &md.Attribution); err != nil {
			return err
		}
	}
	if md.VectorLayers != nil {
		var v any
		if err := json.Unmarshal(md.VectorLayers, &v); err != nil {
			return invalid(layersLoc(md), nil, err.Error())
		}
		if err := props["vector_layers"].Value.VisitJSON(v); err != nil {
			loc := layersLoc(md)
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

// invalidReason is the client's part of an error wrapping sentinel (mbtiles.ErrInvalid,
// pmtiles.ErrInvalid), without server paths.
func invalidReason(err, sentinel error) string {
	msg := err.Error()
	if i := strings.Index(msg, sentinel.Error()); i >= 0 {
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

// extendUploadDeadline lets an upload take longer than the server's read and write timeouts
// (sized for API calls): an hour for the whole body and the answer.
func extendUploadDeadline(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(time.Hour))
	_ = rc.SetWriteDeadline(time.Now().Add(time.Hour))
}
