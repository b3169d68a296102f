package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/mbtiles"
	"github.com/tilegate/tilegate/origin"
	"github.com/tilegate/tilegate/store"
	"github.com/tilegate/tilegate/tiletoken"
)

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

// tileRoute is GET /api/tiles/{dataset_id}/{z}/{x}/{y}.{format} for echo, which cannot split one
// segment into two parameters: the handler splits {y}.{format} at its last dot, as the spec's
// router (gorilla/mux) does.
const tileRoute = "/api/tiles/:dataset_id/:z/:x/:tile"

// findRoute finds the request's operation in the spec. Tiles, the hot path, take the operation
// found for the route echo matched instead of the spec router's linear scan of regular
// expressions: the template is the same, {y}.{format} split at the last dot as gorilla/mux
// does; HEAD (headTile in the spec, the same parameters and rules) takes getTile's operation.
func (s *Server) findRoute(c echo.Context) (*routers.Route, map[string]string, error) {
	if c.Path() != tileRoute {
		return s.router.FindRoute(c.Request())
	}
	tile := c.Param("tile")
	dot := strings.LastIndexByte(tile, '.')
	if dot <= 0 || dot == len(tile)-1 {
		return nil, nil, routers.ErrPathNotFound
	}
	return s.tileOp, map[string]string{
		"dataset_id": c.Param("dataset_id"), "z": c.Param("z"), "x": c.Param("x"),
		"y": tile[:dot], "format": tile[dot+1:],
	}, nil
}

// tileOperation is getTile's route in the spec, found once.
func tileOperation(router routers.Router) (*routers.Route, error) {
	r, err := http.NewRequest(http.MethodGet, "/api/tiles/00000000-0000-0000-0000-000000000000/0/0/0.pbf", nil)
	if err != nil {
		return nil, err
	}
	route, _, err := router.FindRoute(r)
	if err != nil {
		return nil, fmt.Errorf("openapi.yaml has no getTile operation: %w", err)
	}
	return route, nil
}

// queryRules check an operation's query parameters as kin-openapi would, without its
// per-parameter decoding machinery: compiled from the spec at start, and only when every query
// parameter is an optional plain string whose one constraint is a maxLength, or an optional
// integer whose one constraint is a minimum of 0 (the token's exp).
type queryRules []queryRule

type queryRule struct {
	name    string
	maxLen  uint64 // 0: none
	integer bool   // a non-negative integer
}

// compileQueryRules returns nil when a query parameter of op needs the generic validation.
func compileQueryRules(op *openapi3.Operation) queryRules {
	var rules queryRules
	for _, ref := range op.Parameters {
		p := ref.Value
		if p == nil || p.In != openapi3.ParameterInQuery {
			continue
		}
		if p.Required || p.Content != nil || p.Schema == nil || p.Schema.Value == nil ||
			(p.Style != "" && p.Style != openapi3.SerializationForm) || p.AllowEmptyValue {
			return nil
		}
		sc := p.Schema.Value
		if sc.Type.Is(openapi3.TypeInteger) && (sc.Format == "" || sc.Format == "int64") && sc.Min != nil && *sc.Min == 0 &&
			sc.Max == nil && !sc.ExclusiveMin.IsSet() && len(sc.Enum) == 0 && !sc.Nullable &&
			len(sc.AllOf)+len(sc.AnyOf)+len(sc.OneOf) == 0 && sc.Not == nil && sc.MultipleOf == nil {
			rules = append(rules, queryRule{name: p.Name, integer: true})
			continue
		}
		if !sc.Type.Is(openapi3.TypeString) || sc.Format != "" || sc.Pattern != "" || len(sc.Enum) > 0 ||
			sc.MinLength > 0 || sc.Nullable || len(sc.AllOf)+len(sc.AnyOf)+len(sc.OneOf) > 0 || sc.Not != nil {
			return nil
		}
		r := queryRule{name: p.Name}
		if sc.MaxLength != nil {
			r.maxLen = *sc.MaxLength
		}
		rules = append(rules, r)
	}
	return rules
}

