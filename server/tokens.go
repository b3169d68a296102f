package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/attribution"
	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/tileaccess"
	"github.com/tilegate/tilegate/store"
	"github.com/tilegate/tilegate/tiletoken"
	"github.com/tilegate/tilegate/tileurl"
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
	if err == nil {
		err = a.Use(c)
	}
	status, err := accessStatus(err)
	return a, status, err
}

func (s *Server) GetTileToken(ctx context.Context, req gen.GetTileTokenRequestObject) (gen.GetTileTokenResponseObject, error) {
	if principalFrom(ctx).AccountID == uuid.Nil {
		entries := make([]batchEntry, 1)
		if err := s.openMint(ctx, requestFrom(ctx), []uuid.UUID{req.DatasetId}, entries); err != nil {
			return nil, err
		}
		switch ref := entries[0].refusal; {
		case ref == nil:
			return tokenResponse{entries[0].token}, nil
		case ref.Status == http.StatusNotFound:
			return nil, notFound()
		default:
			return nil, refused{ref}
		}
	}
	a, status, err := s.usableDataset(ctx, req.DatasetId)
	switch {
	case err != nil:
		return nil, err
	case status == http.StatusNotFound:
		return nil, notFound()
	case status == http.StatusForbidden:
		return nil, fail(http.StatusForbidden, notUsable)
	}
	exp, expiresIn := s.signer.Expiry()
	return tokenResponse{s.token(&a.Dataset, exp, expiresIn)}, nil
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
	s.metrics.m.TokenBatch(len(ids))
	if c.AccountID == uuid.Nil {
		out := batchResponse{ids: ids, entries: make([]batchEntry, len(ids))}
		if err := s.openMint(ctx, requestFrom(ctx), ids, out.entries); err != nil {
			return nil, err
		}
		return out, nil
	}
	access, err := s.store.DatasetsAccess(ctx, c, ids)
	if err != nil {
		return nil, err
	}
	// One exp for the whole batch: every token of a window is byte-identical anyway.
	exp, expiresIn := s.signer.Expiry()
	out := batchResponse{ids: ids, entries: make([]batchEntry, len(ids))}
	datasets := make([]store.Dataset, len(ids)) // one allocation for every token's dataset
	for i, id := range ids {
		a, ok := access[id]
		var status int
		if !ok {
			status, _ = accessStatus(store.ErrNotFound)
		} else if status, err = accessStatus(a.Use(c)); err != nil {
			return nil, err
		}
		if status != 0 {
			out.entries[i].refusal = batchRefusals[status]
			continue
		}
		datasets[i] = a.Dataset
		out.entries[i].token = s.token(&datasets[i], exp, expiresIn)
	}
	return out, nil
}

// batchResponse writes {"tokens": {...}} with the datasets in first-seen order (a Go map would
// sort them), each entry a token or a TileTokenError.
type batchResponse struct {
	ids     []uuid.UUID
	entries []batchEntry
}

// batchEntry is a token, or the refusal (403, 404) of a dataset that gets none.
type batchEntry struct {
	token   tileToken
	refusal *tileaccess.Refusal
}

