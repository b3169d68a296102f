package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/oapi-codegen/nullable"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

// change posts settings to a key and wants 200.
func (e *tlEnv) change(t testing.TB, id uuid.UUID, s gen.APIKeySettings) gen.APIKey {
	t.Helper()
	r, err := e.c.ChangeAPIKeySettingsWithResponse(context.Background(), id, s)
	must(t, err)
	wantStatus(t, r.StatusCode(), 200, r.Body)
	return *r.JSON200
}

// changeRaw posts a raw JSON body to change_settings and returns status and body.
func (e *tlEnv) changeRaw(t testing.TB, id uuid.UUID, body string) (int, []byte) {
	t.Helper()
	r, err := e.c.ChangeAPIKeySettingsWithBodyWithResponse(context.Background(), id, "application/json", strings.NewReader(body))
	must(t, err)
	return r.StatusCode(), r.Body
}

// tileAs requests dataset d's 0/0/0 tile with key token and returns status and reason.
func (e *tlEnv) tileAs(t testing.TB, d uuid.UUID, token string, headers ...string) (int, string) {
	t.Helper()
	r := e.get(t, "GET", tlTilePath(d, "0/0/0", "pbf", "key="+token), headers...)
	if r.status >= 400 && r.header.Get("Access-Control-Expose-Headers") != "X-Tilegate-Reason" && r.header.Get("X-Tilegate-Reason") != "" {
		t.Errorf("refusal %q not exposed to browsers", r.header.Get("X-Tilegate-Reason"))
	}
	return r.status, r.header.Get("X-Tilegate-Reason")
}

func (e *tlEnv) wantTile(t testing.TB, what string, d uuid.UUID, token string, wantStatus int, wantReason string, headers ...string) {
	t.Helper()
	status, reason := e.tileAs(t, d, token, headers...)
	if status != wantStatus || reason != wantReason {
		t.Errorf("%s: %d %q, want %d %q", what, status, reason, wantStatus, wantReason)
	}
}

