package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/oapi-codegen/nullable"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

// TestChangeSettingsWithoutBody: MapTiler's document makes change_settings' body optional. No
// body (however it is sent) and {} change nothing: 200 with the key as it is, the same `changed`,
// no audit event.
func TestChangeSettingsWithoutBody(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		acct := env.NewAccount(t)
		c := env.Client(t, acct.Token)
		ctx := context.Background()
		cr, err := c.CreateAPIKeyWithResponse(ctx, gen.APIKeySettings{Name: nullable.NewNullableWithValue("kept"),
			Origins: nullable.NewNullableWithValue([]string{"example.com"}), UserAgent: nullable.NewNullableWithValue("UA")})
		must(t, err)
		wantStatus(t, cr.StatusCode(), 200, cr.Body)
		before := cr.JSON200
		audited := func() int {
			t.Helper()
			ar, err := c.ListAuditWithResponse(ctx, nil)
			must(t, err)
			wantStatus(t, ar.StatusCode(), 200, ar.Body)
			return len(ar.JSON200.Items)
		}
		events := audited()
		url := env.URL + "/v1/api_keys/" + before.Id.String() + "/change_settings"
		hc := env.HTTPClient(t)
		check := func(what string, status int, raw []byte) {
			t.Helper()
			wantStatus(t, status, 200, raw)
			var k gen.APIKey
			must(t, json.Unmarshal(raw, &k))
			if k.Id != before.Id || k.Name != "kept" || len(k.Origins) != 1 || k.UserAgent.MustGet() != "UA" ||
				!k.Changed.Equal(before.Changed) || k.Token != before.Token {
				t.Errorf("%s: key %s changed (before: %+v)", what, raw, before)
			}
		}
		for _, tc := range []struct {
			what, contentType string
			body              io.Reader
		}{
			{"no body", "", http.NoBody},
			{"no body, JSON content type", "application/json", http.NoBody},
			{"chunked empty body", "application/json", io.MultiReader()},
			{"empty object", "application/json", strings.NewReader("{}")},
		} {
			req, err := http.NewRequest("POST", url, tc.body)
			must(t, err)
			req.Header.Set("Authorization", "Token "+acct.Token) // as MapTiler's clients send it
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			res, err := hc.Do(req)
			must(t, err)
			raw, _ := io.ReadAll(res.Body)
			res.Body.Close()
			check(tc.what, res.StatusCode, raw)
		}
		// The generated client, as a client of MapTiler's spec calls it without settings.
		res, err := c.ChangeAPIKeySettingsWithBodyWithResponse(ctx, before.Id, "application/json", http.NoBody)
		must(t, err)
		check("generated client", res.StatusCode(), res.Body)
		if n := audited(); n != events {
			t.Errorf("%d audit events after changing nothing, want %d", n, events)
		}
		// A field is still a change.
		res, err = c.ChangeAPIKeySettingsWithResponse(ctx, before.Id, gen.APIKeySettings{Description: nullable.NewNullableWithValue("d")})
		must(t, err)
		wantStatus(t, res.StatusCode(), 200, res.Body)
		if res.JSON200.Changed.Equal(before.Changed) || audited() != events+1 {
			t.Errorf("a real change: changed %v (before %v), audit events %d", res.JSON200.Changed, before.Changed, audited())
		}
	})
}
