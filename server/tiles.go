package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/tileaccess"
	"github.com/tilegate/tilegate/store"
	"github.com/tilegate/tilegate/tileurl"
)

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

// GetTileJSON answers TileJSON 3.0.0 for MapLibre. Credentials are those of tiles, or a service
// token (then the usual may-use rules apply). Tile URLs carry the caller's key, the caller's own
// tile token unchanged (same exp: a token must not renew itself, or its holder would keep access
// after the principal that minted it is revoked), or, for a service token, a freshly minted one;
// a public dataset's carry none. Only service tokens and API keys lead to a new token.
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
			return nil, refused{tileaccess.RefuseNotFound}
		case status == http.StatusForbidden:
			return nil, refused{&tileaccess.Refusal{Status: 403, Reason: tileaccess.ReasonRestricted, Detail: notUsable}}
		}
		d, mint = a.Dataset, true
	} else {
		e, err := s.access.Dataset(ctx, req.DatasetId)
		if err != nil {
			return nil, err
		}
		if !e.Found {
			return nil, refused{tileaccess.RefuseNotFound}
		}
		cr := tileJSONCredentials(req.Params)
		var client tileaccess.Client
		if r := requestFrom(ctx); r != nil {
			client = tileaccess.Client{Header: r.Header, RemoteAddr: r.RemoteAddr}
		}
		dec, err := s.access.Authorize(ctx, e, &cr, client, s.now())
		if err != nil {
			return nil, err
		}
		if dec.Refusal != nil {
			return nil, refused{dec.Refusal}
		}
		d = e.Dataset
		if dec.KeyID != uuid.Nil {
			credential = "?key=" + url.QueryEscape(cr.Key)
		} else if cr.HasSig {
			// Verified as it stands, so passed on as it stands.
			credential = "?sig=" + url.QueryEscape(cr.Sig) + "&exp=" + url.QueryEscape(cr.Exp) + "&scope=" + url.QueryEscape(cr.Scope)
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

// tileJSONCredentials are the tile credentials of a TileJSON request.
func tileJSONCredentials(p gen.GetTileJSONParams) tileaccess.Credentials {
	var cr tileaccess.Credentials
	if v := p.Key; v != nil {
		cr.Key, cr.HasKey = *v, true
	}
	if v := p.Sig; v != nil {
		cr.Sig, cr.HasSig = *v, true
	}
	if v := p.Exp; v != nil {
		cr.Exp, cr.HasExp = strconv.FormatInt(*v, 10), true
	}
	if v := p.Scope; v != nil {
		cr.Scope, cr.HasScope = *v, true
	}
	return cr
}

func (s *Server) tileJSON(d store.Dataset, credential string) tileJSONResponse {
	format := d.Format
	tj := gen.TileJSON{
		Tilejson: "3.0.0", Scheme: "xyz", Name: &d.Name, Description: d.Description, Format: &format,
		Minzoom: d.MinZoom, Maxzoom: d.MaxZoom, Attribution: safeAttribution(d.Attribution),
		Tiles: []string{string(tileurl.AppendTemplate(nil, s.cfg.PublicURL, d.ID, d.Format)) + credential},
	}
	sep := byte('&')
	if credential == "" {
		sep = '?'
	}
	tj.Tiles[0] = string(appendFileVersion([]byte(tj.Tiles[0]), sep, &d))
	if v, err := nullableJSON[gen.Bounds](d.Bounds).Get(); err == nil {
		tj.Bounds = &v
	}
	if v, err := nullableJSON[gen.Center](d.Center).Get(); err == nil {
		tj.Center = &v
	}
	if d.Kind == "raster" {
		size := tileSize(&d)
		tj.TileSize = &size
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
