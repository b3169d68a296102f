package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/oapi-codegen/nullable"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
	"github.com/tilegate/tilegate/tiletoken"
)

func testSigner(t testing.TB, now func() time.Time) *tiletoken.Signer {
	t.Helper()
	key := tiletoken.Key{ID: "k1", Secret: bytes.Repeat([]byte{7}, 32)}
	opts := []tiletoken.Option{}
	if now != nil {
		opts = append(opts, tiletoken.WithClock(now))
	}
	s, err := tiletoken.New([]tiletoken.Key{key}, opts...)
	must(t, err)
	return s
}

func TestSingleTileTokens(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		signer := testSigner(t, nil)
		env := testenv.Start(t, db, server.Config{Signer: signer, PublicURL: "https://tiles.example.com"})
		acct := env.NewAccount(t)
		c := env.Client(t, acct.Token)
		ctx := context.Background()
		v := createDataset(t, c, gen.DatasetCreate{Name: "v", Kind: gen.DatasetKindVector, Minzoom: ptr(2), Maxzoom: ptr(12),
			Bounds:       nullable.NewNullableWithValue(gen.Bounds{1, 2, 3, 4}),
			Attribution:  nullable.NewNullableWithValue("© us"),
			VectorLayers: nullable.NewNullableWithValue([]gen.VectorLayer{{Id: "water"}})})
		r := createDataset(t, c, gen.DatasetCreate{Name: "r", Kind: gen.DatasetKindRaster, Format: ptr(gen.DatasetCreateFormatWebp),
			TileSize: nullable.NewNullableWithValue(gen.DatasetCreateTileSizeN512)})

		res, err := c.GetTileTokenWithResponse(ctx, v.Id)
		must(t, err)
		wantStatus(t, res.StatusCode(), 200, res.Body)
		vt, err := res.JSON200.AsVectorTileToken()
		must(t, err)
		wantScope := fmt.Sprintf("%s:%s:1", acct.ID, v.Id)
		if vt.Kind != "vector" || vt.DatasetId != v.Id || vt.Scope != wantScope || vt.Minzoom != 2 || vt.Maxzoom != 12 ||
			vt.Attribution == nil || *vt.Attribution != "© us" || len(vt.VectorLayers) != 1 || vt.VectorLayers[0].Id != "water" {
			t.Errorf("vector token: %s", res.Body)
		}
		if vt.ExpiresIn <= 60 || vt.ExpiresIn > 960 || vt.Exp%900 != 0 {
			t.Errorf("exp %d expires_in %d", vt.Exp, vt.ExpiresIn)
		}
		if err := signer.Verify(wantScope, vt.Scope, vt.Sig, strconv.FormatInt(vt.Exp, 10)); err != nil {
			t.Errorf("token does not verify: %v", err)
		}
		wantTiles := fmt.Sprintf("https://tiles.example.com/api/tiles/%s/{z}/{x}/{y}.pbf?sig=%s&exp=%d&scope=%s",
			v.Id, vt.Sig, vt.Exp, strings.ReplaceAll(wantScope, ":", "%3A"))
		if len(vt.Tiles) != 1 || vt.Tiles[0] != wantTiles {
			t.Errorf("tiles = %v, want [%s]", vt.Tiles, wantTiles)
		}
		// A MapLibre source is {type: t.kind, ...t}: the raw JSON carries the fields MapLibre reads.
		var raw map[string]any
		must(t, json.Unmarshal(res.Body, &raw))
		for _, k := range []string{"kind", "tiles", "minzoom", "maxzoom", "bounds", "vector_layers", "attribution", "sig", "exp", "scope", "expires_in"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("vector token lacks %q", k)
			}
		}

		res, err = c.GetTileTokenWithResponse(ctx, r.Id)
		must(t, err)
		rt, err := res.JSON200.AsRasterTileToken()
		must(t, err)
		if rt.Kind != "raster" || rt.Format != "webp" || rt.TileSize != 512 || rt.MapLibreTileSize != 512 || rt.TileUrl != rt.Tiles[0] || !strings.Contains(rt.TileUrl, "/{z}/{x}/{y}.webp?sig=") {
			t.Errorf("raster token: %s", res.Body)
		}

		if fmt.Sprint(rt.Bounds) != "[-180 -85.0511287798066 180 85.0511287798066]" || rt.Attribution != nil {
			t.Errorf("raster token without bounds and attribution: %s", res.Body)
		}

		// Tokens minted in one window are byte-identical (cacheable URLs).
		again, err := c.GetTileTokenWithResponse(ctx, v.Id)
		must(t, err)
		vt2, _ := again.JSON200.AsVectorTileToken()
		if vt2.Sig != vt.Sig || vt2.Exp != vt.Exp {
			t.Errorf("same window, different tokens: %s vs %s", vt.Sig, vt2.Sig)
		}

		// A visibility change bumps access_version and retires the token.
		_, err = c.UpdateDatasetWithResponse(ctx, v.Id, gen.DatasetUpdate{Visibility: vis(gen.Restricted)})
		must(t, err)
		err = signer.Verify(fmt.Sprintf("%s:%s:2", acct.ID, v.Id), vt.Scope, vt.Sig, strconv.FormatInt(vt.Exp, 10))
		if err == nil {
			t.Errorf("a token of access_version 1 verifies after the bump")
		}
	})
}

