package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/uuid"
	"github.com/oapi-codegen/nullable"

	"github.com/tilegate/tilegate/access"
	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/store"
	"github.com/tilegate/tilegate/tilehttp"
)

const datasetNotFound = tilehttp.DatasetNotFound

func callerOf(ctx context.Context) store.Caller {
	p := principalFrom(ctx)
	return store.Caller{AccountID: p.AccountID, PrincipalID: p.ID, Role: p.Role}
}

func notFound() error { return fail(http.StatusNotFound, datasetNotFound) }

func forbiddenOwner() error {
	return fail(http.StatusForbidden, "Only the dataset's own account may change it")
}

func forbiddenVisibility() error {
	return fail(http.StatusForbidden, "Only an admin may make a dataset public or move it into or out of restricted")
}

func (s *Server) ListDatasets(ctx context.Context, req gen.ListDatasetsRequestObject) (gen.ListDatasetsResponseObject, error) {
	limit, cur, err := pageParams(req.Params.Limit, req.Params.Cursor)
	if err != nil {
		return nil, err
	}
	page, err := s.store.ListDatasets(ctx, callerOf(ctx).AccountID, cur, limit)
	if err != nil {
		return nil, err
	}
	out := gen.ListDatasets200JSONResponse{TotalCount: int(page.Total), Items: make([]gen.Dataset, len(page.Items)), Cursor: nullable.NewNullNullable[string]()}
	for i, d := range page.Items {
		out.Items[i] = s.datasetOut(d)
	}
	if page.Next != nil {
		out.Cursor = nullable.NewNullableWithValue(page.Next.Encode())
	}
	return out, nil
}

func (s *Server) CreateDataset(ctx context.Context, req gen.CreateDatasetRequestObject) (gen.CreateDatasetResponseObject, error) {
	in := req.Body
	d := store.Dataset{
		AccountID:   callerOf(ctx).AccountID,
		Name:        in.Name,
		Description: optional(in.Description),
		Kind:        string(in.Kind),
		Visibility:  store.Private,
		MinZoom:     0,
		MaxZoom:     14,
		Attribution: optional(in.Attribution),
	}
	if err := checkAttribution(attributionLoc, d.Attribution); err != nil {
		return nil, err
	}
	if in.Visibility != nil {
		d.Visibility = string(*in.Visibility)
	}
	if err := access.SetVisibility(callerOf(ctx).Policy(), store.Private, d.Visibility); err != nil {
		return nil, forbiddenVisibility()
	}
	if in.Format != nil {
		d.Format = string(*in.Format)
	}
	if in.Minzoom != nil {
		d.MinZoom = *in.Minzoom
	}
	if in.Maxzoom != nil {
		d.MaxZoom = *in.Maxzoom
	}
	if v, err := in.Bounds.Get(); err == nil {
		d.Bounds = mustJSON(v)
	}
	if v, err := in.Center.Get(); err == nil {
		d.Center = mustJSON(v)
	}
	if v, err := in.VectorLayers.Get(); err == nil {
		d.VectorLayers = mustJSON(v)
	}
	if v, err := in.TileSize.Get(); err == nil {
		size := int(v)
		d.TileSize = &size
	}
	meta, err := s.upstreamMetadata(ctx, store.Dataset{}, in.Upstream)
	if err != nil {
		return nil, err
	}
	if err := applyUpstreamMetadata(&d, meta, given{minzoom: in.Minzoom != nil, maxzoom: in.Maxzoom != nil,
		bounds: in.Bounds.IsSpecified(), center: in.Center.IsSpecified(), attribution: in.Attribution.IsSpecified(),
		vectorLayers: in.VectorLayers.IsSpecified()}); err != nil {
		return nil, err
	}
	if err := checkDataset(&d); err != nil {
		return nil, err
	}
	d.ID = uuid.New() // the sealed upstream headers are bound to it
	if err := s.setUpstream(&d, in.Upstream); err != nil {
		return nil, err
	}
	d, err = s.store.CreateDataset(ctx, d)
	if err != nil {
		return nil, err
	}
	return gen.CreateDataset201JSONResponse(s.datasetOut(d)), nil
}