func TestKeyLifecycleFields(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		other := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		e.uploadOK(t, d.Id, tlVectorFile())
		e.uploadOK(t, other.Id, tlVectorFile())
		k := e.key(t, e.c, nil, "")
		// A key that sets nothing new is today's key.
		if !k.Enabled || !k.ExpiresAt.IsNull() || !k.DatasetIds.IsNull() || !k.IpRanges.IsNull() || !k.PreviousTokenExpiresAt.IsNull() {
			t.Errorf("new key: %+v", k)
		}
		e.wantTile(t, "plain key", d.Id, k.Token, 200, "")

		// expires_at: in the past is 422 and changes nothing; in the future works until then.
		status, body := e.changeRaw(t, k.Id, `{"expires_at":"2001-01-01T00:00:00Z","description":"lost"}`)
		wantStatus(t, status, 422, body)
		if !strings.Contains(string(body), `"expires_at"`) {
			t.Errorf("422 does not name expires_at: %s", body)
		}
		at := e.clock.now().Add(time.Hour).UTC().Truncate(time.Second)
		got := e.change(t, k.Id, gen.APIKeySettings{ExpiresAt: nullable.NewNullableWithValue(at)})
		if v, _ := got.ExpiresAt.Get(); !v.Equal(at) || got.Description.IsSpecified() && !got.Description.IsNull() {
			t.Errorf("expires_at %v (want %v), description %v", got.ExpiresAt, at, got.Description)
		}
		e.wantTile(t, "before expiry", d.Id, k.Token, 200, "")
		e.clock.advance(2 * time.Hour) // the cached key expires mid-session: refused on its next tile
		e.wantTile(t, "after expiry", d.Id, k.Token, 403, "key_expired")
		got = e.change(t, k.Id, gen.APIKeySettings{ExpiresAt: nullable.NewNullNullable[time.Time]()})
		if !got.ExpiresAt.IsNull() {
			t.Errorf("expires_at: null did not clear: %v", got.ExpiresAt)
		}
		e.wantTile(t, "expiry cleared", d.Id, k.Token, 200, "")

		// enabled: false refuses; true restores the key as it was (its other rules kept).
		e.change(t, k.Id, gen.APIKeySettings{Origins: tlList([]string{"example.com"})})
		got = e.change(t, k.Id, gen.APIKeySettings{Enabled: nullable.NewNullableWithValue(false)})
		if got.Enabled {
			t.Error("enabled: false not kept")
		}
		e.wantTile(t, "disabled", d.Id, k.Token, 403, "key_disabled", "Origin: https://example.com")
		got = e.change(t, k.Id, gen.APIKeySettings{Enabled: nullable.NewNullNullable[bool]()})
		if !got.Enabled || len(got.Origins) != 1 {
			t.Errorf("re-enabled key: enabled %v origins %v", got.Enabled, got.Origins)
		}
		e.wantTile(t, "re-enabled", d.Id, k.Token, 200, "", "Origin: https://example.com")
		e.wantTile(t, "re-enabled, origin rule kept", d.Id, k.Token, 403, "origin", "Origin: https://evil.test")
		e.change(t, k.Id, gen.APIKeySettings{Origins: nullable.NewNullNullable[[]string]()})

		// dataset_ids: only those; an id the account does not see is 422 naming its index.
		stranger := e.NewAccount(t)
		sc := e.Client(t, stranger.Token)
		theirs := e.dataset(t, sc, gen.DatasetKindVector, gen.Private)
		status, body = e.changeRaw(t, k.Id, fmt.Sprintf(`{"dataset_ids":["%s","%s"]}`, d.Id, theirs.Id))
		wantStatus(t, status, 422, body)
		if !strings.Contains(string(body), `"loc":["body","dataset_ids",1]`) {
			t.Errorf("422 does not name dataset_ids[1]: %s", body)
		}
		status, body = e.changeRaw(t, k.Id, fmt.Sprintf(`{"dataset_ids":["%s"]}`, uuid.New()))
		wantStatus(t, status, 422, body)
		got = e.change(t, k.Id, gen.APIKeySettings{DatasetIds: nullable.NewNullableWithValue([]uuid.UUID{d.Id, d.Id})})
		if ids, _ := got.DatasetIds.Get(); len(ids) != 1 || ids[0] != d.Id {
			t.Errorf("dataset_ids = %v, want [%s] (duplicates dropped)", got.DatasetIds, d.Id)
		}
		e.wantTile(t, "listed dataset", d.Id, k.Token, 200, "")
		e.wantTile(t, "unlisted dataset", other.Id, k.Token, 403, "dataset_not_allowed")
		e.wantTile(t, "another account's dataset", theirs.Id, k.Token, 404, "")
		// Deleting a listed dataset drops it from the list.
		e.change(t, k.Id, gen.APIKeySettings{DatasetIds: nullable.NewNullableWithValue([]uuid.UUID{other.Id, d.Id})})
		del, err := e.c.DeleteDatasetWithResponse(t.Context(), other.Id)
		must(t, err)
		wantStatus(t, del.StatusCode(), 204, del.Body)
		gr, err := e.c.GetAPIKeyWithResponse(t.Context(), k.Id)
		must(t, err)
		if ids, _ := gr.JSON200.DatasetIds.Get(); len(ids) != 1 || ids[0] != d.Id {
			t.Errorf("after deleting a listed dataset: dataset_ids = %v", gr.JSON200.DatasetIds)
		}
		got = e.change(t, k.Id, gen.APIKeySettings{DatasetIds: nullable.NewNullNullable[[]uuid.UUID]()})
		if !got.DatasetIds.IsNull() {
			t.Errorf("dataset_ids: null did not clear: %v", got.DatasetIds)
		}

		// ip_ranges: normalised; garbage is 422 naming its index; the peer must fall in one.
		status, body = e.changeRaw(t, k.Id, `{"ip_ranges":["10.0.0.0/8","10.0.0.300/8"]}`)
		wantStatus(t, status, 422, body)
		if !strings.Contains(string(body), `"loc":["body","ip_ranges",1]`) {
			t.Errorf("422 does not name ip_ranges[1]: %s", body)
		}
		got = e.change(t, k.Id, gen.APIKeySettings{IpRanges: tlList([]string{"10.0.0.1/8", "2001:db8::1/32", "192.0.2.7"})})
		wantJSON(t, got.IpRanges.MustGet(), []string{"10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"})
		e.wantTile(t, "peer outside the ranges", d.Id, k.Token, 403, "ip")
		e.change(t, k.Id, gen.APIKeySettings{IpRanges: tlList([]string{"127.0.0.0/8", "::1/128"})})
		e.wantTile(t, "peer inside the ranges", d.Id, k.Token, 200, "")
		// X-Forwarded-For counts only from a trusted proxy.
		e.wantTile(t, "forwarded, untrusted peer", d.Id, k.Token, 200, "", "X-Forwarded-For: 10.9.9.9")
		many := make([]string, 101)
		for i := range many {
			many[i] = fmt.Sprintf("10.0.%d.0/24", i)
		}
		r, err := e.c.ChangeAPIKeySettingsWithResponse(t.Context(), k.Id, gen.APIKeySettings{IpRanges: tlList(many)})
		must(t, err)
		wantStatus(t, r.StatusCode(), 422, r.Body)
	})
}

