package server_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

// tlFileVersion is the dataset's current file version, as its tiles' ETags carry it
// ("<version>-z-x-y").
func tlFileVersion(t testing.TB, e *tlEnv, id uuid.UUID, query string, headers ...string) string {
	t.Helper()
	r := e.get(t, "GET", tlTilePath(id, "0/0/0", tlFormat(t, e, id), query), headers...)
	etag := strings.Trim(r.header.Get("ETag"), `"`)
	v, _, ok := strings.Cut(etag, "-")
	if r.status != 200 || !ok || v == "" {
		t.Fatalf("no file version in the ETag of %s: %d %q", id, r.status, r.header.Get("ETag"))
	}
	return v
}

func tlFormat(t testing.TB, e *tlEnv, id uuid.UUID) string {
	t.Helper()
	r, err := e.c.GetDatasetWithResponse(t.Context(), id)
	must(t, err)
	return r.JSON200.Format
}

// CDN-safe caching: every tile URL tilegate hands out carries the file version, so a re-upload
// changes them all; token tiles may be kept by shared caches until the token's exp, key tiles
// only by the browser.
func TestCDNSafeCaching(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		e.uploadOK(t, d.Id, tlVectorFile())
		tok := e.token(t, e.c, d.Id)
		k := e.key(t, e.c, nil, "")
		v1 := tlFileVersion(t, e, d.Id, tok)
		if !strings.HasSuffix(tok, "&v="+v1) {
			t.Fatalf("token URL %q does not carry the file version %s", tok, v1)
		}

		r := e.get(t, "GET", tlTilePath(d.Id, "0/0/0", "pbf", tok))
		tlCheck(t, "token tile", r, 200, "")
		cc := r.header.Get("Cache-Control")
		age, err := strconv.Atoi(strings.TrimPrefix(cc, "public, max-age="))
		if err != nil || age < 60 || age > 960 {
			t.Errorf("token tile Cache-Control %q, want public until exp (60..960 s)", cc)
		}
		r = e.get(t, "GET", tlTilePath(d.Id, "0/0/0", "pbf", "key="+k.Token))
		tlCheck(t, "key tile", r, 200, "")
		if cc := r.header.Get("Cache-Control"); !strings.HasPrefix(cc, "private") {
			t.Errorf("key tile Cache-Control %q, want private", cc)
		}
		r = e.get(t, "GET", tlTilePath(d.Id, "0/0/0", "pbf", "sig=00&exp=1&scope=x"))
		if cc := r.header.Get("Cache-Control"); r.status < 400 || cc != "no-store" {
			t.Errorf("refused token tile: %d Cache-Control %q, want no-store", r.status, cc)
		}

		// A re-upload changes the version in every URL handed out; an old URL still works.
		e.uploadOK(t, d.Id, tlVectorFile())
		tok2 := e.token(t, e.c, d.Id)
		_, v2, _ := strings.Cut(tok2, "&v=")
		if v2 == v1 || v2 == "" {
			t.Errorf("after a re-upload: token URL %q, version was %s", tok2, v1)
		}
		// The version is the new file's (its tiles' ETags say so once this process serves it).
		tlWaitFor(t, 2*time.Second, "the new file's tiles", func() bool { return tlFileVersion(t, e, d.Id, tok2) == v2 })
		tlCheck(t, "URL with the old version", e.get(t, "GET", tlTilePath(d.Id, "0/0/0", "pbf", tok)), 200, "")
	})
}