func (s *Server) GetDataset(ctx context.Context, req gen.GetDatasetRequestObject) (gen.GetDatasetResponseObject, error) {
	a, err := s.store.DatasetAccessOne(ctx, callerOf(ctx), req.DatasetId)
	if err == nil {
		err = a.See(callerOf(ctx))
	}
	if status, err := accessStatus(err); err != nil {
		return nil, err
	} else if status != 0 {
		return nil, notFound()
	}
	return gen.GetDataset200JSONResponse(s.datasetOut(a.Dataset)), nil
}

// ownedDataset resolves a dataset for a change: 404 when the caller does not see it, 403 when
// it sees it but it is another account's (public or shared).
func (s *Server) ownedDataset(ctx context.Context, id uuid.UUID) (store.DatasetAccess, int, error) {
	c := callerOf(ctx)
	a, err := s.store.DatasetAccessOne(ctx, c, id)
	if err == nil {
		err = a.Own(c)
	}
	status, err := accessStatus(err)
	return a, status, err
}

// accessStatus maps the access rules' refusals (and a dataset not found) to the HTTP status of
// a management call, once for every handler: 0 when allowed, or (0, err) for any other error.
func accessStatus(err error) (int, error) {
	switch {
	case err == nil:
		return 0, nil
	case errors.Is(err, store.ErrNotFound), errors.Is(err, access.ErrNotVisible):
		return http.StatusNotFound, nil
	case errors.Is(err, access.ErrNotOwner), errors.Is(err, access.ErrRestricted):
		return http.StatusForbidden, nil
	}
	return 0, err
}

func (s *Server) UpdateDataset(ctx context.Context, req gen.UpdateDatasetRequestObject) (gen.UpdateDatasetResponseObject, error) {
	current, status, err := s.ownedDataset(ctx, req.DatasetId)
	if err != nil {
		return nil, err
	}
	switch status {
	case 404:
		return nil, notFound()
	case 403:
		return nil, forbiddenOwner()
	}
	in := req.Body
	meta, err := s.upstreamMetadata(ctx, current.Dataset, in.Upstream)
	if err != nil {
		return nil, err
	}
	d, err := s.store.UpdateDataset(ctx, callerOf(ctx).AccountID, req.DatasetId, func(d *store.Dataset) (bool, error) {
		accessChanged := false
		if in.Name != nil {
			d.Name = *in.Name
		}
		if in.Description.IsSpecified() {
			d.Description = optional(in.Description)
		}
		if in.Visibility != nil && string(*in.Visibility) != d.Visibility {
			// Decided on the locked row: the visibility it moves from is the committed one.
			if err := access.SetVisibility(callerOf(ctx).Policy(), d.Visibility, string(*in.Visibility)); err != nil {
				return false, err
			}
			d.Visibility = string(*in.Visibility)
			accessChanged = true
		}
		if in.Format.IsSpecified() {
			prev := d.Format
			d.Format = ""
			if v, err := in.Format.Get(); err == nil {
				d.Format = string(v)
			}
			// Once a file is uploaded, the format is the file's: tiles could not be served as
			// anything else. (null resets to the kind's default, which must match too.)
			if d.TileFile != nil && d.Format != "" && d.Format != prev {
				return false, invalid([]any{"body", "format"}, d.Format, "the format comes from the uploaded MBTiles file ("+prev+")")
			}
			if d.TileFile != nil && d.Format == "" {
				d.Format = prev
			}
		}
		if in.Minzoom != nil {
			d.MinZoom = *in.Minzoom
		}
		if in.Maxzoom != nil {
			d.MaxZoom = *in.Maxzoom
		}
		if in.Bounds.IsSpecified() {
			d.Bounds = nil
			if v, err := in.Bounds.Get(); err == nil {
				d.Bounds = mustJSON(v)
			}
		}
		if in.Center.IsSpecified() {
			d.Center = nil
			if v, err := in.Center.Get(); err == nil {
				d.Center = mustJSON(v)
			}
		}
		if in.Attribution.IsSpecified() {
			d.Attribution = optional(in.Attribution)
			if err := checkAttribution(attributionLoc, d.Attribution); err != nil {
				return false, err
			}
		}
		if in.VectorLayers.IsSpecified() {
			d.VectorLayers = nil
			if v, err := in.VectorLayers.Get(); err == nil {
				d.VectorLayers = mustJSON(v)
			}
		}
		if in.TileSize.IsSpecified() {
			d.TileSize = nil
			if v, err := in.TileSize.Get(); err == nil {
				size := int(v)
				d.TileSize = &size
			}
		}
		if err := s.setUpstream(d, in.Upstream); err != nil {
			return false, err
		}
		if err := applyUpstreamMetadata(d, meta, given{minzoom: in.Minzoom != nil, maxzoom: in.Maxzoom != nil,
			bounds: in.Bounds.IsSpecified(), center: in.Center.IsSpecified(), attribution: in.Attribution.IsSpecified(),
			vectorLayers: in.VectorLayers.IsSpecified()}); err != nil {
			return false, err
		}
		return accessChanged, checkDataset(d)
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound()
	}
	if errors.Is(err, access.ErrVisibilityNeedsAdmin) {
		return nil, forbiddenVisibility()
	}
	if err != nil {
		return nil, err
	}
	return gen.UpdateDataset200JSONResponse(s.datasetOut(d)), nil
}

func (s *Server) DeleteDataset(ctx context.Context, req gen.DeleteDatasetRequestObject) (gen.DeleteDatasetResponseObject, error) {
	_, status, err := s.ownedDataset(ctx, req.DatasetId)
	if err != nil {
		return nil, err
	}
	switch status {
	case 404:
		return nil, notFound()
	case 403:
		return nil, forbiddenOwner()
	}
	d, err := s.store.DeleteDataset(ctx, callerOf(ctx).AccountID, req.DatasetId)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound()
	}
	if err != nil {
		return nil, err
	}
	s.datasetGone(d)
	return gen.DeleteDataset204Response{}, nil
}

