package server_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// One line per request at Info, except tiles served (Debug); never a credential in the log.
func TestRequestLog(t *testing.T) {
	var buf syncBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e := tlStart(t, testenv.Databases()[0], server.Config{Logger: logger})
	d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
	e.uploadOK(t, d.Id, tlVectorFile())
	k := e.key(t, e.c, nil, "")
	tok, err := e.c.GetTileTokenWithResponse(t.Context(), d.Id)
	must(t, err)
	vt, err := tok.JSON200.AsVectorTileToken()
	must(t, err)

	tlCheck(t, "served", e.get(t, "GET", tlTilePath(d.Id, "0/0/0", "pbf", "key="+k.Token)), 200, "")
	tlCheck(t, "refused", e.get(t, "GET", tlTilePath(d.Id, "0/0/0", "pbf", "key="+corrupt(k.Token, 0))), 403, "unknown_key")

	lines := buf.String()
	count := func(sub string) int { return strings.Count(lines, sub) }
	if count(`"route":"/api/tiles/:dataset_id/:z/:x/:tile","status":200`) != 0 {
		t.Errorf("a served tile was logged at Info")
	}
	if count(`"route":"/api/tiles/:dataset_id/:z/:x/:tile","status":403`) != 1 {
		t.Errorf("the refused tile was not logged once:\n%s", lines)
	}
	if count(`"route":"/api/tiles/token/:dataset_id/","status":200`) != 1 {
		t.Errorf("the token request was not logged:\n%s", lines)
	}
	for _, secret := range []string{k.Token, vt.Sig, e.acct.Token, "key="} {
		if strings.Contains(lines, secret) {
			t.Errorf("the log holds a credential (%.8s…)", secret)
		}
	}
}
