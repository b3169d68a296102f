package server

import (
	"bytes"
	"io"
	"net/http"

	"github.com/tilegate/tilegate/internal/fastapi"
)

// The FastAPI 422 shape and the translation of kin-openapi's errors into it live in
// internal/fastapi; the server only wires them in (contract.go, errors.go).
type fieldError = fastapi.Error

// translate turns openapi3filter's errors into FastAPI's shape (see fastapi.FromValidation).
func translate(err error, r *http.Request, pathParams map[string]string, body []byte) []fieldError {
	return fastapi.FromValidation(err, r, pathParams, body)
}

// plural is used by the tile path's compiled query rules (tiles.go).
func plural(n uint64, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// readBody reads a request body for validation and puts it back for the handler.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, err
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b, nil
}