// check returns the violations in the spec's parameter order, in the shape translate gives
// kin-openapi's. As url.Values.Get does, the first occurrence of a name counts, and a pair
// that does not unescape is ignored.
func (q queryRules) check(raw string) []fieldError {
	var out []fieldError
	for _, r := range q {
		if r.integer {
			out = append(out, r.checkInteger(raw)...)
			continue
		}
		if r.maxLen == 0 {
			continue
		}
		v, ok := firstQueryValue(raw, r.name)
		if ok && uint64(utf8.RuneCountInString(v)) > r.maxLen {
			out = append(out, fieldError{
				Loc: []any{"query", r.name}, Input: v, Type: "string_too_long",
				Msg: fmt.Sprintf("String should have at most %d %s", r.maxLen, plural(r.maxLen, "character")),
				Ctx: map[string]any{"max_length": r.maxLen},
			})
		}
	}
	return out
}

// firstQueryValue is url.Values.Get on a raw query, with presence: the first pair named name
// counts, and a pair that does not unescape is ignored.
func firstQueryValue(raw, name string) (string, bool) {
	for raw != "" {
		var part string
		part, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(part, "=")
		if strings.ContainsAny(k, "%+") {
			var err error
			if k, err = url.QueryUnescape(k); err != nil {
				continue
			}
		}
		if k != name {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			var err error
			if v, err = url.QueryUnescape(v); err != nil {
				continue
			}
		}
		return v, true
	}
	return "", false
}

// Reasons a tile request is refused, sent in X-Tilegate-Reason. 401: the request has no usable
// credential; 403: a credential was understood and refused.
const (
	reasonMissing       = "missing"       // 401: no key and no token on a non-public dataset
	reasonMalformed     = "malformed"     // 401: sig, exp and scope not all given, or not well formed
	reasonExpired       = "expired"       // 403: token past its exp (or impossibly far ahead)
	reasonBadSignature  = "bad_signature" // 403: token signature does not verify
	reasonScope         = "scope"         // 403: token of an earlier access_version (access changed)
	reasonUnknownKey    = "unknown_key"   // 403: no such API key
	reasonRestricted    = "restricted"    // 403: restricted datasets take tile tokens, not API keys
	reasonOrigin        = string(origin.ReasonOrigin)
	reasonUnknownOrigin = string(origin.ReasonUnknownOrigin)
	reasonUserAgent     = string(origin.ReasonUserAgent)
)

// refusal is why a tile or TileJSON request is not served: status 401 or 403 with a reason, or
// 404 (the credential's account does not see the dataset; no reason, nothing revealed).
type refusal struct {
	status int
	reason string
	detail string
}

var (
	refuseMissing = &refusal{401, reasonMissing,
		"This dataset needs an API key (?key=) or a tile token (?sig=&exp=&scope=)"}
	refuseMalformed = &refusal{401, reasonMalformed,
		"Malformed tile token: sig, exp and scope must all be given as the token endpoint returned them"}
	refuseExpired = &refusal{403, reasonExpired,
		"The tile token has expired; fetch a new one"}
	refuseBadSignature = &refusal{403, reasonBadSignature,
		"The tile token's signature is not valid"}
	refuseScope = &refusal{403, reasonScope,
		"The tile token was issued before access to this dataset changed; fetch a new one"}
	refuseUnknownKey = &refusal{403, reasonUnknownKey, "Unknown API key"}
	refuseRestricted = &refusal{403, reasonRestricted,
		"This dataset is restricted: API keys cannot read it, use a tile token"}
	refuseUnknownOrigin = &refusal{403, reasonUnknownOrigin,
		"This API key only allows listed origins, and the request has neither Origin nor Referer"}
	refuseUserAgent = &refusal{403, reasonUserAgent,
		"This API key does not allow the request's User-Agent"}
	refuseNotFound = &refusal{status: 404, detail: datasetNotFound}
)

