package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/store"
	"github.com/tilegate/tilegate/tiletoken"
)

const signingKeySetting = "tile_signing_keys"

// SigningKeys returns the configured tile signing keys ("id:hex,id:hex"; the first signs), or,
// when none are configured, a generated key kept in the database so restarts and replicas agree.
func SigningKeys(ctx context.Context, st *store.Store, configured string) ([]tiletoken.Key, error) {
	if configured != "" {
		keys, err := tiletoken.ParseKeys(configured)
		if err != nil {
			return nil, fmt.Errorf("TILEGATE_SIGNING_KEYS: %w", err)
		}
		return keys, nil
	}
	fresh, err := tiletoken.GenerateKey("db1")
	if err != nil {
		return nil, err
	}
	stored, err := st.GetOrCreateSetting(ctx, signingKeySetting, tiletoken.EncodeKeys([]tiletoken.Key{fresh}))
	if err != nil {
		return nil, err
	}
	slog.Warn("TILEGATE_SIGNING_KEYS is not set: tile tokens are signed with a key generated and stored in the database; set your own keys in production")
	keys, err := tiletoken.ParseKeys(stored)
	if err != nil {
		return nil, fmt.Errorf("stored signing key: %w", err)
	}
	return keys, nil
}

func (s *Server) GetTileToken(ctx context.Context, req gen.GetTileTokenRequestObject) (gen.GetTileTokenResponseObject, error) {
	c := callerOf(ctx)
	a, err := s.store.DatasetAccessOne(ctx, c, req.DatasetId)
	switch {
	case err != nil && !isNotFound(err):
		return nil, err
	case err != nil || !a.Sees(c):
		return gen.GetTileToken404JSONResponse{NotFoundJSONResponse: notFound()}, nil
	case !a.MayUse(c):
		return gen.GetTileToken403JSONResponse{ForbiddenJSONResponse: gen.ForbiddenJSONResponse{Detail: notUsable}}, nil
	}
	exp, expiresIn := s.signer.Expiry()
	var out gen.TileToken
	if a.Kind == "raster" {
		err = out.FromRasterTileToken(s.rasterToken(a.Dataset, exp, expiresIn))
	} else {
		err = out.FromVectorTileToken(s.vectorToken(a.Dataset, exp, expiresIn))
	}
	if err != nil {
		return nil, err
	}
	return gen.GetTileToken200JSONResponse(out), nil
}

const notUsable = "Not allowed to use this dataset"

func (s *Server) GetTileTokensBatch(ctx context.Context, req gen.GetTileTokensBatchRequestObject) (gen.GetTileTokensBatchResponseObject, error) {
	c := callerOf(ctx)
	ids := distinct(req.Body.DatasetIds)
	access, err := s.store.DatasetsAccess(ctx, c, ids)
	if err != nil {
		return nil, err
	}
	// One exp for the whole batch: every token of a window is byte-identical anyway.
	exp, expiresIn := s.signer.Expiry()
	out := batchResponse{ids: ids, entries: make([]any, len(ids))}
	for i, id := range ids {
		a, ok := access[id]
		switch {
		case !ok || !a.Sees(c):
			out.entries[i] = gen.TileTokenError{Error: datasetNotFound, Status: 404}
		case !a.MayUse(c):
			out.entries[i] = gen.TileTokenError{Error: notUsable, Status: 403}
		case a.Kind == "raster":
			out.entries[i] = s.rasterToken(a.Dataset, exp, expiresIn)
		default:
			out.entries[i] = s.vectorToken(a.Dataset, exp, expiresIn)
		}
	}
	return out, nil
}

// batchResponse writes {"tokens": {...}} with the datasets in first-seen order (a Go map would
// sort them), each entry a VectorTileToken, a RasterTileToken or a TileTokenError.
type batchResponse struct {
	ids     []uuid.UUID
	entries []any
}

func (b batchResponse) VisitGetTileTokensBatchResponse(w http.ResponseWriter) error {
	buf := bytes.NewBufferString(`{"tokens":{`)
	for i, id := range b.ids {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(`"` + id.String() + `":`)
		entry, err := json.Marshal(b.entries[i])
		if err != nil {
			return fmt.Errorf("encode token of %s: %w", id, err)
		}
		buf.Write(entry)
	}
	buf.WriteString("}}\n")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(buf.Bytes())
	return err
}

// distinct drops repeated ids, keeping the first-seen order.
func distinct(ids []uuid.UUID) []uuid.UUID {
	seen := make(map[uuid.UUID]bool, len(ids))
	out := ids[:0:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// signed computes a dataset's scope and signature for exp, and its signed tile URL template.
func (s *Server) signed(d store.Dataset, exp int64) (scope, sig, template string) {
	scope = tiletoken.Scope(d.AccountID.String(), d.ID.String(), d.AccessVersion)
	sig = s.signer.SignAt(scope, exp)
	template = s.cfg.PublicURL + "/api/tiles/" + d.ID.String() + "/{z}/{x}/{y}." + d.Format +
		"?sig=" + sig + "&exp=" + strconv.FormatInt(exp, 10) + "&scope=" + url.QueryEscape(scope)
	return scope, sig, template
}

func (s *Server) vectorToken(d store.Dataset, exp int64, expiresIn int) gen.VectorTileToken {
	scope, sig, tmpl := s.signed(d, exp)
	layers := []gen.VectorLayer{}
	if v, err := nullableJSON[[]gen.VectorLayer](d.VectorLayers).Get(); err == nil && v != nil {
		layers = v
	}
	return gen.VectorTileToken{
		Kind: gen.VectorTileTokenKindVector, DatasetId: d.ID, Sig: sig, Exp: exp, Scope: scope, ExpiresIn: expiresIn,
		Tiles: []string{tmpl}, Minzoom: d.MinZoom, Maxzoom: d.MaxZoom,
		Bounds: nullableJSON[gen.Bounds](d.Bounds), VectorLayers: layers, Attribution: nullableOf(d.Attribution),
	}
}

func (s *Server) rasterToken(d store.Dataset, exp int64, expiresIn int) gen.RasterTileToken {
	scope, sig, tmpl := s.signed(d, exp)
	size := 256
	if d.TileSize != nil {
		size = *d.TileSize
	}
	return gen.RasterTileToken{
		Kind: gen.RasterTileTokenKindRaster, DatasetId: d.ID, TileUrl: tmpl, Sig: sig, Exp: exp, Scope: scope, ExpiresIn: expiresIn,
		Bounds: nullableJSON[gen.Bounds](d.Bounds), Minzoom: d.MinZoom, Maxzoom: d.MaxZoom, TileSize: size,
		Format: d.Format, Tiles: []string{tmpl}, Attribution: nullableOf(d.Attribution),
	}
}
