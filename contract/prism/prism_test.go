// Package prism drives every operation of openapi.yaml, and the error statuses it declares,
// through Stoplight Prism as a validating proxy in front of a real `tilegate serve`, and fails on
// any contract violation Prism reports (its sl-violations header). It runs in `make contract`
// (TILEGATE_CONTRACT=1, Prism from contract/node_modules after `npm ci`).
package prism

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/tilegate/tilegate/bench/loadgen"
	"github.com/tilegate/tilegate/internal/scratchdb"
	"github.com/tilegate/tilegate/mbtiles"
)

// call is one request of the scenario.
type call struct {
	op, method, path, auth, ctype string
	body                          []byte
	header                        map[string]string
	want                          int
	// invalid marks a request that breaks the contract on purpose (to get a 401 or 422): Prism
	// must report a request violation for it, and nothing about the response.
	invalid bool
	// direct sends it to tilegate, not through Prism: binary bodies (Prism re-encodes them) and
	// HEAD refusals (Prism answers those itself). Validated by status only.
	direct bool
}

type violation struct {
	Location []any  `json:"location"`
	Severity string `json:"severity"`
	Code     any    `json:"code"`
	Message  string `json:"message"`
}

type scenario struct {
	t               *testing.T
	tilegate, prism string
	hc              *http.Client
	counts          map[string]int
	direct          map[string]int
	statuses        map[string]map[int]bool
}

func TestEveryOperationThroughPrism(t *testing.T) {
	if os.Getenv("TILEGATE_CONTRACT") == "" {
		t.Skip("run by make contract (needs Prism: cd contract && npm ci)")
	}
	root, err := filepath.Abs("../..")
	must(t, err)
	prismBin := filepath.Join(root, "contract", "node_modules", ".bin", "prism")
	if _, err := os.Stat(prismBin); err != nil {
		t.Fatalf("Prism is not installed (cd contract && npm ci): %v", err)
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "tilegate")
	run(t, root, nil, "go", "build", "-o", bin, "./cmd/tilegate")

	// A scratch PostgreSQL database reached through a proxy this test can cut (the 503s).
	ctx := context.Background()
	pg, err := scratchdb.Create(ctx, scratchdb.BaseURL(), "tilegate_contract")
	if err != nil {
		t.Fatalf("PostgreSQL is needed for the contract scenario: %v", err)
	}
	t.Cleanup(func() { _ = pg.Drop() })
	direct, err := url.Parse(pg.URL)
	must(t, err)
	proxy := startProxy(t, direct.Host)
	proxied := *direct
	proxied.Host = proxy.addr
	env := []string{"DATABASE_URL=" + pg.URL}
	run(t, root, env, bin, "migrate")
	a := account(t, root, env, bin, "a")
	b := account(t, root, env, bin, "b")
	var viewer, editor struct {
		Token string `json:"token"`
	}
	must(t, json.Unmarshal(run(t, root, env, bin, "admin", "create-token", "--account", a.AccountID, "--role", "viewer"), &viewer))
	must(t, json.Unmarshal(run(t, root, env, bin, "admin", "create-token", "--account", a.AccountID, "--role", "editor"), &editor))

	addr, err := loadgen.FreeAddr()
	must(t, err)
	base := "http://" + addr
	srv := &tilegateProcess{t: t, bin: bin, addr: addr, args: []string{"--database-url", proxied.String(),
		"--data-dir", filepath.Join(tmp, "data"), "--max-upload", "1048576", "--log-level", "error",
		"--auth-cache-ttl", "1m"}}
	srv.start()
	t.Cleanup(srv.stop)

	paddr, err := loadgen.FreeAddr()
	must(t, err)
	_, pport, _ := net.SplitHostPort(paddr)
	var prismOut bytes.Buffer
	pr := exec.Command(prismBin, "proxy", filepath.Join(root, "openapi.yaml"), base, "--host", "127.0.0.1", "--port", pport)
	pr.Stdout, pr.Stderr = &prismOut, &prismOut
	must(t, pr.Start())
	t.Cleanup(func() {
		_ = pr.Process.Kill()
		_ = pr.Wait()
		if t.Failed() {
			_ = os.WriteFile(filepath.Join(os.TempDir(), "tilegate-prism.log"), prismOut.Bytes(), 0o644)
			t.Logf("prism output in %s", filepath.Join(os.TempDir(), "tilegate-prism.log"))
		}
	})
	pbase := "http://" + paddr
	if err := waitUp(pbase + "/healthz"); err != nil {
		t.Fatalf("prism: %v\n%s", err, prismOut.String())
	}

	// The check can fail: against a contract that declares /healthz's status an integer, the
	// same Prism reports a response violation for the real answer.
	canary(t, root, prismBin, base)

	s := &scenario{t: t, tilegate: base, prism: pbase, hc: &http.Client{Timeout: 30 * time.Second},
		counts: map[string]int{}, direct: map[string]int{}, statuses: map[string]map[int]bool{}}
	s.run(a, b, "Bearer "+viewer.Token, "Token "+editor.Token, proxy, srv)
	s.report()
	s.coverage(filepath.Join(root, "openapi.yaml"))
}

// notProducible are declared statuses no client can cause on purpose, with the reason.
var notProducible = map[string]string{
	"createAPIKey 409":         "only when generating a unique key name fails repeatedly",
	"changeAPIKeySettings 409": "only when generating a unique key name (name: null) fails repeatedly",
	"uploadTiles 507":          "only when the data directory's file system is full (server's TestUploadDiskFull injects it)",
	"getTile 504":              "needs an upstream that does not answer (server TestUpstreamFaults black-holes one)",
	"headTile 504":             "needs an upstream that does not answer (server TestUpstreamFaults black-holes one)",
}

// coverage fails when an operation of the contract was not driven, or a status it declares
// was never answered (unless it is in notProducible).
func (s *scenario) coverage(specPath string) {
	spec, err := openapi3.NewLoader().LoadFromFile(specPath)
	must(s.t, err)
	for _, item := range spec.Paths.Map() {
		for _, op := range item.Operations() {
			seen := s.statuses[op.OperationID]
			if len(seen) == 0 {
				s.t.Errorf("%s: not driven by the scenario", op.OperationID)
				continue
			}
			for code := range op.Responses.Map() {
				n, err := strconv.Atoi(code)
				if err != nil || seen[n] {
					continue
				}
				if _, ok := notProducible[op.OperationID+" "+code]; !ok {
					s.t.Errorf("%s: declared status %s never answered", op.OperationID, code)
				}
			}
		}
	}
}