func TestTokenBatch(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		ctx := context.Background()
		owner := env.NewAccount(t)
		admin := env.Client(t, owner.Token)
		editor := env.Client(t, env.NewPrincipal(t, owner.ID, "editor").Token)
		other := env.NewAccount(t)
		otherC := env.Client(t, other.Token)

		own := createDataset(t, admin, gen.DatasetCreate{Name: "own", Kind: gen.DatasetKindVector})
		raster := createDataset(t, admin, gen.DatasetCreate{Name: "raster", Kind: gen.DatasetKindRaster})
		restricted := createDataset(t, admin, gen.DatasetCreate{Name: "restricted", Kind: gen.DatasetKindVector, Visibility: vis(gen.Restricted)})
		foreign := createDataset(t, otherC, gen.DatasetCreate{Name: "foreign", Kind: gen.DatasetKindVector})
		public := createDataset(t, otherC, gen.DatasetCreate{Name: "public", Kind: gen.DatasetKindVector, Visibility: vis(gen.Public)})
		shared := createDataset(t, otherC, gen.DatasetCreate{Name: "shared", Kind: gen.DatasetKindRaster})
		g, err := otherC.CreateGrantWithResponse(ctx, shared.Id, gen.GrantCreate{AccountId: &owner.ID})
		must(t, err)
		wantStatus(t, g.StatusCode(), 201, g.Body)
		missing := uuid.New()

		ids := []uuid.UUID{restricted.Id, own.Id, missing, foreign.Id, own.Id, public.Id, shared.Id, raster.Id, restricted.Id}
		res, err := editor.GetTileTokensBatchWithResponse(ctx, gen.TileTokenBatchRequest{DatasetIds: ids})
		must(t, err)
		wantStatus(t, res.StatusCode(), 200, res.Body)

		// First-seen order, duplicates removed, lower-case keys.
		wantOrder := []uuid.UUID{restricted.Id, own.Id, missing, foreign.Id, public.Id, shared.Id, raster.Id}
		dec := json.NewDecoder(bytes.NewReader(res.Body))
		var order []string
		depth := 0
		for {
			tok, err := dec.Token()
			if err != nil {
				break
			}
			switch v := tok.(type) {
			case json.Delim:
				if v == '{' || v == '[' {
					depth++
				} else {
					depth--
				}
			case string:
				if depth == 2 && dec.More() {
					if _, err := uuid.Parse(v); err == nil {
						order = append(order, v)
						var skip json.RawMessage
						must(t, dec.Decode(&skip))
					}
				}
			}
		}
		if fmt.Sprint(order) != fmt.Sprint(wantOrder) {
			t.Errorf("order %v, want %v", order, wantOrder)
		}

		entries := res.JSON200.Tokens
		if len(entries) != len(wantOrder) {
			t.Fatalf("%d entries, want %d", len(entries), len(wantOrder))
		}
		wantErr := map[uuid.UUID]int{restricted.Id: 403, missing: 404, foreign.Id: 404}
		for _, id := range wantOrder {
			e := entries[id.String()]
			raw, _ := e.MarshalJSON()
			if status, ok := wantErr[id]; ok {
				te, err := e.AsTileTokenError()
				if err != nil || te.Status != gen.TileTokenErrorStatus(status) || te.Error == "" {
					t.Errorf("%s: %s, want error %d", id, raw, status)
				}
				continue
			}
			var probe struct {
				Kind  string `json:"kind"`
				Error string `json:"error"`
				Sig   string `json:"sig"`
			}
			must(t, json.Unmarshal(raw, &probe))
			if probe.Error != "" || probe.Sig == "" {
				t.Errorf("%s: %s, want a token", id, raw)
			}
		}
		single, err := editor.GetTileTokenWithResponse(ctx, own.Id)
		must(t, err)
		st, _ := single.JSON200.AsVectorTileToken()
		bt, _ := entries[own.Id.String()].AsVectorTileToken()
		if st.Sig != bt.Sig || st.Scope != bt.Scope || st.Exp != bt.Exp {
			t.Errorf("batch token differs from the single token")
		}
		// The owner's admin may use its restricted dataset.
		ares, err := admin.GetTileTokensBatchWithResponse(ctx, gen.TileTokenBatchRequest{DatasetIds: []uuid.UUID{restricted.Id}})
		must(t, err)
		if bytes.Contains(ares.Body, []byte(`"error"`)) || !bytes.Contains(ares.Body, []byte(`"sig"`)) {
			t.Errorf("admin refused its restricted dataset: %s", ares.Body)
		}
	})
}