// tileCreds are a request's tile credentials; has* tells a parameter sent empty from an absent one.
type tileCreds struct {
	key, sig, exp, scope             string
	hasKey, hasSig, hasExp, hasScope bool
}

func (c *tileCreds) token() bool { return c.hasSig || c.hasExp || c.hasScope }

// parseCreds reads key, sig, exp and scope from a raw query without building a url.Values.
func parseCreds(raw string) tileCreds {
	var c tileCreds
	c.key, c.hasKey = firstQueryValue(raw, "key")
	c.sig, c.hasSig = firstQueryValue(raw, "sig")
	c.exp, c.hasExp = firstQueryValue(raw, "exp")
	c.scope, c.hasScope = firstQueryValue(raw, "scope")
	return c
}

// authorize decides whether creds may read the dataset's tiles. It returns the key that was
// used (uuid.Nil for a token or a public dataset), or why not. It runs no SQL on a warm cache.
func (s *Server) authorize(ctx context.Context, e *datasetEntry, cr *tileCreds, h http.Header) (uuid.UUID, *refusal, error) {
	if e.public {
		return uuid.Nil, nil, nil
	}
	switch {
	case cr.token():
		if !cr.hasSig || !cr.hasExp || !cr.hasScope || cr.scope == "" {
			return uuid.Nil, refuseMalformed, nil
		}
		if !strings.HasPrefix(cr.scope, e.scopePrefix) {
			// A token for another dataset (or account): as far as its holder knows, this
			// dataset does not exist.
			return uuid.Nil, refuseNotFound, nil
		}
		switch err := s.signer.Verify(e.scope, cr.scope, cr.sig, cr.exp); {
		case err == nil:
			return uuid.Nil, nil, nil
		case errors.Is(err, tiletoken.ErrMalformed):
			return uuid.Nil, refuseMalformed, nil
		case errors.Is(err, tiletoken.ErrExpired):
			return uuid.Nil, refuseExpired, nil
		case errors.Is(err, tiletoken.ErrScope):
			return uuid.Nil, refuseScope, nil
		default:
			return uuid.Nil, refuseBadSignature, nil
		}
	case cr.hasKey:
		if cr.key == "" {
			return uuid.Nil, refuseMalformed, nil
		}
		k, err := s.cache.key(ctx, cr.key)
		if err != nil {
			return uuid.Nil, nil, err
		}
		if !k.found {
			return uuid.Nil, refuseUnknownKey, nil
		}
		if !e.sees(k.accountID) {
			return uuid.Nil, refuseNotFound, nil
		}
		if e.d.Visibility == store.Restricted {
			return uuid.Nil, refuseRestricted, nil
		}
		originH, refererH := h.Get("Origin"), h.Get("Referer")
		switch k.policy.Check(originH, refererH, h.Get("User-Agent")) {
		case origin.Allowed:
		case origin.ReasonOrigin:
			return uuid.Nil, refuseOrigin(originH, refererH), nil
		case origin.ReasonUnknownOrigin:
			return uuid.Nil, refuseUnknownOrigin, nil
		default:
			return uuid.Nil, refuseUserAgent, nil
		}
		s.lastUsed.touch(k.id, time.Now().Unix())
		return k.id, nil, nil
	}
	return uuid.Nil, refuseMissing, nil
}

func refuseOrigin(originH, refererH string) *refusal {
	scheme, host, port, _ := origin.RequestOrigin(originH, refererH)
	o := scheme + "://" + host
	if port != "" {
		o += ":" + port
	}
	return &refusal{403, reasonOrigin, "This API key does not allow the origin " + o}
}

