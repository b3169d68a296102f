package server_test

import (
	"strings"
	"testing"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

// One URL per tile: every other spelling of the dataset id, z, x, y or format is 404, through
// the fast dispatch and through echo alike (a percent-escape takes echo's way), GET and HEAD.
func TestTileURLIsCanonical(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		ras := e.dataset(t, e.c, gen.DatasetKindRaster, gen.Public)
		e.uploadOK(t, ras.Id, tlRasterFile())
		id := ras.Id.String()
		base := "/api/tiles/" + id + "/"
		check := func(t *testing.T, method, p string, status int) {
			t.Helper()
			r := e.get(t, method, p)
			if status == 422 {
				if r.status != 422 {
					t.Errorf("%s %s: %d, want 422", method, p, r.status)
				}
				return
			}
			if method == "GET" {
				tlCheck(t, method+" "+p, r, status, "")
				return
			}
			if r.status != status || r.header.Get("Cache-Control") != "no-store" {
				t.Errorf("%s %s: %d %v, want %d, no-store", method, p, r.status, r.header, status)
			}
		}
		for _, method := range []string{"GET", "HEAD"} {
			for _, p := range []string{base + "0/0/0.png", base + "2/1/3.png"} {
				if r := e.get(t, method, p); r.status != 200 {
					t.Errorf("%s %s: %d, want 200", method, p, r.status)
				}
			}
			for _, p := range []string{
				base + "00/0/0.png",
				base + "0/00/0.png",
				base + "0/0/00.png",
				base + "02/1/3.png",
				base + "+0/0/0.png",
				base + "0/+0/0.png",
				base + "0/0/+0.png",
				base + "-0/0/0.png",
				base + "0/0/0%2Epng",
				base + "0/0/0.png%00",
				base + "0/0/0%2epng",
				base + "%30/0/0.png",
				base + "0/0/0.%70ng",
				base + "0/0/0.PNG",
				"/api/tiles/" + strings.ToUpper(id) + "/0/0/0.png",
				"/api/tiles/" + strings.ReplaceAll(id, "-", "") + "/0/0/0.png",
				"/api/tiles/%7B" + id + "%7D/0/0/0.png",
				"/api/tiles/urn:uuid:" + id + "/0/0/0.png",
			} {
				if method == "HEAD" && strings.Contains(p, "%") {
					// The same route as GET; the test transport's validator cannot place an
					// escaped path in the spec and wants a {"detail"} body HEAD cannot have.
					continue
				}
				check(t, method, p, 404)
			}
			// Well spelt but off the grid stays a 400; no number at all, a 422.
			check(t, method, base+"-1/0/0.png", 400)
			check(t, method, base+"1/2/0.png", 400)
			check(t, method, base+"0/0/a.png", 422)
			check(t, method, base+"0/0/-.png", 422)
		}
	})
}
