package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"

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

// usableDataset resolves a dataset for the caller's own use (a token, TileJSON): 404 when the
// caller does not see it, 403 when it sees it but may not use it.
func (s *Server) usableDataset(ctx context.Context, id uuid.UUID) (store.DatasetAccess, int, error) {
	c := callerOf(ctx)
	a, err := s.store.DatasetAccessOne(ctx, c, id)
	switch {
	case err != nil && !isNotFound(err):
		return a, 0, err
	case err != nil || !a.Sees(c):
		return a, http.StatusNotFound, nil
	case !a.MayUse(c):
		return a, http.StatusForbidden, nil
	}
	return a, 0, nil
}

func (s *Server) GetTileToken(ctx context.Context, req gen.GetTileTokenRequestObject) (gen.GetTileTokenResponseObject, error) {
	a, status, err := s.usableDataset(ctx, req.DatasetId)
	switch {
	case err != nil:
		return nil, err
	case status == http.StatusNotFound:
		return gen.GetTileToken404JSONResponse{NotFoundJSONResponse: notFound()}, nil
	case status == http.StatusForbidden:
		return gen.GetTileToken403JSONResponse{ForbiddenJSONResponse: gen.ForbiddenJSONResponse{Detail: notUsable}}, nil
	}
	exp, expiresIn := s.signer.Expiry()
	return tokenResponse{s.token(a.Dataset, exp, expiresIn)}, nil
}

// tokenResponse writes one token (the generated union type would encode it twice).
type tokenResponse struct{ tileToken }

func (t tokenResponse) VisitGetTileTokenResponse(w http.ResponseWriter) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(append(t.appendJSON(nil), '\n'))
	return err
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
		default:
			out.entries[i] = s.token(a.Dataset, exp, expiresIn)
		}
	}
	return out, nil
}

// batchResponse writes {"tokens": {...}} with the datasets in first-seen order (a Go map would
// sort them), each entry a token or a TileTokenError.
type batchResponse struct {
	ids     []uuid.UUID
	entries []any
}

var bufPool = sync.Pool{New: func() any { return new([]byte) }}

func (b batchResponse) VisitGetTileTokensBatchResponse(w http.ResponseWriter) error {
	bp := bufPool.Get().(*[]byte)
	buf := append((*bp)[:0], `{"tokens":{`...)
	for i, id := range b.ids {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, '"')
		buf = append(buf, id.String()...)
		buf = append(buf, `":`...)
		switch e := b.entries[i].(type) {
		case tileToken:
			buf = e.appendJSON(buf)
		case gen.TileTokenError:
			buf = append(buf, `{"error":`...)
			buf = appendString(buf, e.Error)
			buf = append(buf, `,"status":`...)
			buf = strconv.AppendInt(buf, int64(e.Status), 10)
			buf = append(buf, '}')
		}
	}
	buf = append(buf, "}}\n"...)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(buf)
	*bp = buf
	bufPool.Put(bp)
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
func (s *Server) signed(d store.Dataset, exp int64) (id, scope, sig, template string) {
	id = d.ID.String()
	scope = tiletoken.Scope(d.AccountID.String(), id, d.AccessVersion)
	sig = s.signer.SignAt(scope, exp)
	b := make([]byte, 0, len(s.cfg.PublicURL)+len(id)+len(d.Format)+len(sig)+len(scope)+80)
	b = append(b, s.cfg.PublicURL...)
	b = append(b, "/api/tiles/"...)
	b = append(b, id...)
	b = append(b, "/{z}/{x}/{y}."...)
	b = append(b, d.Format...)
	b = append(b, "?sig="...)
	b = append(b, sig...)
	b = append(b, "&exp="...)
	b = strconv.AppendInt(b, exp, 10)
	b = append(b, "&scope="...)
	b = append(b, url.QueryEscape(scope)...)
	return id, scope, sig, string(b)
}