// tileHeaders marks every tile and TileJSON response (errors included) readable by any web page,
// and answers their CORS preflight before routing: the contract would answer OPTIONS with 405.
// The token endpoints are for backends holding service tokens and get neither.
func (s *Server) tileHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if !isTilePath(r.URL.Path) {
			return next(c)
		}
		h := c.Response().Header()
		h["Access-Control-Allow-Origin"] = allowAnyOrigin
		if r.Method == http.MethodOptions {
			h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "If-None-Match, If-Modified-Since, Cache-Control")
			h.Set("Access-Control-Max-Age", "86400")
			return c.NoContent(http.StatusNoContent)
		}
		return next(c)
	}
}

var allowAnyOrigin = []string{"*"}

func isTilePath(p string) bool {
	rest, ok := strings.CutPrefix(p, "/api/tiles/")
	return ok && !strings.HasPrefix(rest, "token/") && !strings.HasPrefix(rest, "tokens/")
}

// tileError answers a tile request with {"detail"}; errors are never cached.
func tileError(c echo.Context, status int, msg string) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	return detail(c, status, msg)
}

func (r *refusal) write(c echo.Context) error {
	if r.reason != "" {
		h := c.Response().Header()
		h.Set("X-Tilegate-Reason", r.reason)
		h.Set("Access-Control-Expose-Headers", "X-Tilegate-Reason")
	}
	return tileError(c, r.status, r.detail)
}

// maxZoom is the highest zoom a tile URL may name.
const maxZoom = 30

