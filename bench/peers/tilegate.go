package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tilegate/tilegate/bench/loadgen"
	"github.com/tilegate/tilegate/internal/scratchdb"
	"github.com/tilegate/tilegate/store"
)

// benchOrigin is the Origin the key+origin mode's requests send; the keys it mints list
// origins of which a wildcard entry matches it, so the rules are evaluated, not skipped.
const benchOrigin = "https://www.bench.example"

// startTilegate starts the tilegate binary on backend's metadata database, uploads every
// tile file as a public and a private dataset, and returns its three modes per file.
func startTilegate(ctx context.Context, o options, backend, bin, tmp string, env []string,
	sets map[string]*tileSet, client *http.Client) ([]*mode, *process, error) {
	var dbURL string
	switch backend {
	case "sqlite":
		dbURL = "sqlite:" + filepath.Join(tmp, "tilegate-sqlite.db")
	case "postgres":
		db, err := scratchdb.Create(ctx, o.pgURL, "tilegate_bench_peers")
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", errNoPostgres, err)
		}
		dbURL = db.URL
		scratchDrops = append(scratchDrops, db) // dropped by run once the servers have stopped
	default:
		return nil, nil, fmt.Errorf("unknown backend %q", backend)
	}
	st, err := store.Open(ctx, dbURL, store.Options{})
	if err != nil {
		return nil, nil, err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return nil, nil, err
	}
	acct, err := st.CreateAccount(ctx, "bench-peers")
	if err != nil {
		return nil, nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, nil, err
	}
	env = append(env[:len(env):len(env)], "DATABASE_URL="+dbURL, "TILEGATE_ADDR="+addr,
		"TILEGATE_DATA_DIR="+filepath.Join(tmp, "data-"+backend))
	if o.hotTiles >= 0 {
		env = append(env, "TILEGATE_HOT_TILE_CACHE_BYTES="+strconv.FormatInt(o.hotTiles, 10))
	}
	p, err := startPinned("tilegate "+backend, addr, bin, env, "serve")
	if err != nil {
		return nil, nil, err
	}
	base := "http://" + addr
	if err := waitFor(client, p, base+"/readyz"); err != nil {
		return nil, p, err
	}
	auth := "Bearer " + acct.Token
	var modes []*mode
	for _, size := range o.sizes {
		ts := sets[size]
		ids := map[string]string{}
		for _, vis := range []string{"public", "private"} {
			var d struct{ ID string }
			if err := loadgen.CallReader(client, "POST", base+"/api/datasets/", auth, "application/json",
				strings.NewReader(`{"name":"bench `+size+` `+vis+`","kind":"vector","visibility":"`+vis+`"}`), 201, &d); err != nil {
				return nil, p, err
			}
			f, err := os.Open(ts.path)
			if err != nil {
				return nil, p, err
			}
			err = loadgen.CallReader(client, "PUT", base+"/api/datasets/"+d.ID+"/tiles/", auth, "application/octet-stream", f, 200, nil)
			f.Close()
			if err != nil {
				return nil, p, err
			}
			ids[vis] = d.ID
		}
		name := func(s string) string { return "tilegate " + s + " (" + backend + ")" }
		pub := &mode{name: name("public"), size: size, proc: p, set: ts,
			prefix: "/api/tiles/" + ids["public"] + "/", mint: func() (string, error) { return "", nil }}
		key := &mode{name: name("key+origin"), size: size, proc: p, set: ts,
			prefix: "/api/tiles/" + ids["private"] + "/", headers: [][2]string{{"Origin", benchOrigin}},
			mint: func() (string, error) {
				var k struct{ Token string }
				err := loadgen.CallReader(client, "POST", base+"/v1/api_keys", auth, "application/json", strings.NewReader(
					`{"origins":["https://maps.bench.example","*.bench.example","http://localhost:3000"]}`), 200, &k)
				return "?key=" + k.Token, err
			}}
		tok := &mode{name: name("token"), size: size, proc: p, set: ts,
			prefix: "/api/tiles/" + ids["private"] + "/",
			mint: func() (string, error) {
				var t struct{ Tiles []string }
				if err := loadgen.CallReader(client, "GET", base+"/api/tiles/token/"+ids["private"]+"/", auth, "", nil, 200, &t); err != nil {
					return "", err
				}
				return tokenQuery(t.Tiles)
			}}
		modes = append(modes, pub, key, tok)
	}
	return modes, p, nil
}

// errNoPostgres means no scratch database could be made: the PostgreSQL modes are skipped.
var errNoPostgres = errors.New("PostgreSQL unavailable")

// scratchDrops are the PostgreSQL scratch databases to drop once the servers have stopped.
var scratchDrops []*scratchdb.DB

func freeAddr() (string, error) { return loadgen.FreeAddr() }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// runChild runs one job in a load-generator child pinned to loadCPU with GOMAXPROCS=1.
func runChild(self string, j job) (jobResult, error) {
	in, err := json.Marshal(j)
	if err != nil {
		return jobResult{}, err
	}
	cmd := exec.Command("taskset", "-c", loadCPU, self, "-loadgen")
	cmd.Env = append(cleanEnv(), "GOMAXPROCS=1")
	cmd.Stdin = bytes.NewReader(in)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return jobResult{}, fmt.Errorf("load generator: %v: %s", err, errb.String())
	}
	var res jobResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return jobResult{}, fmt.Errorf("load generator answer: %w", err)
	}
	if res.Err != "" {
		return res, fmt.Errorf("load generator: %s", res.Err)
	}
	return res, nil
}