// datasetGone forgets a deleted dataset's tiles: the open file handle and the file itself.
func (s *Server) datasetGone(d store.Dataset) {
	if d.TileFile == nil {
		return
	}
	if err := s.tilestore.Remove(*d.TileFile); err != nil {
		s.log.Warn("remove tiles of deleted dataset", "dataset", d.ID, "err", err)
	}
}

var rasterFormats = map[string]bool{"png": true, "jpg": true, "webp": true}

// checkDataset applies defaults and the rules the schema cannot express, naming the field.
func checkDataset(d *store.Dataset) error {
	switch d.Kind {
	case "vector":
		if d.Format == "" {
			d.Format = "pbf"
		}
		if d.Format != "pbf" {
			return invalid([]any{"body", "format"}, d.Format, "a vector dataset's format is pbf")
		}
		if d.TileSize != nil {
			return invalid([]any{"body", "tile_size"}, *d.TileSize, "tile_size applies to raster datasets only")
		}
	case "raster":
		if d.Format == "" {
			d.Format = "png"
		}
		if !rasterFormats[d.Format] {
			return invalid([]any{"body", "format"}, d.Format, "a raster dataset's format is png, jpg or webp")
		}
		if d.TileSize == nil {
			size := 256
			d.TileSize = &size
		}
		if d.VectorLayers != nil {
			return invalid([]any{"body", "vector_layers"}, nil, "vector_layers applies to vector datasets only")
		}
	}
	if d.MinZoom > d.MaxZoom {
		return invalid([]any{"body", "maxzoom"}, d.MaxZoom, fmt.Sprintf("maxzoom must be at least minzoom (%d)", d.MinZoom))
	}
	if d.Bounds != nil {
		var b []float64
		_ = json.Unmarshal(d.Bounds, &b)
		limits := [4]float64{180, 90, 180, 90}
		for i, v := range b {
			if v < -limits[i] || v > limits[i] {
				return invalid([]any{"body", "bounds", i}, v, fmt.Sprintf("must be between %g and %g", -limits[i], limits[i]))
			}
		}
		if len(b) == 4 && b[1] > b[3] {
			return invalid([]any{"body", "bounds", 3}, b[3], "north must not be south of south")
		}
	}
	if d.Center != nil {
		var c []float64
		_ = json.Unmarshal(d.Center, &c)
		if len(c) == 3 {
			if c[0] < -180 || c[0] > 180 {
				return invalid([]any{"body", "center", 0}, c[0], "longitude must be between -180 and 180")
			}
			if c[1] < -90 || c[1] > 90 {
				return invalid([]any{"body", "center", 1}, c[1], "latitude must be between -90 and 90")
			}
			if c[2] < 0 || c[2] > 24 || c[2] != float64(int(c[2])) {
				return invalid([]any{"body", "center", 2}, c[2], "zoom must be a whole number from 0 to 24")
			}
		}
	}
	return nil
}

