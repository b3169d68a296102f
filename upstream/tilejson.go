package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// MaxTileJSONBytes bounds an upstream's TileJSON document: real ones are a few KiB, a large
// vector_layers list some hundreds.
const MaxTileJSONBytes = 1 << 20

// ErrNotTileJSON: the upstream answered, but not with a TileJSON document tilegate can use.
var ErrNotTileJSON = errors.New("not a usable TileJSON document")

// Metadata is what a dataset takes from its upstream's TileJSON: each field nil when the
// document does not have it. Values are checked for shape and range here; what they mean for a
// dataset (zoom limits, the attribution rule) is checked where the dataset's fields are.
type Metadata struct {
	MinZoom, MaxZoom *int
	Bounds           []float64 // 4 numbers
	Center           []float64 // 2 or 3 numbers
	Attribution      *string
	VectorLayers     []VectorLayer
}

// VectorLayer is one entry of TileJSON's vector_layers, reduced to the fields tilegate serves.
type VectorLayer struct {
	ID          string            `json:"id"`
	Description *string           `json:"description,omitempty"`
	MinZoom     *int              `json:"minzoom,omitempty"`
	MaxZoom     *int              `json:"maxzoom,omitempty"`
	Fields      map[string]string `json:"fields,omitempty"`
}

// TileJSON fetches and reads an upstream's TileJSON document with the given headers, through
// the Fetcher's client (its deadline, the address guard, no redirects) and the host's request
// slots. Errors are ErrBadGateway, ErrTimeout, ErrSaturated or ErrNotTileJSON, wrapped with
// what went wrong; the upstream's body is never part of them.
func (f *Fetcher) TileJSON(ctx context.Context, target string, headers map[string]string) (Metadata, error) {
	u, err := url.Parse(target)
	if err != nil {
		return Metadata{}, fmt.Errorf("%w: bad URL", ErrBadGateway)
	}
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	release, err := f.acquire(ctx, u.Host)
	if err != nil {
		return Metadata{}, err
	}
	defer release()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return Metadata{}, fmt.Errorf("%w: bad URL", ErrBadGateway)
	}
	for name, value := range headers {
		req.Header.Set(name, value)
	}
	req.Header.Set("User-Agent", f.cfg.UserAgent)
	req.Header.Set("Accept", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return Metadata{}, classifyTransport(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Metadata{}, fmt.Errorf("%w: status %d", ErrBadGateway, resp.StatusCode)
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt != "application/json" && !strings.HasSuffix(mt, "+json") && mt != "text/plain" {
		return Metadata{}, fmt.Errorf("%w: content type %q", ErrNotTileJSON, truncate(mt, 60))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxTileJSONBytes+1))
	if err != nil {
		return Metadata{}, classifyTransport(err)
	}
	if len(body) > MaxTileJSONBytes {
		return Metadata{}, fmt.Errorf("%w: larger than %d bytes", ErrNotTileJSON, MaxTileJSONBytes)
	}
	return ParseTileJSON(body)
}

// ParseTileJSON reads the fields a dataset takes from a TileJSON document, refusing values of
// the wrong shape or out of range. Other fields are ignored.
func ParseTileJSON(body []byte) (Metadata, error) {
	var doc struct {
		MinZoom      *float64          `json:"minzoom"`
		MaxZoom      *float64          `json:"maxzoom"`
		Bounds       []float64         `json:"bounds"`
		Center       []float64         `json:"center"`
		Attribution  *string           `json:"attribution"`
		VectorLayers []json.RawMessage `json:"vector_layers"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return Metadata{}, fmt.Errorf("%w: %s", ErrNotTileJSON, jsonProblem(err))
	}
	var m Metadata
	var err error
	if m.MinZoom, err = zoom("minzoom", doc.MinZoom); err != nil {
		return Metadata{}, err
	}
	if m.MaxZoom, err = zoom("maxzoom", doc.MaxZoom); err != nil {
		return Metadata{}, err
	}
	if doc.Bounds != nil {
		if len(doc.Bounds) != 4 || !finite(doc.Bounds) {
			return Metadata{}, fmt.Errorf("%w: bounds must be 4 numbers", ErrNotTileJSON)
		}
		m.Bounds = doc.Bounds
	}
	if doc.Center != nil {
		if (len(doc.Center) != 2 && len(doc.Center) != 3) || !finite(doc.Center) {
			return Metadata{}, fmt.Errorf("%w: center must be 2 or 3 numbers", ErrNotTileJSON)
		}
		m.Center = doc.Center
	}
	m.Attribution = doc.Attribution
	if len(doc.VectorLayers) > 1000 {
		return Metadata{}, fmt.Errorf("%w: more than 1000 vector_layers", ErrNotTileJSON)
	}
	for i, raw := range doc.VectorLayers {
		var l VectorLayer
		if err := json.Unmarshal(raw, &l); err != nil || l.ID == "" {
			return Metadata{}, fmt.Errorf("%w: vector_layers[%d] needs an id and string fields", ErrNotTileJSON, i)
		}
		m.VectorLayers = append(m.VectorLayers, l)
	}
	return m, nil
}

func zoom(name string, v *float64) (*int, error) {
	if v == nil {
		return nil, nil
	}
	if *v != math.Trunc(*v) || *v < 0 || *v > 30 {
		return nil, fmt.Errorf("%w: %s must be an integer from 0 to 30", ErrNotTileJSON, name)
	}
	z := int(*v)
	return &z, nil
}

func finite(v []float64) bool {
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return false
		}
	}
	return true
}

// jsonProblem says what is wrong with a document without quoting it.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("%s has the wrong type", typ.Field)
	default:
		return "invalid JSON"
	}
}
