package server_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

// TileJSON fetched with a tile token carries that very token (same sig, exp, scope), never a
// fresh one: refreshing it cannot outlive the token, nor the principal that minted it.
func TestTileJSONKeepsTheTileToken(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		vec := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		e.uploadOK(t, vec.Id, tlVectorFile())
		editor := e.NewPrincipal(t, e.acct.ID, "editor")

		// Mint 70 s before a window boundary (the token's exp is that boundary), then ask for
		// TileJSON with 30 s left, when a fresh token would run to the boundary after next.
		const window = 900
		now := e.clock.now().Unix()
		e.clock.advance(time.Duration(window-now%window-70) * time.Second)
		tok := e.token(t, e.Client(t, editor.Token), vec.Id)
		boundary := (e.clock.now().Unix()/window + 1) * window
		if !strings.Contains(tok, "&exp="+strconv.FormatInt(boundary, 10)+"&") {
			t.Fatalf("minted %s, want exp %d", tok, boundary)
		}
		e.clock.advance(40 * time.Second)
		r, tj := e.tileJSON(t, vec.Id, tok, "")
		tlCheck(t, "TileJSON with the token", r, 200, "")
		if tj == nil || len(tj.Tiles) != 1 || !strings.HasSuffix(tj.Tiles[0], "?"+tok) {
			t.Fatalf("TileJSON's tiles do not carry the token it was fetched with (%s): %s", tok, r.body)
		}

		// The minting principal is revoked; the holder keeps refreshing TileJSON.
		_, err := db.Store.RevokePrincipalTokens(context.Background(), editor.PrincipalID)
		must(t, err)
		r, tj = e.tileJSON(t, vec.Id, tok, "")
		tlCheck(t, "TileJSON after the revocation, token still in its window", r, 200, "")
		if tj == nil || !strings.HasSuffix(tj.Tiles[0], "?"+tok) {
			t.Fatalf("TileJSON after the revocation: %s", r.body)
		}
		e.clock.advance(60 * time.Second) // past exp
		tlCheck(t, "tile through the refreshed TileJSON, past exp", e.tlFollow(t, tj, "0/0/0"), 403, "expired")
		r, _ = e.tileJSON(t, vec.Id, tok, "")
		tlCheck(t, "TileJSON with the expired token", r, 403, "expired")
	})
}