func mustJSON(v any) store.JSON {
	b, err := json.Marshal(v)
	if err != nil {
		// Values come from decoded JSON; they always encode.
		panic(fmt.Sprintf("encode %T: %v", v, err))
	}
	return b
}

func datasetOut(d store.Dataset) gen.Dataset {
	out := gen.Dataset{
		Id: d.ID, AccountId: d.AccountID, Name: d.Name, Description: nullableOf(d.Description),
		Kind: gen.DatasetKind(d.Kind), Visibility: gen.Visibility(d.Visibility), Format: d.Format,
		Minzoom: d.MinZoom, Maxzoom: d.MaxZoom, Attribution: nullableOf(d.Attribution),
		TileSize: nullableOf(d.TileSize), AccessVersion: d.AccessVersion, HasTiles: d.TileFile != nil,
		Created: d.Created, Changed: d.Changed,
		Bounds: nullableJSON[gen.Bounds](d.Bounds), Center: nullableJSON[gen.Center](d.Center),
		VectorLayers: nullableJSON[[]gen.VectorLayer](d.VectorLayers),
	}
	return out
}

func nullableJSON[T any](raw store.JSON) nullable.Nullable[T] {
	var v T
	if raw == nil || json.Unmarshal(raw, &v) != nil {
		return nullable.NewNullNullable[T]()
	}
	return nullable.NewNullableWithValue(v)
}

func (s *Server) ListGrants(ctx context.Context, req gen.ListGrantsRequestObject) (gen.ListGrantsResponseObject, error) {
	_, status, err := s.ownedDataset(ctx, req.DatasetId)
	if err != nil {
		return nil, err
	}
	switch status {
	case 404:
		return nil, notFound()
	case 403:
		return nil, fail(http.StatusForbidden, "Only the dataset's own account may see its grants")
	}
	gs, err := s.store.ListGrants(ctx, req.DatasetId)
	if err != nil {
		return nil, err
	}
	out := gen.ListGrants200JSONResponse{Items: make([]gen.Grant, len(gs))}
	for i, g := range gs {
		out.Items[i] = grantOut(g)
	}
	return out, nil
}

func (s *Server) CreateGrant(ctx context.Context, req gen.CreateGrantRequestObject) (gen.CreateGrantResponseObject, error) {
	in := req.Body
	if (in.AccountId == nil) == (in.PrincipalId == nil) {
		return nil, invalid([]any{"body"}, nil, "give exactly one of account_id and principal_id")
	}
	a, status, err := s.ownedDataset(ctx, req.DatasetId)
	if err != nil {
		return nil, err
	}
	switch status {
	case 404:
		return nil, notFound()
	case 403:
		return nil, forbiddenOwner()
	}
	g, err := s.store.CreateGrant(ctx, a.AccountID, req.DatasetId, in.AccountId, in.PrincipalId)
	switch {
	case errors.Is(err, store.ErrGrantTarget):
		field := "account_id"
		var input any = in.AccountId
		if in.PrincipalId != nil {
			field, input = "principal_id", in.PrincipalId
		}
		return nil, invalid([]any{"body", field}, input, strings.TrimPrefix(err.Error(), store.ErrGrantTarget.Error()+": "))
	case errors.Is(err, store.ErrConflict):
		return nil, fail(http.StatusConflict, "That grant already exists")
	case err != nil:
		return nil, err
	}
	return gen.CreateGrant201JSONResponse(grantOut(g)), nil
}

func (s *Server) DeleteGrant(ctx context.Context, req gen.DeleteGrantRequestObject) (gen.DeleteGrantResponseObject, error) {
	_, status, err := s.ownedDataset(ctx, req.DatasetId)
	if err != nil {
		return nil, err
	}
	switch status {
	case 404:
		return nil, notFound()
	case 403:
		return nil, forbiddenOwner()
	}
	err = s.store.DeleteGrant(ctx, req.DatasetId, req.GrantId)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fail(http.StatusNotFound, "Grant not found")
	}
	if err != nil {
		return nil, err
	}
	return gen.DeleteGrant204Response{}, nil
}

func grantOut(g store.Grant) gen.Grant {
	return gen.Grant{Id: g.ID, DatasetId: g.DatasetID, AccountId: nullableOf(g.AccountID), PrincipalId: nullableOf(g.PrincipalID), Created: g.Created}
}