func TestTokenBatchRejects(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		acct := env.NewAccount(t)
		hc := env.HTTPClient(t)
		idList := func(n int) string {
			parts := make([]string, n)
			for i := range parts {
				parts[i] = `"` + uuid.NewString() + `"`
			}
			return "[" + strings.Join(parts, ",") + "]"
		}
		cases := []struct {
			name, body string
			loc        []any
			typ        string
		}{
			{"empty", `{"dataset_ids":[]}`, []any{"body", "dataset_ids"}, "too_short"},
			{"51 ids", `{"dataset_ids":` + idList(51) + `}`, []any{"body", "dataset_ids"}, "too_long"},
			{"bad item", `{"dataset_ids":["` + uuid.NewString() + `","` + uuid.NewString() + `","nope"]}`, []any{"body", "dataset_ids", float64(2)}, "uuid_parsing"},
			{"missing", `{}`, []any{"body", "dataset_ids"}, "missing"},
			{"not a list", `{"dataset_ids":"x"}`, []any{"body", "dataset_ids"}, "list_type"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				d := doJSON(t, hc, env.URL, acct.Token, "POST", "/api/tiles/tokens/", tc.body, 422)
				if fmt.Sprint(d[0].Loc) != fmt.Sprint(tc.loc) || d[0].Type != tc.typ {
					t.Errorf("got %v %s, want %v %s", d[0].Loc, d[0].Type, tc.loc, tc.typ)
				}
			})
		}
		// The GeoLens example id (upper case, not an RFC 4122 version) is accepted.
		doJSON(t, hc, env.URL, acct.Token, "POST", "/api/tiles/tokens/", `{"dataset_ids":["2489E9AD-2EE2-8E00-8EC9-32D5F69181C0"]}`, 200)
		// An invalid credential fails the whole call; none is an anonymous caller, who gets
		// public datasets only (TestAnonymousMinting): an unknown id is a 404 entry, or a 404.
		doJSON(t, hc, env.URL, corrupt(acct.Token, 20), "POST", "/api/tiles/tokens/", `{"dataset_ids":["`+uuid.NewString()+`"]}`, 401)
		doJSON(t, hc, env.URL, corrupt(acct.Token, 20), "GET", "/api/tiles/token/"+uuid.NewString()+"/", "", 401)
		doJSON(t, hc, env.URL, "", "POST", "/api/tiles/tokens/", `{"dataset_ids":["`+uuid.NewString()+`"]}`, 200)
		doJSON(t, hc, env.URL, "", "GET", "/api/tiles/token/"+uuid.NewString()+"/", "", 404)
	})
}