// run is the scenario: every operation, its success and the error statuses it declares.
func (s *scenario) run(a, b issued, viewer, editor string, proxy *cutProxy, srv *tilegateProcess) {
	A, B := "Bearer "+a.Token, "Token "+b.Token // both header forms
	const badToken = "Bearer tgs_not-a-real-token"
	// Bodies past the 1 MiB limit. Prism re-encodes JSON before forwarding it, so padding is lost:
	// the size has to be in the values. Datasets take it validly (vector layers may carry any
	// member); the other schemas bound every string, so theirs break the contract as well.
	huge := strings.Repeat("x", 1<<20+10)
	bigDataset := []byte(`{"name":"big","kind":"vector","vector_layers":[{"id":"l","notes":"` + huge + `"}]}`)
	bigName := []byte(`{"name":"` + huge + `"}`)

	// Operations.
	for _, op := range []struct{ op, path string }{{"healthz", "/healthz"}, {"readyz", "/readyz"}, {"openapiYAML", "/openapi.yaml"}, {"openapiJSON", "/openapi.json"}} {
		s.do(call{op: op.op, method: "GET", path: op.path, want: 200})
		// HEAD direct: Prism tries to parse the empty body of a HEAD answer as JSON (and fails).
		s.do(call{op: op.op + "Head", method: "HEAD", path: op.path, want: 200, direct: true})
	}

	// API keys: create (with a body, with none), list both pages, get, change, delete.
	var key struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	s.decode(s.do(call{op: "createAPIKey", method: "POST", path: "/v1/api_keys", auth: A, ctype: "application/json",
		body: []byte(`{"name":"web","origins":["example.com","*.example.com"]}`), want: 200}), &key)
	s.do(call{op: "createAPIKey", method: "POST", path: "/v1/api_keys", auth: A, want: 200})
	for range 11 {
		s.do(call{op: "createAPIKey", method: "POST", path: "/v1/api_keys", auth: B, ctype: "application/json", body: []byte(`{}`), want: 200})
	}
	s.do(call{op: "createAPIKey", method: "POST", path: "/v1/api_keys", auth: badToken, ctype: "application/json", body: []byte(`{}`), want: 401})
	s.do(call{op: "createAPIKey", method: "POST", path: "/v1/api_keys", auth: viewer, ctype: "application/json", body: []byte(`{}`), want: 403})
	s.do(call{op: "createAPIKey", method: "POST", path: "/v1/api_keys", auth: A, ctype: "application/json", body: bigName, want: 413, invalid: true})
	s.do(call{op: "createAPIKey", method: "POST", path: "/v1/api_keys", auth: A, ctype: "application/json", body: []byte(`{"nmae":"typo"}`), want: 422, invalid: true})
	s.do(call{op: "createAPIKey", method: "POST", path: "/v1/api_keys", auth: A, ctype: "application/json", body: []byte(`{"origins":["example.com/path"]}`), want: 422})

	var page struct {
		Cursor *string `json:"cursor"`
		Items  []any   `json:"items"`
	}
	s.decode(s.do(call{op: "listAPIKeys", method: "GET", path: "/v1/api_keys?limit=10", auth: B, want: 200}), &page)
	if page.Cursor == nil {
		s.t.Fatal("first page of 10 of 11 keys has no cursor")
	}
	s.decode(s.do(call{op: "listAPIKeys", method: "GET", path: "/v1/api_keys?limit=10&cursor=" + url.QueryEscape(*page.Cursor), auth: B, want: 200}), &page)
	if page.Cursor != nil || len(page.Items) != 1 {
		s.t.Errorf("second page: cursor %v, %d items; want null and 1", page.Cursor, len(page.Items))
	}
	s.do(call{op: "listAPIKeys", method: "GET", path: "/v1/api_keys", want: 401, invalid: true})
	s.do(call{op: "listAPIKeys", method: "GET", path: "/v1/api_keys?limit=5", auth: A, want: 422, invalid: true})
	s.do(call{op: "listAPIKeys", method: "GET", path: "/v1/api_keys?cursor=" + url.QueryEscape("bm9wZQ=="), auth: A, want: 422})

	kp := "/v1/api_keys/" + key.ID
	s.do(call{op: "getAPIKey", method: "GET", path: kp, auth: A, want: 200})
	s.do(call{op: "getAPIKey", method: "GET", path: kp, auth: badToken, want: 401})
	s.do(call{op: "getAPIKey", method: "GET", path: kp, auth: B, want: 404})
	s.do(call{op: "getAPIKey", method: "GET", path: "/v1/api_keys/nope", auth: A, want: 422, invalid: true})

	fetched := s.do(call{op: "getAPIKey", method: "GET", path: kp, auth: A, want: 200})
	cp := kp + "/change_settings"
	s.do(call{op: "changeAPIKeySettings", method: "POST", path: cp, auth: A, ctype: "application/json", body: fetched, want: 200})
	s.do(call{op: "changeAPIKeySettings", method: "POST", path: cp, auth: editor, ctype: "application/json", body: []byte(`{"user_agent":null,"description":null}`), want: 200})
	s.do(call{op: "changeAPIKeySettings", method: "POST", path: cp, want: 401, ctype: "application/json", body: []byte(`{}`), invalid: true})
	s.do(call{op: "changeAPIKeySettings", method: "POST", path: cp, auth: viewer, ctype: "application/json", body: []byte(`{}`), want: 403})
	s.do(call{op: "changeAPIKeySettings", method: "POST", path: cp, auth: B, ctype: "application/json", body: []byte(`{}`), want: 404})
	s.do(call{op: "changeAPIKeySettings", method: "POST", path: cp, auth: A, ctype: "application/json", body: bigName, want: 413, invalid: true})
	s.do(call{op: "changeAPIKeySettings", method: "POST", path: cp, auth: A, ctype: "application/json", body: []byte(`{"name":5}`), want: 422, invalid: true})

	// Datasets.
	var vec, ras, pub, restricted struct {
		ID string `json:"id"`
	}
	s.decode(s.do(call{op: "createDataset", method: "POST", path: "/api/datasets/", auth: A, ctype: "application/json", body: []byte(`{"name":"roads","kind":"vector"}`), want: 201}), &vec)
	s.decode(s.do(call{op: "createDataset", method: "POST", path: "/api/datasets/", auth: A, ctype: "application/json", body: []byte(`{"name":"photo","kind":"raster","format":"png","tile_size":512,"bounds":[-10,-10,10,10],"center":[0,0,2]}`), want: 201}), &ras)
	s.decode(s.do(call{op: "createDataset", method: "POST", path: "/api/datasets/", auth: A, ctype: "application/json", body: []byte(`{"name":"open","kind":"vector","visibility":"public"}`), want: 201}), &pub)
	s.decode(s.do(call{op: "createDataset", method: "POST", path: "/api/datasets/", auth: A, ctype: "application/json", body: []byte(`{"name":"secret","kind":"vector","visibility":"restricted"}`), want: 201}), &restricted)
	s.do(call{op: "createDataset", method: "POST", path: "/api/datasets/", auth: badToken, ctype: "application/json", body: []byte(`{"name":"x","kind":"vector"}`), want: 401})
	s.do(call{op: "createDataset", method: "POST", path: "/api/datasets/", auth: viewer, ctype: "application/json", body: []byte(`{"name":"x","kind":"vector"}`), want: 403})
	s.do(call{op: "createDataset", method: "POST", path: "/api/datasets/", auth: A, ctype: "application/json", body: bigDataset, want: 413})
	s.do(call{op: "createDataset", method: "POST", path: "/api/datasets/", auth: A, ctype: "application/json", body: []byte(`{"name":"x"}`), want: 422, invalid: true})

	s.do(call{op: "listDatasets", method: "GET", path: "/api/datasets/?limit=10", auth: A, want: 200})
	s.do(call{op: "listDatasets", method: "GET", path: "/api/datasets/", auth: B, want: 200})
	s.do(call{op: "listDatasets", method: "GET", path: "/api/datasets/", want: 401, invalid: true})
	s.do(call{op: "listDatasets", method: "GET", path: "/api/datasets/?limit=1000", auth: A, want: 422, invalid: true})

	dp := func(id string) string { return "/api/datasets/" + id + "/" }
	s.do(call{op: "getDataset", method: "GET", path: dp(vec.ID), auth: A, want: 200})
	s.do(call{op: "getDataset", method: "GET", path: dp(ras.ID), auth: A, want: 200})
	s.do(call{op: "getDataset", method: "GET", path: dp(vec.ID), want: 401, invalid: true})
	s.do(call{op: "getDataset", method: "GET", path: dp(vec.ID), auth: B, want: 404})
	s.do(call{op: "getDataset", method: "GET", path: dp("x"), auth: A, want: 422, invalid: true})

	s.do(call{op: "updateDataset", method: "PATCH", path: dp(vec.ID), auth: A, ctype: "application/json", body: []byte(`{"description":"streets","bounds":null}`), want: 200})
	s.do(call{op: "updateDataset", method: "PATCH", path: dp(vec.ID), auth: badToken, ctype: "application/json", body: []byte(`{}`), want: 401})
	s.do(call{op: "updateDataset", method: "PATCH", path: dp(vec.ID), auth: viewer, ctype: "application/json", body: []byte(`{}`), want: 403})
	s.do(call{op: "updateDataset", method: "PATCH", path: dp(vec.ID), auth: B, ctype: "application/json", body: []byte(`{}`), want: 404})
	s.do(call{op: "updateDataset", method: "PATCH", path: dp(pub.ID), auth: B, ctype: "application/json", body: []byte(`{}`), want: 403})
	s.do(call{op: "updateDataset", method: "PATCH", path: dp(vec.ID), auth: A, ctype: "application/json", body: []byte(`{"vector_layers":[{"id":"l","notes":"` + huge + `"}]}`), want: 413})
	s.do(call{op: "updateDataset", method: "PATCH", path: dp(vec.ID), auth: A, ctype: "application/json", body: []byte(`{"minzoom":99}`), want: 422, invalid: true})

	// Uploads go to tilegate directly: Prism re-encodes binary request bodies.
	up := func(id string) string { return "/api/datasets/" + id + "/tiles/" }
	vecFile := mbtilesFile(s.t, mbtiles.TestFile{Format: "pbf", MinZoom: 0, MaxZoom: 1, Bounds: [4]float64{-180, -85, 180, 85},
		Tiles: map[[3]int][]byte{{0, 0, 0}: []byte("vector tile 0/0/0")}, VectorLayers: `[{"id":"roads","fields":{}}]`, Attribution: "test"})
	rasFile := mbtilesFile(s.t, mbtiles.TestFile{Format: "png", MinZoom: 0, MaxZoom: 1,
		Tiles: map[[3]int][]byte{{0, 0, 0}: []byte("\x89PNG\r\n\x1a\nraster")}})
	for _, id := range []string{vec.ID, pub.ID, restricted.ID} {
		s.do(call{op: "uploadTiles", method: "PUT", path: up(id), auth: A, ctype: "application/octet-stream", body: vecFile, want: 200, direct: true})
	}
	s.do(call{op: "uploadTiles", method: "PUT", path: up(ras.ID), auth: A, ctype: "application/octet-stream", body: rasFile, want: 200, direct: true})
	s.do(call{op: "uploadTiles", method: "PUT", path: up(vec.ID), ctype: "application/octet-stream", body: vecFile, want: 401, direct: true})
	s.do(call{op: "uploadTiles", method: "PUT", path: up(vec.ID), auth: viewer, ctype: "application/octet-stream", body: vecFile, want: 403, direct: true})
	s.do(call{op: "uploadTiles", method: "PUT", path: up(vec.ID), auth: B, ctype: "application/octet-stream", body: vecFile, want: 404, direct: true})
	s.do(call{op: "uploadTiles", method: "PUT", path: up(vec.ID), auth: A, ctype: "application/octet-stream", body: bytes.Repeat([]byte{0}, 2<<20), want: 413, direct: true})
	s.do(call{op: "uploadTiles", method: "PUT", path: up(vec.ID), auth: A, ctype: "application/octet-stream", body: []byte("not an mbtiles file"), want: 422, direct: true})

	// An upstream dataset takes no upload; its upstream here is on loopback, which the default
	// address rule refuses: 502.
	var live struct {
		ID string `json:"id"`
	}
	s.decode(s.do(call{op: "createDataset", method: "POST", path: "/api/datasets/", auth: A, ctype: "application/json",
		body: []byte(`{"name":"live","kind":"vector","visibility":"public","upstream":{"url":"http://127.0.0.1:9/{z}/{x}/{y}.pbf","headers":{"Authorization":"Bearer x"}}}`), want: 201}), &live)
	s.do(call{op: "uploadTiles", method: "PUT", path: up(live.ID), auth: A, ctype: "application/octet-stream", body: vecFile, want: 409, direct: true})
	s.do(call{op: "getTile", method: "GET", path: "/api/tiles/" + live.ID + "/0/0/0.pbf", want: 502})
	s.do(call{op: "headTile", method: "HEAD", path: "/api/tiles/" + live.ID + "/0/0/0.pbf", want: 502, direct: true})

	// Grants.
	gp := func(id string) string { return "/api/datasets/" + id + "/grants/" }
	var grant struct {
		ID string `json:"id"`
	}
	s.decode(s.do(call{op: "createGrant", method: "POST", path: gp(vec.ID), auth: A, ctype: "application/json", body: []byte(`{"account_id":"` + b.AccountID + `"}`), want: 201}), &grant)
	s.do(call{op: "createGrant", method: "POST", path: gp(vec.ID), auth: A, ctype: "application/json", body: []byte(`{"account_id":"` + b.AccountID + `"}`), want: 409})
	s.do(call{op: "createGrant", method: "POST", path: gp(vec.ID), auth: badToken, ctype: "application/json", body: []byte(`{}`), want: 401})
	s.do(call{op: "createGrant", method: "POST", path: gp(vec.ID), auth: editor, ctype: "application/json", body: []byte(`{"account_id":"` + b.AccountID + `"}`), want: 403})
	s.do(call{op: "createGrant", method: "POST", path: gp(ras.ID), auth: B, ctype: "application/json", body: []byte(`{"account_id":"` + b.AccountID + `"}`), want: 404})
	s.do(call{op: "createGrant", method: "POST", path: gp(vec.ID), auth: A, ctype: "application/json", body: []byte(`{"account_id":"` + huge + `"}`), want: 413, invalid: true})
	s.do(call{op: "createGrant", method: "POST", path: gp(vec.ID), auth: A, ctype: "application/json", body: []byte(`{"account_id":"nope"}`), want: 422, invalid: true})

	s.do(call{op: "listGrants", method: "GET", path: gp(vec.ID), auth: A, want: 200})
	s.do(call{op: "listGrants", method: "GET", path: gp(vec.ID), want: 401, invalid: true})
	s.do(call{op: "listGrants", method: "GET", path: gp(pub.ID), auth: B, want: 403})
	s.do(call{op: "listGrants", method: "GET", path: gp(ras.ID), auth: B, want: 404})
	s.do(call{op: "listGrants", method: "GET", path: gp("x"), auth: A, want: 422, invalid: true})

	// Tile tokens: one, a batch with a foreign dataset (404 entry) and a restricted one (403 entry).
	tp := func(id string) string { return "/api/tiles/token/" + id + "/" }
	var vt struct {
		Sig   string `json:"sig"`
		Exp   int64  `json:"exp"`
		Scope string `json:"scope"`
	}
	s.decode(s.do(call{op: "getTileToken", method: "GET", path: tp(vec.ID), auth: A, want: 200}), &vt)
	s.do(call{op: "getTileToken", method: "GET", path: tp(ras.ID), auth: viewer, want: 200})
	s.do(call{op: "getTileToken", method: "GET", path: tp(vec.ID), auth: badToken, want: 401})
	s.do(call{op: "getTileToken", method: "GET", path: tp(restricted.ID), auth: viewer, want: 403})
	s.do(call{op: "getTileToken", method: "GET", path: tp(ras.ID), auth: B, want: 404})
	s.do(call{op: "getTileToken", method: "GET", path: tp("x"), auth: A, want: 422, invalid: true})

	batch := fmt.Sprintf(`{"dataset_ids":["%s","%s","%s","%s"]}`, vec.ID, ras.ID, restricted.ID, vec.ID)
	s.do(call{op: "getTileTokensBatch", method: "POST", path: "/api/tiles/tokens/", auth: viewer, ctype: "application/json", body: []byte(batch), want: 200})
	s.do(call{op: "getTileTokensBatch", method: "POST", path: "/api/tiles/tokens/", auth: B, ctype: "application/json", body: []byte(batch), want: 200})
	s.do(call{op: "getTileTokensBatch", method: "POST", path: "/api/tiles/tokens/", auth: badToken, ctype: "application/json", body: []byte(batch), want: 401})
	// Without a service token: anonymous (public datasets only, the rest 404 entries), or an API key.
	s.do(call{op: "getTileTokensBatch", method: "POST", path: "/api/tiles/tokens/", ctype: "application/json", body: []byte(batch), want: 200})
	s.do(call{op: "getTileToken", method: "GET", path: tp(pub.ID), want: 200})
	s.do(call{op: "getTileToken", method: "GET", path: tp(vec.ID), want: 404})
	s.do(call{op: "getTileTokensBatch", method: "POST", path: "/api/tiles/tokens/", auth: A, ctype: "application/json", body: []byte(`{"dataset_ids":["` + huge + `"]}`), want: 413, invalid: true})
	s.do(call{op: "getTileTokensBatch", method: "POST", path: "/api/tiles/tokens/", auth: A, ctype: "application/json", body: []byte(`{"dataset_ids":[]}`), want: 422, invalid: true})

	// Tiles, by token, by key and public; every declared refusal.
	tile := func(id, zxy, format, q string) string {
		return "/api/tiles/" + id + "/" + zxy + "." + format + q
	}
	tok := fmt.Sprintf("?sig=%s&exp=%d&scope=%s", vt.Sig, vt.Exp, url.QueryEscape(vt.Scope))
	keyQ := "?key=" + key.Token
	origin := map[string]string{"Origin": "https://maps.example.com"}
	res := s.doRes(call{op: "getTile", method: "GET", path: tile(vec.ID, "0/0/0", "pbf", tok), want: 200})
	s.do(call{op: "getTile", method: "GET", path: tile(vec.ID, "0/0/0", "pbf", keyQ), header: origin, want: 200})
	s.do(call{op: "getTile", method: "GET", path: tile(pub.ID, "0/0/0", "pbf", ""), want: 200})
	s.do(call{op: "getTile", method: "GET", path: tile(vec.ID, "1/1/1", "pbf", tok), want: 204})
	s.do(call{op: "getTile", method: "GET", path: tile(vec.ID, "0/0/0", "pbf", tok), header: map[string]string{"If-None-Match": res.Header.Get("ETag")}, want: 304})
	s.do(call{op: "getTile", method: "GET", path: tile(vec.ID, "1/2/0", "pbf", tok), want: 400})
	s.do(call{op: "getTile", method: "GET", path: tile(vec.ID, "0/0/0", "pbf", ""), want: 401})
	s.do(call{op: "getTile", method: "GET", path: tile(vec.ID, "0/0/0", "pbf", keyQ), header: map[string]string{"Origin": "https://evil.test"}, want: 403})
	s.do(call{op: "getTile", method: "GET", path: tile(ras.ID, "0/0/0", "pbf", keyQ), header: origin, want: 404})
	s.do(call{op: "getTile", method: "GET", path: tile(vec.ID, "0/0/0", "pbf", "?exp=soon"), want: 422, invalid: true})
	s.do(call{op: "headTile", method: "HEAD", path: tile(vec.ID, "0/0/0", "pbf", tok), want: 200})
	s.do(call{op: "headTile", method: "HEAD", path: tile(vec.ID, "1/1/1", "pbf", tok), want: 204})
	s.do(call{op: "headTile", method: "HEAD", path: tile(vec.ID, "0/0/0", "pbf", tok), header: map[string]string{"If-None-Match": res.Header.Get("ETag")}, want: 304})
	// HEAD refusals go to tilegate directly: Prism answers those itself.
	s.do(call{op: "headTile", method: "HEAD", path: tile(vec.ID, "1/2/0", "pbf", tok), want: 400, direct: true})
	s.do(call{op: "headTile", method: "HEAD", path: tile(vec.ID, "0/0/0", "pbf", "?exp=soon"), want: 422, direct: true})
	s.do(call{op: "headTile", method: "HEAD", path: tile(vec.ID, "0/0/0", "pbf", ""), want: 401, direct: true})
	s.do(call{op: "headTile", method: "HEAD", path: tile(vec.ID, "0/0/0", "pbf", keyQ), header: map[string]string{"Origin": "https://evil.test"}, want: 403, direct: true})
	s.do(call{op: "headTile", method: "HEAD", path: tile(ras.ID, "0/0/0", "png", "?key=nope"), want: 403, direct: true})
	s.do(call{op: "headTile", method: "HEAD", path: tile(vec.ID, "0/0/0", "png", tok), want: 404, direct: true})

	// A key over its monthly quota (1 tile): 429 quota_exceeded, GET and HEAD.
	var spent struct {
		Token string `json:"token"`
	}
	s.decode(s.do(call{op: "createAPIKey", method: "POST", path: "/v1/api_keys", auth: A, ctype: "application/json",
		body: []byte(`{"name":"metered","monthly_quota":1,"rate_limit":{"requests_per_second":1000,"burst":1000}}`), want: 200}), &spent)
	s.do(call{op: "getTile", method: "GET", path: tile(vec.ID, "0/0/0", "pbf", "?key="+spent.Token), want: 200})
	s.do(call{op: "getTile", method: "GET", path: tile(vec.ID, "0/0/0", "pbf", "?key="+spent.Token), want: 429})
	s.do(call{op: "headTile", method: "HEAD", path: tile(vec.ID, "0/0/0", "pbf", "?key="+spent.Token), want: 429, direct: true})
	// The same key mints no more tokens this month.
	s.do(call{op: "getTileToken", method: "GET", path: tp(vec.ID) + "?key=" + spent.Token, want: 429})
	s.do(call{op: "getTileTokensBatch", method: "POST", path: "/api/tiles/tokens/", header: map[string]string{"X-Api-Key": spent.Token},
		ctype: "application/json", body: []byte(fmt.Sprintf(`{"dataset_ids":["%s"]}`, vec.ID)), want: 429})

	// The preview page and its assets (the page holds no data: the same for every id).
	s.do(call{op: "previewDataset", method: "GET", path: "/preview/" + vec.ID, want: 200, direct: true})
	s.do(call{op: "previewDataset", method: "GET", path: "/preview/not-a-uuid", want: 422, direct: true})
	s.do(call{op: "previewAsset", method: "GET", path: "/preview/assets/maplibre-gl.css", want: 200, direct: true})
	s.do(call{op: "previewAsset", method: "GET", path: "/preview/assets/nope.js", want: 404, direct: true})

	// Forward auth: the decision a tile request would get, for the URI a proxy passes on.
	fa := func(uri string, h map[string]string) map[string]string {
		out := map[string]string{"X-Original-URI": uri}
		for k, v := range h {
			out[k] = v
		}
		return out
	}
	s.do(call{op: "authorizeTile", method: "GET", path: "/api/tiles/auth", header: fa(tile(vec.ID, "0/0/0", "pbf", tok), nil), want: 200})
	s.do(call{op: "authorizeTile", method: "GET", path: "/api/tiles/auth", header: fa(tile(vec.ID, "0/0/0", "pbf", keyQ), origin), want: 200})
	s.do(call{op: "authorizeTile", method: "GET", path: "/api/tiles/auth", want: 400})
	s.do(call{op: "authorizeTile", method: "GET", path: "/api/tiles/auth", header: fa(tile(vec.ID, "0/0/0", "pbf", ""), nil), want: 401})
	s.do(call{op: "authorizeTile", method: "GET", path: "/api/tiles/auth", header: fa(tile(vec.ID, "0/0/0", "pbf", keyQ), map[string]string{"Origin": "https://evil.test"}), want: 403})
	s.do(call{op: "authorizeTile", method: "GET", path: "/api/tiles/auth", header: fa(tile(ras.ID, "0/0/0", "pbf", keyQ), origin), want: 404})
	s.do(call{op: "authorizeTile", method: "GET", path: "/api/tiles/auth", header: fa(tile(vec.ID, "0/0/0", "pbf", "?key="+spent.Token), nil), want: 429})
	s.do(call{op: "authorizeTile", method: "GET", path: "/api/tiles/auth", header: fa(tile(vec.ID, "0/0/0", "pbf", tok), map[string]string{"X-Original-Method": "GETGETGETGETGETGETGET"}), want: 422, invalid: true})

	// Usage of a key and of a dataset.
	kup := "/v1/api_keys/" + key.ID + "/usage"
	dup := "/api/datasets/" + vec.ID + "/usage"
	for _, u := range []struct{ op, path string }{{"getAPIKeyUsage", kup}, {"getDatasetUsage", dup}} {
		s.do(call{op: u.op, method: "GET", path: u.path, auth: viewer, want: 200})
		s.do(call{op: u.op, method: "GET", path: u.path + "?granularity=day&from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z", auth: A, want: 200})
		s.do(call{op: u.op, method: "GET", path: u.path, auth: badToken, want: 401})
		s.do(call{op: u.op, method: "GET", path: u.path, auth: B, want: 404})
		s.do(call{op: u.op, method: "GET", path: u.path + "?granularity=week", auth: A, want: 422, invalid: true})
		s.do(call{op: u.op, method: "GET", path: u.path + "?from=2000-01-01T00:00:00Z", auth: A, want: 422})
	}

	tj := func(id, q string) string { return "/api/tiles/" + id + "/tilejson.json" + q }
	s.do(call{op: "getTileJSON", method: "GET", path: tj(vec.ID, keyQ), header: origin, want: 200})
	s.do(call{op: "getTileJSON", method: "GET", path: tj(vec.ID, ""), auth: A, want: 200})
	s.do(call{op: "getTileJSON", method: "GET", path: tj(pub.ID, ""), want: 200})
	s.do(call{op: "getTileJSON", method: "GET", path: tj(vec.ID, ""), want: 401})
	s.do(call{op: "getTileJSON", method: "GET", path: tj(vec.ID, keyQ), header: map[string]string{"Origin": "https://evil.test"}, want: 403})
	s.do(call{op: "getTileJSON", method: "GET", path: tj(ras.ID, ""), auth: B, want: 404})
	s.do(call{op: "getTileJSON", method: "GET", path: tj(vec.ID, "?exp=-5"), want: 422, invalid: true})

	// Key lifecycle: the new settings, a dry run, rotation with grace, the audit trail.
	life := []byte(`{"expires_at":"2999-01-01T00:00:00Z","enabled":true,"dataset_ids":["` + vec.ID + `"],"ip_ranges":["10.0.0.1/8","0.0.0.0/0","::/0"]}`)
	s.do(call{op: "changeAPIKeySettings", method: "POST", path: cp, auth: A, ctype: "application/json", body: life, want: 200})
	s.do(call{op: "changeAPIKeySettings", method: "POST", path: cp, auth: A, ctype: "application/json", body: []byte(`{"ip_ranges":["not-a-range"]}`), want: 422})
	chk := kp + "/check"
	checkBody := []byte(`{"dataset_id":"` + vec.ID + `","origin":"https://maps.example.com","user_agent":"prism","ip":"10.1.2.3"}`)
	s.do(call{op: "checkAPIKey", method: "POST", path: chk, auth: viewer, ctype: "application/json", body: checkBody, want: 200})
	s.do(call{op: "checkAPIKey", method: "POST", path: chk, auth: A, ctype: "application/json", body: []byte(`{"dataset_id":"` + ras.ID + `","origin":"https://evil.test"}`), want: 200})
	s.do(call{op: "checkAPIKey", method: "POST", path: chk, ctype: "application/json", body: checkBody, want: 401, invalid: true})
	s.do(call{op: "checkAPIKey", method: "POST", path: chk, auth: B, ctype: "application/json", body: checkBody, want: 404})
	s.do(call{op: "checkAPIKey", method: "POST", path: chk, auth: A, ctype: "application/json", body: []byte(`{"dataset_id":"` + vec.ID + `","origin":"` + huge + `"}`), want: 413, invalid: true})
	s.do(call{op: "checkAPIKey", method: "POST", path: chk, auth: A, ctype: "application/json", body: []byte(`{"dataset_id":"x"}`), want: 422, invalid: true})
	rp := kp + "/rotate"
	s.do(call{op: "rotateAPIKey", method: "POST", path: rp, auth: A, ctype: "application/json", body: []byte(`{"grace_seconds":3600}`), want: 200})
	s.do(call{op: "rotateAPIKey", method: "POST", path: rp, auth: editor, want: 200})
	s.do(call{op: "rotateAPIKey", method: "POST", path: rp, ctype: "application/json", body: []byte(`{}`), want: 401, invalid: true})
	s.do(call{op: "rotateAPIKey", method: "POST", path: rp, auth: viewer, ctype: "application/json", body: []byte(`{}`), want: 403})
	s.do(call{op: "rotateAPIKey", method: "POST", path: rp, auth: B, ctype: "application/json", body: []byte(`{}`), want: 404})
	s.do(call{op: "rotateAPIKey", method: "POST", path: rp, auth: A, ctype: "application/json", body: []byte(`{"grace_seconds":1,"pad":"` + huge + `"}`), want: 413, invalid: true})
	s.do(call{op: "rotateAPIKey", method: "POST", path: rp, auth: A, ctype: "application/json", body: []byte(`{"grace_seconds":-1}`), want: 422, invalid: true})
	var trail struct {
		Cursor *string `json:"cursor"`
	}
	s.decode(s.do(call{op: "listAudit", method: "GET", path: "/api/audit/?limit=10", auth: A, want: 200}), &trail)
	if trail.Cursor == nil {
		s.t.Fatal("the audit trail's first page of 10 has no cursor")
	}
	s.do(call{op: "listAudit", method: "GET", path: "/api/audit/?limit=10&cursor=" + url.QueryEscape(*trail.Cursor), auth: A, want: 200})
	s.do(call{op: "listAudit", method: "GET", path: "/api/audit/", want: 401, invalid: true})
	s.do(call{op: "listAudit", method: "GET", path: "/api/audit/", auth: editor, want: 403})
	s.do(call{op: "listAudit", method: "GET", path: "/api/audit/?limit=5", auth: A, want: 422, invalid: true})

	// Deletions.
	s.do(call{op: "deleteGrant", method: "DELETE", path: gp(vec.ID) + grant.ID + "/", auth: badToken, want: 401})
	s.do(call{op: "deleteGrant", method: "DELETE", path: gp(vec.ID) + grant.ID + "/", auth: editor, want: 403})
	s.do(call{op: "deleteGrant", method: "DELETE", path: gp(vec.ID) + grant.ID + "/", auth: A, want: 204})
	s.do(call{op: "deleteGrant", method: "DELETE", path: gp(vec.ID) + grant.ID + "/", auth: A, want: 404})
	s.do(call{op: "deleteGrant", method: "DELETE", path: gp(vec.ID) + "x/", auth: A, want: 422, invalid: true})

	s.do(call{op: "deleteAPIKey", method: "DELETE", path: kp, auth: badToken, want: 401})
	s.do(call{op: "deleteAPIKey", method: "DELETE", path: kp, auth: viewer, want: 403})
	s.do(call{op: "deleteAPIKey", method: "DELETE", path: kp, auth: B, want: 404})
	s.do(call{op: "deleteAPIKey", method: "DELETE", path: kp, auth: A, want: 200})
	s.do(call{op: "deleteAPIKey", method: "DELETE", path: "/v1/api_keys/x", auth: A, want: 422, invalid: true})

	s.do(call{op: "deleteDataset", method: "DELETE", path: dp(ras.ID), auth: badToken, want: 401})
	s.do(call{op: "deleteDataset", method: "DELETE", path: dp(ras.ID), auth: viewer, want: 403})
	s.do(call{op: "deleteDataset", method: "DELETE", path: dp(ras.ID), auth: B, want: 404})
	s.do(call{op: "deleteDataset", method: "DELETE", path: dp(ras.ID), auth: A, want: 204})
	s.do(call{op: "deleteDataset", method: "DELETE", path: dp("x"), auth: A, want: 422, invalid: true})

	// A tile over the server's size limit (a file accepted under a higher one) is 410: the same
	// tilegate restarted with a lower --max-tile-bytes.
	var big struct {
		ID string `json:"id"`
	}
	s.decode(s.do(call{op: "createDataset", method: "POST", path: "/api/datasets/", auth: A, ctype: "application/json", body: []byte(`{"name":"big","kind":"vector","visibility":"public"}`), want: 201}), &big)
	bigFile := mbtilesFile(s.t, mbtiles.TestFile{Format: "pbf", MinZoom: 0, MaxZoom: 0,
		Tiles: map[[3]int][]byte{{0, 0, 0}: bytes.Repeat([]byte("t"), 4096)}})
	s.do(call{op: "uploadTiles", method: "PUT", path: up(big.ID), auth: A, ctype: "application/octet-stream", body: bigFile, want: 200, direct: true})
	srv.restart("--max-tile-bytes", "1024")
	s.do(call{op: "getTile", method: "GET", path: tile(big.ID, "0/0/0", "pbf", ""), want: 410})
	s.do(call{op: "headTile", method: "HEAD", path: tile(big.ID, "0/0/0", "pbf", ""), want: 410, direct: true})

	// The database goes away: every operation that needs it answers 503.
	proxy.cut()
	other := "/api/datasets/" + restricted.ID + "/"
	for _, c := range []call{
		{op: "readyz", method: "GET", path: "/readyz"},
		{op: "readyzHead", method: "HEAD", path: "/readyz", direct: true},
		{op: "listAPIKeys", method: "GET", path: "/v1/api_keys", auth: A},
		{op: "createAPIKey", method: "POST", path: "/v1/api_keys", auth: A, ctype: "application/json", body: []byte(`{}`)},
		{op: "getAPIKey", method: "GET", path: kp, auth: A},
		{op: "changeAPIKeySettings", method: "POST", path: cp, auth: A, ctype: "application/json", body: []byte(`{}`)},
		{op: "deleteAPIKey", method: "DELETE", path: kp, auth: A},
		{op: "rotateAPIKey", method: "POST", path: kp + "/rotate", auth: A, ctype: "application/json", body: []byte(`{}`)},
		{op: "checkAPIKey", method: "POST", path: kp + "/check", auth: A, ctype: "application/json", body: []byte(`{"dataset_id":"` + vec.ID + `"}`)},
		{op: "listAudit", method: "GET", path: "/api/audit/", auth: A},
		{op: "listDatasets", method: "GET", path: "/api/datasets/", auth: A},
		{op: "createDataset", method: "POST", path: "/api/datasets/", auth: A, ctype: "application/json", body: []byte(`{"name":"x","kind":"vector"}`)},
		{op: "getDataset", method: "GET", path: other, auth: A},
		{op: "updateDataset", method: "PATCH", path: other, auth: A, ctype: "application/json", body: []byte(`{}`)},
		{op: "deleteDataset", method: "DELETE", path: other, auth: A},
		{op: "uploadTiles", method: "PUT", path: up(restricted.ID), auth: A, ctype: "application/octet-stream", body: vecFile, direct: true},
		{op: "listGrants", method: "GET", path: gp(restricted.ID), auth: A},
		{op: "createGrant", method: "POST", path: gp(restricted.ID), auth: A, ctype: "application/json", body: []byte(`{"account_id":"` + b.AccountID + `"}`)},
		{op: "deleteGrant", method: "DELETE", path: gp(restricted.ID) + grant.ID + "/", auth: A},
		{op: "getTileToken", method: "GET", path: tp(restricted.ID), auth: A},
		{op: "getTileTokensBatch", method: "POST", path: "/api/tiles/tokens/", auth: A, ctype: "application/json", body: []byte(batch)},
		// A key nobody has used yet is not cached: looking it up needs the database.
		{op: "getTile", method: "GET", path: tile(vec.ID, "0/0/0", "pbf", "?key=uncached-key"), header: origin},
		{op: "headTile", method: "HEAD", path: tile(vec.ID, "0/0/0", "pbf", "?key=uncached-key-2"), header: origin, direct: true},
		{op: "getTileJSON", method: "GET", path: tj(vec.ID, "?key=uncached-key-3"), header: origin},
		{op: "authorizeTile", method: "GET", path: "/api/tiles/auth", header: map[string]string{"X-Original-URI": tile(vec.ID, "0/0/0", "pbf", "?key=uncached-key-4"), "Origin": "https://maps.example.com"}},
		{op: "getAPIKeyUsage", method: "GET", path: kup, auth: A},
		{op: "getDatasetUsage", method: "GET", path: dup, auth: A},
	} {
		c.want = 503
		s.do(c)
	}
}