// Behind a trusted proxy the right-most untrusted X-Forwarded-For hop is the client.
func TestKeyIPRangesBehindTrustedProxy(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{TrustedProxies: []netip.Prefix{
			netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("192.168.0.0/16")}})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		e.uploadOK(t, d.Id, tlVectorFile())
		k := e.key(t, e.c, nil, "")
		e.change(t, k.Id, gen.APIKeySettings{IpRanges: tlList([]string{"203.0.113.0/24"})})
		for _, tc := range []struct {
			xff    string
			status int
		}{
			{"", 403},                                       // the trusted peer itself
			{"203.0.113.9", 200},                            // the client, as the proxy saw it
			{"203.0.113.9, 192.168.1.1", 200},               // through two trusted proxies
			{"198.51.100.1", 403},                           // a client outside
			{"203.0.113.9, 198.51.100.1", 403},              // a spoofed left hop does not count
			{"not-an-ip", 403},                              // garbage trusts nothing
			{"198.51.100.1, 203.0.113.9, 192.168.0.1", 200}, // right-most untrusted hop
		} {
			var h []string
			if tc.xff != "" {
				h = append(h, "X-Forwarded-For: "+tc.xff)
			}
			status, reason := e.tileAs(t, d.Id, k.Token, h...)
			if status != tc.status || (status == 403 && reason != "ip") {
				t.Errorf("X-Forwarded-For %q: %d %q, want %d", tc.xff, status, reason, tc.status)
			}
		}
	})
}