// A whole batch — metadata and every access check, grants included — is one SQL statement once
// the caller's credential is cached.
func TestTokenBatchIsOneStatement(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		ctx := context.Background()
		owner := env.NewAccount(t)
		admin := env.Client(t, owner.Token)
		viewerP := env.NewPrincipal(t, owner.ID, "viewer")
		viewer := env.Client(t, viewerP.Token)
		other := env.NewAccount(t)
		otherC := env.Client(t, other.Token)
		var ids []uuid.UUID
		for i := range 10 {
			ids = append(ids, createDataset(t, admin, gen.DatasetCreate{Name: fmt.Sprint("own", i), Kind: gen.DatasetKindVector}).Id)
			r := createDataset(t, admin, gen.DatasetCreate{Name: fmt.Sprint("restricted", i), Kind: gen.DatasetKindRaster, Visibility: vis(gen.Restricted)})
			if i%2 == 0 {
				_, err := admin.CreateGrantWithResponse(ctx, r.Id, gen.GrantCreate{PrincipalId: &viewerP.PrincipalID})
				must(t, err)
			}
			ids = append(ids, r.Id)
			s := createDataset(t, otherC, gen.DatasetCreate{Name: fmt.Sprint("shared", i), Kind: gen.DatasetKindVector})
			_, err := otherC.CreateGrantWithResponse(ctx, s.Id, gen.GrantCreate{AccountId: &owner.ID})
			must(t, err)
			ids = append(ids, s.Id)
			ids = append(ids, createDataset(t, otherC, gen.DatasetCreate{Name: fmt.Sprint("public", i), Kind: gen.DatasetKindVector, Visibility: vis(gen.Public)}).Id)
			ids = append(ids, createDataset(t, otherC, gen.DatasetCreate{Name: fmt.Sprint("foreign", i), Kind: gen.DatasetKindVector}).Id)
		}
		// Groups 0..8 (45 ids) and 5 ids that do not exist.
		ids = ids[:45]
		for range 5 {
			ids = append(ids, uuid.New())
		}
		warm, err := viewer.ListAPIKeysWithResponse(ctx, nil) // caches the credential
		must(t, err)
		wantStatus(t, warm.StatusCode(), 200, warm.Body)

		before := db.Statements.Load()
		res, err := viewer.GetTileTokensBatchWithResponse(ctx, gen.TileTokenBatchRequest{DatasetIds: ids})
		must(t, err)
		n := db.Statements.Load() - before
		wantStatus(t, res.StatusCode(), 200, res.Body)
		if len(res.JSON200.Tokens) != 50 {
			t.Fatalf("%d entries", len(res.JSON200.Tokens))
		}
		if n != 1 {
			t.Errorf("a batch of 50 ran %d statements, want 1", n)
		}
		for _, id := range []uuid.UUID{ids[0], ids[1], ids[4], ids[49]} { // own, restricted, foreign, missing
			before := db.Statements.Load()
			_, err := viewer.GetTileTokenWithResponse(ctx, id)
			must(t, err)
			if n := db.Statements.Load() - before; n != 1 {
				t.Errorf("a single token for %s ran %d statements, want 1", id, n)
			}
		}
		// Groups 1, 3, 5, 7 hold a restricted dataset without a grant (403); 9 foreign and 5
		// missing ids are 404.
		if n403, n404 := bytes.Count(res.Body, []byte(`"status":403`)), bytes.Count(res.Body, []byte(`"status":404`)); n403 != 4 || n404 != 14 {
			t.Errorf("%d 403s and %d 404s, want 4 and 14: %s", n403, n404, res.Body)
		}
	})
}

