package server

import (
	"context"
	"errors"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/store"
)

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

// UploadTiles and GetTileJSON arrive with issue "Tile delivery".
func (s *Server) UploadTiles(ctx context.Context, req gen.UploadTilesRequestObject) (gen.UploadTilesResponseObject, error) {
	return nil, errors.New("not implemented yet")
}

func (s *Server) GetTileJSON(ctx context.Context, req gen.GetTileJSONRequestObject) (gen.GetTileJSONResponseObject, error) {
	return nil, errors.New("not implemented yet")
}