// tileToken is the wire form of VectorTileToken and RasterTileToken (openapi.yaml; responses
// are validated against it in tests). It is encoded directly, with the dataset's stored JSON
// columns passed through raw: tokens are the hot path of map loads, and the generated types
// (nullable maps, unions) cost more to encode than everything else a batch does.
type tileToken struct {
	Kind         string          `json:"kind"`
	DatasetID    string          `json:"dataset_id"`
	TileURL      string          `json:"tile_url,omitempty"`
	Sig          string          `json:"sig"`
	Exp          int64           `json:"exp"`
	Scope        string          `json:"scope"`
	ExpiresIn    int             `json:"expires_in"`
	Tiles        []string        `json:"tiles"`
	MinZoom      int             `json:"minzoom"`
	MaxZoom      int             `json:"maxzoom"`
	Bounds       json.RawMessage `json:"bounds"`
	VectorLayers json.RawMessage `json:"vector_layers,omitempty"`
	TileSize     int             `json:"tile_size,omitempty"`
	Format       string          `json:"format,omitempty"`
	Attribution  *string         `json:"attribution"`
}

var emptyList = json.RawMessage("[]")

func (s *Server) token(d store.Dataset, exp int64, expiresIn int) tileToken {
	id, scope, sig, tmpl := s.signed(d, exp)
	t := tileToken{
		Kind: d.Kind, DatasetID: id, Sig: sig, Exp: exp, Scope: scope, ExpiresIn: expiresIn,
		Tiles: []string{tmpl}, MinZoom: d.MinZoom, MaxZoom: d.MaxZoom,
		Bounds: json.RawMessage(d.Bounds), Attribution: d.Attribution,
	}
	if d.Kind == "raster" {
		t.TileURL, t.Format, t.TileSize = tmpl, d.Format, 256
		if d.TileSize != nil {
			t.TileSize = *d.TileSize
		}
	} else {
		t.VectorLayers = json.RawMessage(d.VectorLayers)
		if t.VectorLayers == nil {
			t.VectorLayers = emptyList
		}
	}
	return t
}

// appendJSON encodes the token by hand: it is the bulk of every batch response.
func (t tileToken) appendJSON(b []byte) []byte {
	b = append(b, `{"kind":`...)
	b = appendString(b, t.Kind)
	b = append(b, `,"dataset_id":`...)
	b = appendString(b, t.DatasetID)
	if t.TileURL != "" {
		b = append(b, `,"tile_url":`...)
		b = appendString(b, t.TileURL)
	}
	b = append(b, `,"sig":`...)
	b = appendString(b, t.Sig)
	b = append(b, `,"exp":`...)
	b = strconv.AppendInt(b, t.Exp, 10)
	b = append(b, `,"scope":`...)
	b = appendString(b, t.Scope)
	b = append(b, `,"expires_in":`...)
	b = strconv.AppendInt(b, int64(t.ExpiresIn), 10)
	b = append(b, `,"tiles":[`...)
	for i, tile := range t.Tiles {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, tile)
	}
	b = append(b, `],"minzoom":`...)
	b = strconv.AppendInt(b, int64(t.MinZoom), 10)
	b = append(b, `,"maxzoom":`...)
	b = strconv.AppendInt(b, int64(t.MaxZoom), 10)
	b = append(b, `,"bounds":`...)
	b = appendRaw(b, t.Bounds)
	if t.VectorLayers != nil {
		b = append(b, `,"vector_layers":`...)
		b = appendRaw(b, t.VectorLayers)
	}
	if t.TileSize != 0 {
		b = append(b, `,"tile_size":`...)
		b = strconv.AppendInt(b, int64(t.TileSize), 10)
	}
	if t.Format != "" {
		b = append(b, `,"format":`...)
		b = appendString(b, t.Format)
	}
	b = append(b, `,"attribution":`...)
	if t.Attribution == nil {
		b = append(b, "null"...)
	} else {
		b = appendString(b, *t.Attribution)
	}
	return append(b, '}')
}

// appendRaw appends stored JSON (written by this service, so valid), or null.
func appendRaw(b []byte, raw json.RawMessage) []byte {
	if raw == nil {
		return append(b, "null"...)
	}
	return append(b, raw...)
}

// appendString appends s as a JSON string. Ids, signatures and URLs need no escaping and take
// the fast path; anything else goes through encoding/json.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			enc, _ := json.Marshal(s)
			return append(b, enc...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