func TestSigningKeysPersistAcrossRestarts(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		ctx := context.Background()
		first, err := server.SigningKeys(ctx, db.Store, "")
		must(t, err)
		second, err := server.SigningKeys(ctx, db.Store, "")
		must(t, err)
		if len(first) != 1 || !bytes.Equal(first[0].Secret, second[0].Secret) {
			t.Fatalf("a restart would sign with a different key")
		}
		newKey, err := tiletoken.GenerateKey("new")
		must(t, err)
		oldKey, err := tiletoken.GenerateKey("old")
		must(t, err)
		configured, err := server.SigningKeys(ctx, db.Store, tiletoken.EncodeKeys([]tiletoken.Key{newKey, oldKey}))
		must(t, err)
		if len(configured) != 2 || configured[0].ID != "new" {
			t.Errorf("configured keys: %+v", configured)
		}
		if _, err := server.SigningKeys(ctx, db.Store, "short:abcd"); err == nil {
			t.Errorf("a 2-byte key was accepted")
		}
		if _, err := server.SigningKeys(ctx, db.Store, "weak:"+strings.Repeat("ab", 32)); !errors.Is(err, tiletoken.ErrWeakKey) {
			t.Errorf("a key of one byte value: %v, want ErrWeakKey", err)
		}
	})
}

// Tokens stop verifying the moment a grant is revoked or a dataset deleted: the scope carries
// access_version, and the expected scope comes from the stored dataset.
func TestTokensRetireOnAccessChange(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		signer := testSigner(t, nil)
		env := testenv.Start(t, db, server.Config{Signer: signer})
		ctx := context.Background()
		owner, partner := env.NewAccount(t), env.NewAccount(t)
		oc, pc := env.Client(t, owner.Token), env.Client(t, partner.Token)
		d := createDataset(t, oc, gen.DatasetCreate{Name: "d", Kind: gen.DatasetKindVector})
		g, err := oc.CreateGrantWithResponse(ctx, d.Id, gen.GrantCreate{AccountId: &partner.ID})
		must(t, err)
		res, err := pc.GetTileTokenWithResponse(ctx, d.Id)
		must(t, err)
		wantStatus(t, res.StatusCode(), 200, res.Body)
		tok, _ := res.JSON200.AsVectorTileToken()
		current := func() string {
			r, err := oc.GetDatasetWithResponse(ctx, d.Id)
			must(t, err)
			return tiletoken.Scope(owner.ID.String(), d.Id.String(), r.JSON200.AccessVersion)
		}
		if err := signer.Verify(current(), tok.Scope, tok.Sig, strconv.FormatInt(tok.Exp, 10)); err != nil {
			t.Fatalf("fresh token: %v", err)
		}
		_, err = oc.DeleteGrantWithResponse(ctx, d.Id, g.JSON201.Id)
		must(t, err)
		if err := signer.Verify(current(), tok.Scope, tok.Sig, strconv.FormatInt(tok.Exp, 10)); err == nil {
			t.Errorf("token verifies after the grant was revoked")
		}
		if s := mustStatus(pc.GetTileTokenWithResponse(ctx, d.Id)); s != 404 {
			t.Errorf("partner after revoke: %d", s)
		}
	})
}