// batchRefusals are the service token path's refusals by status.
var batchRefusals = map[int]*tileaccess.Refusal{
	http.StatusNotFound:  tileaccess.RefuseNotFound,
	http.StatusForbidden: {Status: http.StatusForbidden, Detail: notUsable},
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
		if ref := b.entries[i].refusal; ref != nil {
			buf = append(buf, `{"error":`...)
			buf = appendString(buf, ref.Detail)
			buf = append(buf, `,"status":`...)
			buf = strconv.AppendInt(buf, int64(ref.Status), 10)
			buf = append(buf, '}')
		} else {
			buf = b.entries[i].token.appendJSON(buf)
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

// mint signs a dataset's current scope for exp.
func (s *Server) mint(d store.Dataset, exp int64) (scope, sig string) {
	scope = tiletoken.Scope(d.AccountID.String(), d.ID.String(), d.AccessVersion)
	return scope, s.signer.SignAt(scope, exp)
}

// appendTokenQuery appends the query string that carries a tile token: ?sig=&exp=&scope=.
func appendTokenQuery(b []byte, sig string, exp int64, scope string) []byte {
	b = append(b, "?sig="...)
	b = append(b, sig...)
	b = append(b, "&exp="...)
	b = strconv.AppendInt(b, exp, 10)
	b = append(b, "&scope="...)
	return append(b, url.QueryEscape(scope)...)
}

// tileToken is the wire form of VectorTileToken and RasterTileToken (openapi.yaml; responses
// are validated against it in tests). It is encoded by hand (appendJSON), with the dataset's
// stored JSON columns passed through raw and the signed URL template written straight into the
// response: tokens are the hot path of map loads, and the generated types (nullable maps,
// unions) cost more to encode than everything else a batch does.
type tileToken struct {
	d         *store.Dataset
	scope     string
	sig       string
	exp       int64
	expiresIn int
	base      string // the JSON-escaped public URL the template starts with
}

func (s *Server) token(d *store.Dataset, exp int64, expiresIn int) tileToken {
	scope, sig := s.mint(*d, exp)
	return tileToken{d: d, scope: scope, sig: sig, exp: exp, expiresIn: expiresIn, base: s.tileBase}
}

// appendTemplate appends the signed tile URL template as a JSON string.
func (t tileToken) appendTemplate(b []byte) []byte {
	b = append(b, '"')
	b = tileurl.AppendTemplate(b, t.base, t.d.ID, t.d.Format)
	b = appendTokenQuery(b, t.sig, t.exp, t.scope)
	b = appendFileVersion(b, '&', t.d)
	return append(b, '"')
}

// appendFileVersion appends v=<the dataset's file version> to a tile URL's query (sep is '?' or
// '&'): a re-upload changes every tile URL handed out, so a CDN never serves the old file's
// tiles under them. Nothing for a dataset without a file.
func appendFileVersion(b []byte, sep byte, d *store.Dataset) []byte {
	v := fileVersion(d)
	if v == "" {
		return b
	}
	b = append(b, sep, 'v', '=')
	return append(b, v...)
}

// fileVersion is the unique part of the dataset's tile file name ("<dataset>-<random>.mbtiles"),
// the part its tiles' ETags carry too; "" without a file.
func fileVersion(d *store.Dataset) string {
	if d.TileFile == nil {
		return ""
	}
	name := strings.TrimSuffix(*d.TileFile, filepath.Ext(*d.TileFile))
	if i := strings.LastIndexByte(name, '-'); i >= 0 {
		name = name[i+1:]
	}
	if len(name) > 64 || strings.ContainsFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_')
	}) {
		return "" // not a name tilegate made: no version rather than an unsafe one
	}
	return name
}

// appendJSON encodes the token: VectorTileToken or RasterTileToken by the dataset's kind.
func (t tileToken) appendJSON(b []byte) []byte {
	d := t.d
	raster := d.Kind == "raster"
	b = append(b, `{"kind":`...)
	b = appendString(b, d.Kind)
	b = append(b, `,"dataset_id":"`...)
	b = append(b, d.ID.String()...)
	b = append(b, '"')
	if raster {
		b = append(b, `,"tile_url":`...)
		b = t.appendTemplate(b)
	}
	b = append(b, `,"sig":"`...)
	b = append(b, t.sig...)
	b = append(b, `","exp":`...)
	b = strconv.AppendInt(b, t.exp, 10)
	b = append(b, `,"scope":`...)
	b = appendString(b, t.scope)
	b = append(b, `,"expires_in":`...)
	b = strconv.AppendInt(b, int64(t.expiresIn), 10)
	b = append(b, `,"tiles":[`...)
	b = t.appendTemplate(b)
	b = append(b, `],"minzoom":`...)
	b = strconv.AppendInt(b, int64(d.MinZoom), 10)
	b = append(b, `,"maxzoom":`...)
	b = strconv.AppendInt(b, int64(d.MaxZoom), 10)
	b = append(b, `,"bounds":`...)
	if d.Bounds == nil {
		b = append(b, worldBounds...)
	} else {
		b = append(b, d.Bounds...)
	}
	if raster {
		size := strconv.AppendInt(nil, int64(tileSize(d)), 10)
		b = append(b, `,"tile_size":`...)
		b = append(b, size...)
		b = append(b, `,"tileSize":`...) // what MapLibre reads; tile_size is the GeoLens name
		b = append(b, size...)
		b = append(b, `,"format":`...)
		b = appendString(b, d.Format)
	} else {
		b = append(b, `,"vector_layers":`...)
		if d.VectorLayers == nil {
			b = append(b, "[]"...)
		} else {
			b = append(b, d.VectorLayers...)
		}
	}
	// Never null: MapLibre refuses a source whose attribution is null.
	if d.Attribution != nil {
		b = append(b, `,"attribution":`...)
		b = appendString(b, attribution.Safe(*d.Attribution))
	}
	return append(b, '}')
}

// worldBounds is what a token says for a dataset without bounds: TileJSON's default, which is
// what MapLibre assumes without any. The tile-token document's bounds is always a list, and
// MapLibre refuses a null one.
const worldBounds = `[-180,-85.0511287798066,180,85.0511287798066]`

// tileSize is a raster dataset's tile edge in pixels: the stored one, or 256 (MBTiles' usual).
func tileSize(d *store.Dataset) int {
	if d.TileSize != nil {
		return *d.TileSize
	}
	return 256
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

// jsonEscaped is s as it stands between the quotes of a JSON string.
func jsonEscaped(s string) string {
	b := appendString(nil, s)
	return string(b[1 : len(b)-1])
}