func TestKeyRotation(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		e.uploadOK(t, d.Id, tlVectorFile())
		k := e.key(t, e.c, []string{"example.com"}, "")
		origin := "Origin: https://example.com"
		rotate := func(body string) gen.APIKey {
			t.Helper()
			r, err := e.c.RotateAPIKeyWithBodyWithResponse(t.Context(), k.Id, "application/json", strings.NewReader(body))
			must(t, err)
			wantStatus(t, r.StatusCode(), 200, r.Body)
			return *r.JSON200
		}
		e.wantTile(t, "before rotation", d.Id, k.Token, 200, "", origin)
		r1 := rotate(`{"grace_seconds":600}`)
		if r1.Token == k.Token || r1.Name != k.Name {
			t.Fatalf("rotation: token %q (was %q), name %q", r1.Token, k.Token, r1.Name)
		}
		until, err := r1.PreviousTokenExpiresAt.Get()
		if err != nil || until.Sub(e.clock.now()) < 590*time.Second || until.Sub(e.clock.now()) > 610*time.Second {
			t.Errorf("previous_token_expires_at = %v, want 600 s from now", r1.PreviousTokenExpiresAt)
		}
		e.wantTile(t, "new token", d.Id, r1.Token, 200, "", origin)
		e.wantTile(t, "old token in grace", d.Id, k.Token, 200, "", origin)
		e.wantTile(t, "old token in grace keeps the rules", d.Id, k.Token, 403, "origin", "Origin: https://evil.test")
		e.change(t, k.Id, gen.APIKeySettings{Enabled: nullable.NewNullableWithValue(false)})
		e.wantTile(t, "old token of a disabled key", d.Id, k.Token, 403, "key_disabled", origin)
		e.change(t, k.Id, gen.APIKeySettings{Enabled: nullable.NewNullableWithValue(true)})
		e.clock.advance(601 * time.Second)
		e.wantTile(t, "old token after grace", d.Id, k.Token, 403, "unknown_key", origin)
		e.wantTile(t, "new token after grace", d.Id, r1.Token, 200, "", origin)

		// Rotating again ends a previous token still in grace at once: two tokens at most.
		r2 := rotate(`{}`) // default grace: a day
		e.wantTile(t, "r1 in grace", d.Id, r1.Token, 200, "", origin)
		r3 := rotate(`{"grace_seconds":3600}`)
		e.wantTile(t, "r1 after a second rotation", d.Id, r1.Token, 403, "unknown_key", origin)
		e.wantTile(t, "r2 in grace", d.Id, r2.Token, 200, "", origin)
		e.wantTile(t, "r3", d.Id, r3.Token, 200, "", origin)
		// grace 0 revokes the old token now.
		r4 := rotate(`{"grace_seconds":0}`)
		if !r4.PreviousTokenExpiresAt.IsNull() {
			t.Errorf("grace 0: previous_token_expires_at = %v", r4.PreviousTokenExpiresAt)
		}
		e.wantTile(t, "r3 revoked", d.Id, r3.Token, 403, "unknown_key", origin)
		e.wantTile(t, "r2 revoked", d.Id, r2.Token, 403, "unknown_key", origin)
		e.wantTile(t, "r4", d.Id, r4.Token, 200, "", origin)
		// Bad grace is 422 and rotates nothing; another account's key is 404.
		r, err := e.c.RotateAPIKeyWithBodyWithResponse(t.Context(), k.Id, "application/json", strings.NewReader(`{"grace_seconds":2592001}`))
		must(t, err)
		wantStatus(t, r.StatusCode(), 422, r.Body)
		e.wantTile(t, "after a refused rotation", d.Id, r4.Token, 200, "", origin)
		other := e.Client(t, e.NewAccount(t).Token)
		r, err = other.RotateAPIKeyWithBodyWithResponse(t.Context(), k.Id, "application/json", strings.NewReader(`{}`))
		must(t, err)
		wantStatus(t, r.StatusCode(), 404, r.Body)
	})
}