// getTile serves GET (and HEAD) /api/tiles/{dataset_id}/{z}/{x}/{y}.{format}. The contract
// middleware has routed and validated the request (dataset_id a UUID, z, x, y integers).
func (s *Server) getTile(c echo.Context) error {
	r := c.Request()
	ctx := r.Context()
	id, err := uuid.Parse(c.Param("dataset_id"))
	if err != nil {
		return tileError(c, http.StatusNotFound, datasetNotFound)
	}
	yf := c.Param("tile")
	dot := strings.LastIndexByte(yf, '.')
	if dot < 0 {
		return tileError(c, http.StatusNotFound, "Not Found")
	}
	format := yf[dot+1:]
	z, errZ := strconv.Atoi(c.Param("z"))
	x, errX := strconv.Atoi(c.Param("x"))
	y, errY := strconv.Atoi(yf[:dot])
	if errZ != nil || errX != nil || errY != nil || z < 0 || z > maxZoom {
		return tileError(c, http.StatusBadRequest, "z must be 0 to 30")
	}
	if x < 0 || y < 0 || x >= 1<<z || y >= 1<<z {
		return tileError(c, http.StatusBadRequest, "x and y must be 0 to 2^z-1 ("+strconv.Itoa(1<<z-1)+" at zoom "+strconv.Itoa(z)+")")
	}

	e, err := s.cache.dataset(ctx, id)
	if err != nil {
		return err
	}
	if !e.found {
		return tileError(c, http.StatusNotFound, datasetNotFound)
	}
	creds := parseCreds(r.URL.RawQuery)
	if _, ref, err := s.authorize(ctx, e, &creds, r.Header); err != nil {
		return err
	} else if ref != nil {
		return ref.write(c)
	}
	if format != e.d.Format {
		return tileError(c, http.StatusNotFound, "This dataset's tiles are ."+e.d.Format)
	}
	w := c.Response()
	h := w.Header()
	if e.path == "" {
		// Nothing uploaded yet: an empty tile for map clients, not cached, so tiles show up
		// as soon as a file is.
		h.Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	etag := tileETag(e.etag, z, x, y)
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, etag) {
		// The ETag names this very file (files are never changed in place) and tile, which
		// the client had: no need to read it.
		h.Set("ETag", etag)
		h.Set("Cache-Control", e.cacheControl)
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	data, err := s.tiles.Tile(ctx, e.path, z, x, y)
	if err != nil && ctx.Err() == nil && !unservable(err) {
		// The file may have been replaced or deleted meanwhile (by another replica whose
		// notification has not arrived yet, or here): look at the dataset again.
		s.cache.evictDatasetEntry(id, e)
		fresh, ferr := s.cache.dataset(ctx, id)
		switch {
		case ferr != nil:
			return ferr
		case !fresh.found:
			return tileError(c, http.StatusNotFound, datasetNotFound)
		case fresh.path == "":
			h.Set("Cache-Control", "no-cache")
			w.WriteHeader(http.StatusNoContent)
			return nil
		case fresh.path != e.path:
			e, etag = fresh, tileETag(fresh.etag, z, x, y)
			data, err = s.tiles.Tile(ctx, e.path, z, x, y)
		}
		// The same file: the error stands.
	}
	if err != nil && unservable(err) {
		// The file will not get better by retrying: 410, logged once per file.
		s.files.logUnservable(e.path, id, err)
		return tileError(c, http.StatusGone, unservableDetail)
	}
	if err != nil {
		if ctx.Err() == nil { // (else the client has gone)
			s.log.Error("read tile", "dataset", id, "err", err)
		}
		return tileError(c, http.StatusServiceUnavailable, "The tiles cannot be read right now; retry shortly")
	}
	h.Set("Cache-Control", e.cacheControl)
	if len(data) == 0 {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	h.Set("Content-Type", e.contentType)
	if mbtiles.IsGzip(data) {
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("ETag", etag)
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	_, err = w.Write(data)
	return err
}

// tileETag is `"<file's unique part>-z-x-y"`: cheap, and it changes with every upload.
func tileETag(prefix string, z, x, y int) string {
	b := make([]byte, 0, len(prefix)+24)
	b = append(b, prefix...)
	b = strconv.AppendInt(b, int64(z), 10)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(x), 10)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(y), 10)
	b = append(b, '"')
	return string(b)
}

// etagMatches applies If-None-Match's weak comparison: "*", or any listed tag (W/ or not).
func etagMatches(header, etag string) bool {
	for header != "" {
		var tag string
		tag, header, _ = strings.Cut(header, ",")
		tag = strings.TrimSpace(tag)
		if tag == "*" || strings.TrimPrefix(tag, "W/") == etag {
			return true
		}
	}
	return false
}

// GetTileJSON answers TileJSON 3.0.0 for MapLibre. Credentials are those of tiles, or a service
// token (then the usual may-use rules apply). Tile URLs carry the caller's key, or a freshly
// minted tile token when called with a token or a service token; a public dataset's carry none.
func (s *Server) GetTileJSON(ctx context.Context, req gen.GetTileJSONRequestObject) (gen.GetTileJSONResponseObject, error) {
	var d store.Dataset
	credential := "" // the query every tile URL carries
	mint := false
	if p := principalFrom(ctx); p.AccountID != uuid.Nil {
		a, status, err := s.usableDataset(ctx, req.DatasetId)
		switch {
		case err != nil:
			return nil, err
		case status == http.StatusNotFound:
			return tileJSONRefusal{refuseNotFound}, nil
		case status == http.StatusForbidden:
			return tileJSONRefusal{&refusal{403, reasonRestricted, notUsable}}, nil
		}
		d, mint = a.Dataset, true
	} else {
		e, err := s.cache.dataset(ctx, req.DatasetId)
		if err != nil {
			return nil, err
		}
		if !e.found {
			return tileJSONRefusal{refuseNotFound}, nil
		}
		cr := tileCreds{}
		if v := req.Params.Key; v != nil {
			cr.key, cr.hasKey = *v, true
		}
		if v := req.Params.Sig; v != nil {
			cr.sig, cr.hasSig = *v, true
		}
		if v := req.Params.Exp; v != nil {
			cr.exp, cr.hasExp = strconv.FormatInt(*v, 10), true
		}
		if v := req.Params.Scope; v != nil {
			cr.scope, cr.hasScope = *v, true
		}
		var header http.Header
		if r := requestFrom(ctx); r != nil {
			header = r.Header
		}
		keyID, ref, err := s.authorize(ctx, e, &cr, header)
		if err != nil {
			return nil, err
		}
		if ref != nil {
			return tileJSONRefusal{ref}, nil
		}
		d = e.d
		if keyID != uuid.Nil {
			credential = "?key=" + url.QueryEscape(cr.key)
		} else {
			mint = true
		}
	}
	if d.Visibility == store.Public {
		credential, mint = "", false
	}
	if mint {
		exp, _ := s.signer.Expiry()
		scope, sig := s.mint(d, exp)
		credential = string(appendTokenQuery(nil, sig, exp, scope))
	}
	return s.tileJSON(d, credential), nil
}

func (s *Server) tileJSON(d store.Dataset, credential string) tileJSONResponse {
	format := d.Format
	tj := gen.TileJSON{
		Tilejson: "3.0.0", Scheme: "xyz", Name: &d.Name, Description: d.Description, Format: &format,
		Minzoom: d.MinZoom, Maxzoom: d.MaxZoom, Attribution: d.Attribution,
		Tiles: []string{s.cfg.PublicURL + "/api/tiles/" + d.ID.String() + "/{z}/{x}/{y}." + d.Format + credential},
	}
	if v, err := nullableJSON[gen.Bounds](d.Bounds).Get(); err == nil {
		tj.Bounds = &v
	}
	if v, err := nullableJSON[gen.Center](d.Center).Get(); err == nil {
		tj.Center = &v
	}
	if d.Kind == "vector" {
		layers := []gen.VectorLayer{}
		if v, err := nullableJSON[[]gen.VectorLayer](d.VectorLayers).Get(); err == nil && v != nil {
			layers = v
		}
		tj.VectorLayers = &layers
	}
	cc := "no-store" // it carries a credential, and a minted token expires
	if d.Visibility == store.Public {
		cc = "public, max-age=60"
	}
	return tileJSONResponse{body: tj, cacheControl: cc}
}

// tileJSONResponse is GetTileJSON's 200 with a Cache-Control header.
type tileJSONResponse struct {
	body         gen.TileJSON
	cacheControl string
}

func (t tileJSONResponse) VisitGetTileJSONResponse(w http.ResponseWriter) error {
	b, err := json.Marshal(t.body)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", t.cacheControl)
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(append(b, '\n'))
	return err
}

// tileJSONRefusal is GetTileJSON's 401, 403 or 404 with the same headers as a refused tile.
type tileJSONRefusal struct{ *refusal }

func (t tileJSONRefusal) VisitGetTileJSONResponse(w http.ResponseWriter) error {
	b, err := json.Marshal(gen.Error{Detail: t.detail})
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h["Access-Control-Allow-Origin"] = allowAnyOrigin
	if t.reason != "" {
		h.Set("X-Tilegate-Reason", t.reason)
		h.Set("Access-Control-Expose-Headers", "X-Tilegate-Reason")
	}
	w.WriteHeader(t.status)
	_, err = w.Write(append(b, '\n'))
	return err
}

// checkInteger answers as kin-openapi does for an integer parameter with minimum 0.
func (r queryRule) checkInteger(raw string) []fieldError {
	v, ok := firstQueryValue(raw, r.name)
	if !ok {
		return nil
	}
	loc := []any{"query", r.name}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return []fieldError{{Loc: loc, Input: v, Type: "int_parsing",
			Msg: "Input should be a valid integer, unable to parse string as an integer"}}
	}
	if n < 0 {
		return []fieldError{{Loc: loc, Input: v, Type: "greater_than_equal",
			Msg: "Input should be greater than or equal to 0", Ctx: map[string]any{"ge": 0}}}
	}
	return nil
}
