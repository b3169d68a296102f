package server_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/oapi-codegen/nullable"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

const xssAttribution = `© x <img src=x onerror="window.pwned=1">`

// An attribution reaches other sites' pages as HTML (MapLibre's innerHTML): the API takes text
// with links and a few inline tags, refuses anything else with a 422 naming the field and
// changes nothing; what was stored before the rule is served escaped, in TileJSON and tokens.
func TestAttributionRule(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		ctx := context.Background()
		loc := func(body []byte) ([]any, string) {
			var v struct {
				Detail []struct {
					Loc []any
					Msg string
				}
			}
			must(t, json.Unmarshal(body, &v))
			if len(v.Detail) != 1 {
				t.Fatalf("422 body %s", body)
			}
			return v.Detail[0].Loc, v.Detail[0].Msg
		}

		before := countDatasets(t, e)
		for _, bad := range []string{xssAttribution, `<a href="javascript:alert(1)">x</a>`, `<a href="https://x.example/" onclick="x()">x</a>`, `<b>open`} {
			r, err := e.c.CreateDatasetWithResponse(ctx, gen.DatasetCreate{Name: "x", Kind: gen.DatasetKindVector,
				Attribution: nullable.NewNullableWithValue(bad)})
			must(t, err)
			wantStatus(t, r.StatusCode(), 422, r.Body)
			if l, msg := loc(r.Body); !sameLoc(l, []any{"body", "attribution"}) || !strings.Contains(msg, "attribution ") {
				t.Errorf("create with %q: %s", bad, r.Body)
			}
		}
		if n := countDatasets(t, e); n != before {
			t.Errorf("refused creates made datasets: %d → %d", before, n)
		}

		good := `&copy; <a href="https://www.openstreetmap.org/copyright" target="_blank">OpenStreetMap</a> <b>contributors</b>`
		r, err := e.c.CreateDatasetWithResponse(ctx, gen.DatasetCreate{Name: "osm", Kind: gen.DatasetKindVector,
			Attribution: nullable.NewNullableWithValue(good)})
		must(t, err)
		wantStatus(t, r.StatusCode(), 201, r.Body)
		d := *r.JSON201
		pr, err := e.c.UpdateDatasetWithResponse(ctx, d.Id, gen.DatasetUpdate{Attribution: nullable.NewNullableWithValue(xssAttribution)})
		must(t, err)
		wantStatus(t, pr.StatusCode(), 422, pr.Body)
		if l, _ := loc(pr.Body); !sameLoc(l, []any{"body", "attribution"}) {
			t.Errorf("patch: %s", pr.Body)
		}
		gr, err := e.c.GetDatasetWithResponse(ctx, d.Id)
		must(t, err)
		if a, _ := gr.JSON200.Attribution.Get(); a != good {
			t.Errorf("after a refused patch the attribution is %q", a)
		}
		noAttribution := tlVectorFile()
		noAttribution.Attribution = "" // the upload keeps the dataset's own
		e.uploadOK(t, d.Id, noAttribution)
		if _, tj := e.tileJSON(t, d.Id, "", e.acct.Token); tj == nil || tj.Attribution == nil || *tj.Attribution != good {
			t.Errorf("an accepted attribution is served changed: %+v", tj)
		}

		// A row stored before the rule (written past the API, as an older version could).
		old, err := e.c.CreateDatasetWithResponse(ctx, gen.DatasetCreate{Name: "old", Kind: gen.DatasetKindVector})
		must(t, err)
		must(t, db.Store.DB().Exec("UPDATE datasets SET attribution = ? WHERE id = ?", xssAttribution, old.JSON201.Id.String()).Error)
		e.uploadOK(t, old.JSON201.Id, noAttribution)
		escaped := `© x &lt;img src=x onerror=&#34;window.pwned=1&#34;&gt;`
		if _, tj := e.tileJSON(t, old.JSON201.Id, "", e.acct.Token); tj == nil || tj.Attribution == nil || *tj.Attribution != escaped {
			t.Errorf("TileJSON of an old row: %+v, want %q", tj, escaped)
		}
		tr, err := e.c.GetTileTokenWithResponse(ctx, old.JSON201.Id)
		must(t, err)
		wantStatus(t, tr.StatusCode(), 200, tr.Body)
		if vt, err := tr.JSON200.AsVectorTileToken(); err != nil || vt.Attribution == nil || *vt.Attribution != escaped {
			t.Errorf("token of an old row: %s", tr.Body)
		}
		if strings.Contains(string(tr.Body), "<img") {
			t.Errorf("markup in a token: %s", tr.Body)
		}
	})
}