// The dry run and the tile endpoint agree over a generated table of keys, datasets and
// request headers (check is the tile path's own decision; this proves it).
func TestCheckAgreesWithTiles(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		partner := e.NewAccount(t)
		pc := e.Client(t, partner.Token)
		own := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		own2 := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		restricted := e.dataset(t, e.c, gen.DatasetKindVector, gen.Restricted)
		public := e.dataset(t, e.c, gen.DatasetKindVector, gen.Public)
		theirs := e.dataset(t, pc, gen.DatasetKindVector, gen.Private)
		shared := e.dataset(t, pc, gen.DatasetKindVector, gen.Private)
		g, err := pc.CreateGrantWithResponse(t.Context(), shared.Id, gen.GrantCreate{AccountId: &e.acct.ID})
		must(t, err)
		wantStatus(t, g.StatusCode(), 201, g.Body)
		for _, d := range []uuid.UUID{own.Id, own2.Id, restricted.Id, public.Id} {
			e.uploadOK(t, d, tlVectorFile())
		}
		for _, d := range []uuid.UUID{theirs.Id, shared.Id} {
			r := e.upload(t, pc, d, tlFile(t, tlVectorFile()))
			wantStatus(t, r.StatusCode(), 200, r.Body)
		}
		datasets := []uuid.UUID{own.Id, own2.Id, restricted.Id, public.Id, theirs.Id, shared.Id, uuid.New()}

		future := nullable.NewNullableWithValue(e.clock.now().Add(time.Hour))
		keys := map[string]gen.APIKeySettings{
			"plain":    {},
			"origins":  {Origins: tlList([]string{"example.com", "?"})},
			"strict":   {Origins: tlList([]string{"https://example.com"})},
			"agent":    {UserAgent: nullable.NewNullableWithValue("MapApp/")},
			"disabled": {Enabled: nullable.NewNullableWithValue(false)},
			"expiring": {ExpiresAt: future},
			"scoped":   {DatasetIds: nullable.NewNullableWithValue([]uuid.UUID{own.Id, shared.Id})},
			"local":    {IpRanges: tlList([]string{"127.0.0.0/8", "::1/128"})},
			"remote":   {IpRanges: tlList([]string{"10.0.0.0/8"})},
			"all": {Origins: tlList([]string{"*.example.com"}), UserAgent: nullable.NewNullableWithValue("MapApp/"),
				DatasetIds: nullable.NewNullableWithValue([]uuid.UUID{own.Id}), IpRanges: tlList([]string{"127.0.0.1", "::1"}), ExpiresAt: future},
		}
		tokens := map[string]gen.APIKey{}
		for name, s := range keys {
			r, err := e.c.CreateAPIKeyWithResponse(t.Context(), s)
			must(t, err)
			wantStatus(t, r.StatusCode(), 200, r.Body)
			tokens[name] = *r.JSON200
		}
		// The expiring key expires; the "all" key with it.
		e.clock.advance(2 * time.Hour)
		type hdrs struct{ origin, referer, ua string }
		headerSets := []hdrs{
			{},
			{origin: "https://example.com"},
			{origin: "https://EXAMPLE.com:443", ua: "MapApp/2.1"},
			{origin: "https://maps.example.com", ua: "MapApp/2.1"},
			{referer: "https://maps.example.com/page?q=1", ua: "MapApp/1"},
			{origin: "https://evil.test", ua: "curl"},
			{ua: "MapApp/3"},
		}
		refusals := map[string]bool{}
		for name, k := range tokens {
			for _, d := range datasets {
				for _, h := range headerSets {
					var hs []string
					body := gen.CheckRequest{DatasetId: d, Ip: ptr("127.0.0.1")}
					if h.origin != "" {
						hs, body.Origin = append(hs, "Origin: "+h.origin), ptr(h.origin)
					}
					if h.referer != "" {
						hs, body.Referer = append(hs, "Referer: "+h.referer), ptr(h.referer)
					}
					ua := h.ua
					if ua == "" {
						ua = "tile-tests" // what tlEnv.get sends
					}
					hs, body.UserAgent = append(hs, "User-Agent: "+ua), ptr(ua)
					status, reason := e.tileAs(t, d, k.Token, hs...)
					cr, err := e.c.CheckAPIKeyWithResponse(t.Context(), k.Id, body)
					must(t, err)
					wantStatus(t, cr.StatusCode(), 200, cr.Body)
					c := cr.JSON200
					creason, _ := c.Reason.Get()
					allowed := status == 200 || status == 204
					if c.Allowed != allowed || (!allowed && (int(c.Status) != status || creason != reason)) || (allowed && c.Status != 200) {
						t.Errorf("key %s, dataset %s, headers %+v: tile %d %q, check %+v", name, d, h, status, reason, c)
					}
					refusals[reason] = true
				}
			}
		}
		for _, r := range []string{"", "key_disabled", "key_expired", "dataset_not_allowed", "ip", "origin", "user_agent", "unknown_origin", "restricted"} {
			if !refusals[r] {
				t.Errorf("the table never produced %q", r)
			}
		}
		// The check records nothing: last_used stays null for a key only checked.
		only := e.key(t, e.c, nil, "")
		cr, err := e.c.CheckAPIKeyWithResponse(t.Context(), only.Id, gen.CheckRequest{DatasetId: own.Id})
		must(t, err)
		if !cr.JSON200.Allowed {
			t.Errorf("plain key check on its own dataset: %+v", cr.JSON200)
		}
		// A bad ip is 422; another account's key is 404.
		cr, err = e.c.CheckAPIKeyWithResponse(t.Context(), only.Id, gen.CheckRequest{DatasetId: own.Id, Ip: ptr("10.0.0.300")})
		must(t, err)
		wantStatus(t, cr.StatusCode(), 422, cr.Body)
		cr, err = pc.CheckAPIKeyWithResponse(t.Context(), only.Id, gen.CheckRequest{DatasetId: own.Id})
		must(t, err)
		wantStatus(t, cr.StatusCode(), 404, cr.Body)
	})
}

