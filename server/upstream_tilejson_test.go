package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/oapi-codegen/nullable"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/internal/testpeer"
	"github.com/tilegate/tilegate/mbtiles"
	"github.com/tilegate/tilegate/server"
	"github.com/tilegate/tilegate/upstream"
)

func withTileJSON(up nullable.Nullable[gen.Upstream], url string) nullable.Nullable[gen.Upstream] {
	v := up.MustGet()
	v.Tilejson = nullable.NewNullableWithValue(url)
	return nullable.NewNullableWithValue(v)
}

// An upstream dataset takes its metadata from a real tile server's TileJSON (mbtileserver's),
// read once at the write: TileJSON and tokens then carry it as for a file dataset, fields the
// request sets win, and the URL is shown back.
func TestUpstreamTileJSONFillsMetadata(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{Upstream: loopbackUpstreams(t, upstream.Config{})})
		tilesDir := t.TempDir()
		must(t, mbtiles.WriteTestFile(filepath.Join(tilesDir, "roads.mbtiles"), mbtiles.TestFile{
			Format: "pbf", MinZoom: 2, MaxZoom: 9, Bounds: [4]float64{5.5, 45.5, 10.5, 47.5},
			Attribution:  `<a href="https://data.example/">© Data Example</a>`,
			VectorLayers: `[{"id":"roads","fields":{"class":"String"},"minzoom":2,"maxzoom":9}]`,
			Tiles:        map[[3]int][]byte{{2, 2, 1}: []byte("\x1a\x01x")}, Gzip: true,
		}))
		peer := testpeer.StartWithTileJSON(t, tilesDir)
		tpl := peer.URL + "/services/roads/tiles/{z}/{x}/{y}.pbf"
		tj := peer.URL + "/services/roads"

		d := e.upstreamDataset(t, gen.Private, withTileJSON(upstreamSetting(tpl, nil, ""), tj))
		if d.Minzoom != 2 || d.Maxzoom != 9 || !strings.Contains(d.Attribution.MustGet(), "© Data Example") {
			t.Errorf("dataset from TileJSON: zooms %d-%d, attribution %v", d.Minzoom, d.Maxzoom, d.Attribution)
		}
		b, _ := d.Bounds.Get()
		if len(b) != 4 || b[0] != 5.5 || b[3] != 47.5 {
			t.Errorf("bounds %v", b)
		}
		if layers, _ := d.VectorLayers.Get(); len(layers) != 1 || layers[0].Id != "roads" {
			t.Errorf("vector_layers %+v", layers)
		}
		if got := mustUpstream(t, d).Tilejson; got.MustGet() != tj {
			t.Errorf("upstream.tilejson shown as %v", got)
		}

		// Served as a file dataset's: the dataset's TileJSON carries what was read.
		r, doc := e.tileJSON(t, d.Id, e.token(t, e.c, d.Id), "")
		tlCheck(t, "tilejson", r, 200, "")
		if doc.Minzoom != 2 || doc.Maxzoom != 9 ||
			doc.Attribution == nil || !strings.Contains(*doc.Attribution, "Data Example") || doc.VectorLayers == nil || len(*doc.VectorLayers) != 1 {
			t.Errorf("served TileJSON %s", r.body)
		}

		// What the request sets wins over the upstream's document.
		maxz := 7
		r2, err := e.c.CreateDatasetWithResponse(context.Background(), gen.DatasetCreate{Name: "mine", Kind: gen.DatasetKindVector,
			Maxzoom: &maxz, Attribution: nullable.NewNullableWithValue("© Mine"), Upstream: withTileJSON(upstreamSetting(tpl, nil, ""), tj)})
		must(t, err)
		wantStatus(t, r2.StatusCode(), 201, r2.Body)
		if r2.JSON201.Maxzoom != 7 || r2.JSON201.Minzoom != 2 || r2.JSON201.Attribution.MustGet() != "© Mine" {
			t.Errorf("request's fields should win: %s", r2.Body)
		}
	})
}

// A TileJSON URL that is not allowed, cannot be read or is not TileJSON is a 422 at
// [body upstream tilejson] and changes nothing; the headers go with the TileJSON request.
func TestUpstreamTileJSONRefusals(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		var auth atomic.Value
		origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			auth.Store(r.Header.Get("Authorization"))
			switch r.URL.Path {
			case "/ok.json":
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"tilejson":"3.0.0","tiles":["x"],"minzoom":1,"maxzoom":12}`))
			case "/html":
				w.Header().Set("Content-Type", "text/html")
				_, _ = w.Write([]byte(`<html>`))
			case "/deep.json":
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"maxzoom":28}`))
			case "/xss.json":
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"attribution":"<img src=x onerror=alert(1)>"}`))
			case "/bad.json":
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"bounds":[1,2,3]}`))
			default:
				http.Error(w, "secret upstream error body", http.StatusInternalServerError)
			}
		}))
		defer origin.Close()
		e := tlStart(t, db, server.Config{Upstream: loopbackUpstreams(t, upstream.Config{})})
		tpl := origin.URL + "/{z}/{x}/{y}.pbf"
		before := countDatasets(t, e)
		for _, c := range []struct{ url, want string }{
			{origin.URL + "/missing", "status 500"},
			{origin.URL + "/html", "content type"},
			{origin.URL + "/deep.json", "above 24"},
			{origin.URL + "/bad.json", "bounds"},
			{origin.URL + "/xss.json", "attribution <img> is not allowed"},
			{"ftp://example.com/x.json", "scheme"},
			{"http://user:pw@127.0.0.1/x.json", "credentials"},
		} {
			r, err := e.c.CreateDatasetWithResponse(context.Background(), gen.DatasetCreate{Name: "x", Kind: gen.DatasetKindVector,
				Upstream: withTileJSON(upstreamSetting(tpl, nil, ""), c.url)})
			must(t, err)
			wantStatus(t, r.StatusCode(), 422, r.Body)
			var v struct {
				Detail []struct {
					Loc []any
					Msg string
				}
			}
			must(t, json.Unmarshal(r.Body, &v))
			if len(v.Detail) != 1 || !sameLoc(v.Detail[0].Loc, []any{"body", "upstream", "tilejson"}) || !strings.Contains(v.Detail[0].Msg, c.want) {
				t.Errorf("%s: %s, want loc [body upstream tilejson] saying %q", c.url, r.Body, c.want)
			}
			if strings.Contains(string(r.Body), "secret upstream error body") {
				t.Errorf("%s: the upstream's body passed through: %s", c.url, r.Body)
			}
		}
		if n := countDatasets(t, e); n != before {
			t.Errorf("refused writes created datasets: %d → %d", before, n)
		}

		// A change reads it too, with the stored (masked) header.
		d := e.upstreamDataset(t, gen.Private, upstreamSetting(tpl, map[string]string{"Authorization": "Bearer k"}, ""))
		pr, err := e.c.UpdateDatasetWithResponse(context.Background(), d.Id, gen.DatasetUpdate{
			Upstream: withTileJSON(upstreamSetting(tpl, map[string]string{"Authorization": "***"}, ""), origin.URL+"/ok.json")})
		must(t, err)
		wantStatus(t, pr.StatusCode(), 200, pr.Body)
		if pr.JSON200.Minzoom != 1 || pr.JSON200.Maxzoom != 12 || auth.Load() != "Bearer k" {
			t.Errorf("change with TileJSON: zooms %d-%d, header sent %v", pr.JSON200.Minzoom, pr.JSON200.Maxzoom, auth.Load())
		}
	})
}