// Tokens, batch entries and TileJSON are MapLibre sources as they are: no property is ever null
// (MapLibre refuses a null attribution or bounds), and rasters say tileSize (MapLibre's default
// is 512, which loads a 256 px tileset a zoom level too coarse).
func TestTokensAreMapLibreSources(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		acct := env.NewAccount(t)
		c := env.Client(t, acct.Token)
		hc := env.HTTPClient(t)
		bare := createDataset(t, c, gen.DatasetCreate{Name: "bare", Kind: gen.DatasetKindVector})
		ras := createDataset(t, c, gen.DatasetCreate{Name: "ras", Kind: gen.DatasetKindRaster, Format: ptr(gen.DatasetCreateFormatPng)})
		ras512 := createDataset(t, c, gen.DatasetCreate{Name: "ras512", Kind: gen.DatasetKindRaster,
			TileSize: nullable.NewNullableWithValue(gen.DatasetCreateTileSizeN512), Attribution: nullable.NewNullableWithValue("© r")})

		get := func(method, path, body string) map[string]any {
			t.Helper()
			req, err := http.NewRequest(method, env.URL+path, strings.NewReader(body))
			must(t, err)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+acct.Token)
			res, err := hc.Do(req)
			must(t, err)
			defer res.Body.Close()
			var out map[string]any
			must(t, json.NewDecoder(res.Body).Decode(&out))
			if res.StatusCode != 200 {
				t.Fatalf("%s %s: %d %v", method, path, res.StatusCode, out)
			}
			return out
		}
		sources := map[string]map[string]any{}
		for _, d := range []gen.Dataset{bare, ras, ras512} {
			sources["token "+d.Name] = get("GET", "/api/tiles/token/"+d.Id.String()+"/", "")
			sources["tilejson "+d.Name] = get("GET", "/api/tiles/"+d.Id.String()+"/tilejson.json", "")
		}
		batch := get("POST", "/api/tiles/tokens/", fmt.Sprintf(`{"dataset_ids":["%s","%s","%s"]}`, bare.Id, ras.Id, ras512.Id))
		for id, e := range batch["tokens"].(map[string]any) {
			sources["batch "+id] = e.(map[string]any)
		}
		for name, src := range sources {
			if path := nullIn(src, ""); path != "" {
				t.Errorf("%s: %s is null: %v", name, path, src)
			}
		}
		for _, name := range []string{"token bare", "tilejson bare"} {
			if _, ok := sources[name]["attribution"]; ok {
				t.Errorf("%s: attribution present for a dataset without one: %v", name, sources[name])
			}
			if _, ok := sources[name]["tileSize"]; ok {
				t.Errorf("%s: tileSize on a vector source", name)
			}
		}
		if b := fmt.Sprint(sources["token bare"]["bounds"]); b != "[-180 -85.0511287798066 180 85.0511287798066]" {
			t.Errorf("token of a dataset without bounds: bounds %s, want the whole world", b)
		}
		for name, want := range map[string]float64{"token ras": 256, "tilejson ras": 256, "batch " + ras.Id.String(): 256,
			"token ras512": 512, "tilejson ras512": 512, "batch " + ras512.Id.String(): 512} {
			if got := sources[name]["tileSize"]; got != want {
				t.Errorf("%s: tileSize %v, want %v", name, got, want)
			}
			if _, token := sources[name]["sig"]; token && sources[name]["tile_size"] != want {
				t.Errorf("%s: tile_size %v, want %v (the tile-token document's field)", name, sources[name]["tile_size"], want)
			}
		}
		if sources["token ras512"]["attribution"] != "© r" {
			t.Errorf("attribution lost: %v", sources["token ras512"])
		}
	})
}

// nullIn returns the path of the first null in a decoded JSON value, or "".
func nullIn(v any, path string) string {
	switch v := v.(type) {
	case nil:
		return path + "(root)"
	case map[string]any:
		for k, e := range v {
			if e == nil {
				return path + "." + k
			}
			if p := nullIn(e, path+"."+k); p != "" {
				return p
			}
		}
	case []any:
		for i, e := range v {
			if e == nil {
				return fmt.Sprintf("%s[%d]", path, i)
			}
			if p := nullIn(e, fmt.Sprintf("%s[%d]", path, i)); p != "" {
				return p
			}
		}
	}
	return ""
}