// Every audited action is in the trail with its actor and changes, newest first, keyset-paged,
// and no key token appears anywhere in it.
func TestAuditTrail(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		partner := e.NewAccount(t)
		k := e.key(t, e.c, []string{"example.com"}, "")
		e.change(t, k.Id, gen.APIKeySettings{Description: nullable.NewNullableWithValue("prod"), Enabled: nullable.NewNullableWithValue(false)})
		rr, err := e.c.RotateAPIKeyWithBodyWithResponse(t.Context(), k.Id, "application/json", strings.NewReader(`{"grace_seconds":60}`))
		must(t, err)
		wantStatus(t, rr.StatusCode(), 200, rr.Body)
		rotated := rr.JSON200.Token
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		name := "renamed"
		up, err := e.c.UpdateDatasetWithResponse(t.Context(), d.Id, gen.DatasetUpdate{Name: &name})
		must(t, err)
		wantStatus(t, up.StatusCode(), 200, up.Body)
		e.uploadOK(t, d.Id, tlVectorFile())
		g, err := e.c.CreateGrantWithResponse(t.Context(), d.Id, gen.GrantCreate{AccountId: &partner.ID})
		must(t, err)
		wantStatus(t, g.StatusCode(), 201, g.Body)
		dg, err := e.c.DeleteGrantWithResponse(t.Context(), d.Id, g.JSON201.Id)
		must(t, err)
		wantStatus(t, dg.StatusCode(), 204, dg.Body)
		dk, err := e.c.DeleteAPIKeyWithResponse(t.Context(), k.Id)
		must(t, err)
		wantStatus(t, dk.StatusCode(), 200, dk.Body)
		dd, err := e.c.DeleteDatasetWithResponse(t.Context(), d.Id)
		must(t, err)
		wantStatus(t, dd.StatusCode(), 204, dd.Body)

		// Walk the trail in pages of 10 (the minimum): there are 10 events.
		var events []gen.AuditEvent
		var raw []byte
		var cursor *string
		for {
			p := &gen.ListAuditParams{Limit: ptr(10), Cursor: cursor}
			r, err := e.c.ListAuditWithResponse(t.Context(), p)
			must(t, err)
			wantStatus(t, r.StatusCode(), 200, r.Body)
			raw = append(raw, r.Body...)
			events = append(events, r.JSON200.Items...)
			if r.JSON200.TotalCount != 10 {
				t.Errorf("total_count %d, want 10", r.JSON200.TotalCount)
			}
			c, err := r.JSON200.Cursor.Get()
			if err != nil {
				break
			}
			cursor = &c
		}
		want := []string{"dataset.delete", "api_key.delete", "grant.delete", "grant.create", "dataset.upload",
			"dataset.change", "dataset.create", "api_key.rotate", "api_key.change", "api_key.create"}
		if len(events) != len(want) {
			t.Fatalf("%d events, want %d: %s", len(events), len(want), raw)
		}
		for i, ev := range events {
			if string(ev.Action) != want[i] {
				t.Errorf("event %d: %s, want %s", i, ev.Action, want[i])
			}
			actor, err := ev.Actor.Get()
			if err != nil || actor.Id != e.acct.PrincipalID || actor.Name == "" {
				t.Errorf("event %d (%s): actor %+v", i, ev.Action, ev.Actor)
			}
			if i > 0 && ev.Time.After(events[i-1].Time) {
				t.Errorf("event %d is newer than event %d", i, i-1)
			}
		}
		byAction := map[string]gen.AuditEvent{}
		for _, ev := range events {
			byAction[string(ev.Action)] = ev
		}
		wantChange := func(action, field string, before, after any) {
			t.Helper()
			ev := byAction[action]
			got, ok := ev.Changes[field]
			b, _ := json.Marshal(got)
			w, _ := json.Marshal([]any{before, after})
			if !ok || string(b) != string(w) {
				t.Errorf("%s: changes[%s] = %s, want %s (all: %v)", action, field, b, w, ev.Changes)
			}
		}
		wantChange("api_key.create", "origins", nil, []string{"example.com"})
		wantChange("api_key.change", "description", nil, "prod")
		wantChange("api_key.change", "enabled", true, false)
		if _, ok := byAction["api_key.change"].Changes["origins"]; ok {
			t.Error("api_key.change lists an unchanged field")
		}
		wantChange("api_key.rotate", "grace_seconds", nil, 60)
		wantChange("dataset.change", "name", "tiles private", "renamed")
		wantChange("dataset.upload", "has_tiles", false, true)
		wantChange("grant.create", "account_id", nil, partner.ID.String())
		wantChange("grant.delete", "account_id", partner.ID.String(), nil)
		wantChange("api_key.delete", "enabled", false, nil)
		wantChange("dataset.delete", "name", "renamed", nil)
		if ev := byAction["api_key.rotate"]; ev.Target.Id != k.Id || ev.Target.Type != "api_key" {
			t.Errorf("rotate target %+v", ev.Target)
		}
		for _, secret := range []string{k.Token, rotated, e.acct.Token} {
			if strings.Contains(string(raw), secret) {
				t.Errorf("the audit trail contains a secret %q", secret)
			}
		}
		// Neither in the table itself.
		var n int64
		must(t, db.Store.DB().Raw("SELECT COUNT(*) FROM audit_events WHERE CAST(changes AS TEXT) LIKE ? OR CAST(changes AS TEXT) LIKE ?", "%"+k.Token+"%", "%"+rotated+"%").Scan(&n).Error)
		if n != 0 {
			t.Errorf("%d audit rows hold a token", n)
		}
		// Another account's trail is its own; editors may not read it.
		pr, err := e.Client(t, partner.Token).ListAuditWithResponse(t.Context(), nil)
		must(t, err)
		if pr.JSON200 == nil || pr.JSON200.TotalCount != 0 {
			t.Errorf("partner's trail: %s", pr.Body)
		}
		editor := e.NewPrincipal(t, e.acct.ID, "editor")
		er, err := e.Client(t, editor.Token).ListAuditWithResponse(t.Context(), nil)
		must(t, err)
		wantStatus(t, er.StatusCode(), 403, er.Body)
	})
}

// Events older than the retention are pruned.
func TestAuditRetention(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{AuditRetention: time.Hour, AuditPruneInterval: 20 * time.Millisecond})
		e.key(t, e.c, nil, "")
		count := func() int {
			r, err := e.c.ListAuditWithResponse(t.Context(), nil)
			must(t, err)
			wantStatus(t, r.StatusCode(), 200, r.Body)
			return r.JSON200.TotalCount
		}
		if n := count(); n != 1 {
			t.Fatalf("%d events, want 1", n)
		}
		e.clock.advance(2 * time.Hour)
		tlWaitFor(t, 5*time.Second, "the pruner", func() bool { return count() == 0 })
	})
}