// do sends c and checks status and Prism's verdict; it returns the body.
func (s *scenario) do(c call) []byte {
	s.t.Helper()
	res := s.doRes(c)
	return res.body
}

type result struct {
	Header http.Header
	body   []byte
}

func (s *scenario) doRes(c call) result {
	s.t.Helper()
	base := s.prism
	if c.direct {
		base = s.tilegate
	}
	var rd io.Reader
	if c.body != nil {
		rd = bytes.NewReader(c.body)
	}
	req, err := http.NewRequest(c.method, base+c.path, rd)
	must(s.t, err)
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	if c.ctype != "" {
		req.Header.Set("Content-Type", c.ctype)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	res, err := s.hc.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	label := fmt.Sprintf("%s %s %.80s", c.op, c.method, c.path)
	if res.StatusCode != c.want {
		s.t.Errorf("%s: status %d, want %d: %.300s", label, res.StatusCode, c.want, body)
	}
	if s.statuses[c.op] == nil {
		s.statuses[c.op] = map[int]bool{}
	}
	s.statuses[c.op][res.StatusCode] = true
	if c.direct {
		s.direct[c.op]++
		return result{res.Header, body}
	}
	s.counts[c.op]++
	var vs []violation
	if raw := res.Header.Get("sl-violations"); raw != "" {
		if err := json.Unmarshal([]byte(raw), &vs); err != nil {
			s.t.Errorf("%s: unreadable sl-violations %q", label, raw)
		}
	}
	var onRequest []violation
	for _, v := range vs {
		if len(v.Location) > 0 && v.Location[0] == "request" {
			onRequest = append(onRequest, v)
			continue
		}
		s.t.Errorf("%s: response violates the contract: %s %v: %s", label, v.Severity, v.Location, v.Message)
	}
	switch {
	case c.invalid && len(onRequest) == 0:
		s.t.Errorf("%s: sent as invalid, but Prism found nothing wrong with the request", label)
	case !c.invalid:
		for _, v := range onRequest {
			s.t.Errorf("%s: request violates the contract: %s %v: %s", label, v.Severity, v.Location, v.Message)
		}
	}
	return result{res.Header, body}
}

func (s *scenario) decode(body []byte, v any) {
	s.t.Helper()
	if err := json.Unmarshal(body, v); err != nil {
		s.t.Fatalf("decode %.200s: %v", body, err)
	}
}

// report prints the requests per operation (through Prism, and direct) and the statuses seen.
func (s *scenario) report() {
	ops := map[string]bool{}
	for op := range s.statuses {
		ops[op] = true
	}
	names := make([]string, 0, len(ops))
	for op := range ops {
		names = append(names, op)
	}
	sort.Strings(names)
	total, totalDirect := 0, 0
	fmt.Printf("%-22s %6s %6s  statuses\n", "operation", "prism", "direct")
	for _, op := range names {
		var st []int
		for code := range s.statuses[op] {
			st = append(st, code)
		}
		sort.Ints(st)
		fmt.Printf("%-22s %6d %6d  %v\n", op, s.counts[op], s.direct[op], st)
		total += s.counts[op]
		totalDirect += s.direct[op]
	}
	fmt.Printf("%-22s %6d %6d  (%d operations)\n", "total", total, totalDirect, len(names))
}

func canary(t *testing.T, root, prismBin, base string) {
	spec, err := os.ReadFile(filepath.Join(root, "openapi.yaml"))
	must(t, err)
	const health = "  Health:\n      type: object\n      required: [status]\n      properties:\n        status:\n          type: string\n"
	if !bytes.Contains(spec, []byte(health)) {
		t.Fatal("canary: the Health schema is not where the canary expects it")
	}
	wrong := filepath.Join(t.TempDir(), "wrong.yaml")
	must(t, os.WriteFile(wrong, bytes.Replace(spec, []byte(health), []byte(strings.Replace(health, "type: string", "type: integer", 1)), 1), 0o644))
	addr, err := loadgen.FreeAddr()
	must(t, err)
	_, port, _ := net.SplitHostPort(addr)
	var out bytes.Buffer
	pr := exec.Command(prismBin, "proxy", wrong, base, "--host", "127.0.0.1", "--port", port)
	pr.Stdout, pr.Stderr = &out, &out
	must(t, pr.Start())
	defer func() { _ = pr.Process.Kill(); _ = pr.Wait() }()
	if err := waitUp("http://" + addr + "/openapi.json"); err != nil {
		t.Fatalf("canary prism: %v\n%s", err, out.String())
	}
	res, err := http.Get("http://" + addr + "/healthz")
	must(t, err)
	res.Body.Close()
	if !strings.Contains(res.Header.Get("sl-violations"), "response") {
		t.Fatalf("canary: Prism reported no response violation against a wrong contract (sl-violations %q)", res.Header.Get("sl-violations"))
	}
}

// tilegateProcess is the `tilegate serve` under test.
type tilegateProcess struct {
	t         *testing.T
	bin, addr string
	args      []string
	cmd       *exec.Cmd
	log       bytes.Buffer
}

func (p *tilegateProcess) start(extra ...string) {
	p.cmd = exec.Command(p.bin, append(append([]string{"serve", "--addr", p.addr}, p.args...), extra...)...)
	p.cmd.Stderr = &p.log // shown when the test fails (the 410 phase logs an error on purpose)
	must(p.t, p.cmd.Start())
	must(p.t, loadgen.WaitReady(http.DefaultClient, "http://"+p.addr))
}

func (p *tilegateProcess) stop() {
	if p.t.Failed() && p.log.Len() > 0 {
		p.t.Logf("tilegate log:\n%.4000s", p.log.String())
		p.log.Reset()
	}
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(os.Interrupt)
		_ = p.cmd.Wait()
		p.cmd = nil
	}
}

func (p *tilegateProcess) restart(extra ...string) {
	p.stop()
	p.start(extra...)
}

type issued struct {
	AccountID string `json:"account_id"`
	Token     string `json:"token"`
}

func account(t *testing.T, root string, env []string, bin, name string) issued {
	var a issued
	must(t, json.Unmarshal(run(t, root, env, bin, "admin", "create-account", "--name", name), &a))
	return a
}

func run(t *testing.T, dir string, env []string, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, stderr.String())
	}
	return out
}

func mbtilesFile(t *testing.T, f mbtiles.TestFile) []byte {
	p := filepath.Join(t.TempDir(), "f.mbtiles")
	must(t, mbtiles.WriteTestFile(p, f))
	b, err := os.ReadFile(p)
	must(t, err)
	return b
}

func waitUp(u string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if res, err := http.Get(u); err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer 200 within 60 s", u)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// cutProxy forwards TCP to PostgreSQL until cut, then closes every connection and refuses new
// ones: the database is gone.
type cutProxy struct {
	addr  string
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func startProxy(t *testing.T, target string) *cutProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	p := &cutProxy{addr: l.Addr().String(), l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() { _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
	t.Cleanup(p.cut)
	return p
}

func (p *cutProxy) cut() {
	p.l.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
