package server

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/tilegate/tilegate/tileurl"
)

// tileDispatch serves tile requests through the same middleware and handler as echo would, but
// with the chain built once: echo v4 wraps every middleware around the handler anew on each
// request (a closure each) and walks its router. A request is taken here only when echo would
// route it to tileRoute for sure — GET or HEAD, /api/tiles/ and four plain segments, the first
// not a static route's ("token", "tokens") — and everything else goes to echo as before.
//
// Why: the chain's closures were 9 of a tile request's 18 allocations (go test ./server -run
// XXX -bench BenchmarkTileRequest -benchmem: 18 → 9 allocs per public tile request, 2026-11-24;
// the rest are net/http's and httptest's). TestTileDispatchMatchesEcho compares the answers of
// both ways over a table of requests.
type tileDispatch struct {
	e     *echo.Echo
	tiles echo.HandlerFunc
}

// tileParamNames are tileRoute's parameters, in its order.
var tileParamNames = []string{"dataset_id", "z", "x", "tile"}

func (d *tileDispatch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead || r.URL.RawPath != "" {
		d.e.ServeHTTP(w, r)
		return
	}
	segs, ok := tileurl.Segments(r.URL.Path)
	if !ok {
		d.e.ServeHTTP(w, r)
		return
	}
	c := d.e.AcquireContext()
	c.Reset(r, w)
	// What echo's router sets for tileRoute. ParamValues is the context's own storage (at least
	// echo's maxParam long, and SetParamNames makes room for ours): filled in place, it costs
	// no allocation, where SetParamValues' variadic slice would.
	c.SetPath(tileRoute)
	c.SetParamNames(tileParamNames...)
	copy(c.ParamValues(), segs[:])
	if err := d.tiles(c); err != nil {
		d.e.HTTPErrorHandler(err, c)
	}
	d.e.ReleaseContext(c)
}

// tileChain is what echo runs for a request routed to tileRoute, in the same order: the
// pre-routing middleware (e.Pre), the middleware of every route (e.Use), around h (the API
// group's contract and getTile). Handler passes the very lists it gives echo.
func tileChain(h echo.HandlerFunc, pre, use []echo.MiddlewareFunc) echo.HandlerFunc {
	for i := len(use) - 1; i >= 0; i-- {
		h = use[i](h)
	}
	for i := len(pre) - 1; i >= 0; i-- {
		h = pre[i](h)
	}
	return h
}
