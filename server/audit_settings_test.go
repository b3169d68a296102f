package server_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

// Every setting of a key is in the audit trail, on create and on change. The settings are the
// APIKey schema's writable properties, read from the spec: a setting added later fails here until
// it has example values below, and then until the trail records it.
func TestAuditListsEverySetting(t *testing.T) {
	spec, err := server.LoadSpec()
	must(t, err)
	var settable []string
	for name, p := range spec.Components.Schemas["APIKey"].Value.Properties {
		if !p.Value.ReadOnly {
			settable = append(settable, name)
		}
	}
	slices.Sort(settable)
	if len(settable) < 10 {
		t.Fatalf("only %d settable fields read from the spec: %v", len(settable), settable)
	}
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		d1 := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		d2 := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		// Two values of each setting, both unlike its default, written as the API writes them.
		values := map[string][2]string{
			"name":          {`"audited"`, `"audited again"`},
			"description":   {`"first"`, `"second"`},
			"user_agent":    {`"agent/1"`, `"agent/2"`},
			"origins":       {`["a.example.com"]`, `["b.example.com"]`},
			"expires_at":    {`"2030-01-01T00:00:00Z"`, `"2031-06-01T12:00:00Z"`},
			"enabled":       {`false`, `true`},
			"dataset_ids":   {`["` + d1.Id.String() + `"]`, `["` + d2.Id.String() + `"]`},
			"ip_ranges":     {`["10.0.0.0/8"]`, `["192.0.2.0/24"]`},
			"rate_limit":    {`{"requests_per_second":5,"burst":10}`, `{"requests_per_second":6,"burst":12}`},
			"monthly_quota": {`1000`, `2000`},
		}
		body := func(i int) string {
			parts := make([]string, 0, len(settable))
			for _, f := range settable {
				v, ok := values[f]
				if !ok {
					t.Fatalf("no example values for the setting %q: add them", f)
				}
				parts = append(parts, `"`+f+`":`+v[i])
			}
			return "{" + strings.Join(parts, ",") + "}"
		}
		cr, err := e.c.CreateAPIKeyWithBodyWithResponse(context.Background(), "application/json", strings.NewReader(body(0)))
		must(t, err)
		wantStatus(t, cr.StatusCode(), 200, cr.Body)
		status, raw := e.changeRaw(t, cr.JSON200.Id, body(1))
		wantStatus(t, status, 200, raw)

		ar, err := e.c.ListAuditWithResponse(context.Background(), nil)
		must(t, err)
		wantStatus(t, ar.StatusCode(), 200, ar.Body)
		events := map[string]gen.AuditEvent{}
		for _, ev := range ar.JSON200.Items {
			events[string(ev.Action)] = ev
		}
		for _, f := range settable {
			check := func(action, before, after string) {
				t.Helper()
				got, ok := events[action].Changes[f]
				if !ok {
					t.Errorf("%s: changes lack %q (has %v)", action, f, keysOf(events[action].Changes))
					return
				}
				if g, w := canonical(t, got), canonical(t, "["+before+","+after+"]"); g != w {
					t.Errorf("%s: changes[%s] = %s, want %s", action, f, g, w)
				}
			}
			check("api_key.create", "null", values[f][0])
			check("api_key.change", values[f][0], values[f][1])
		}
	})
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// canonical is v (a value, or JSON text) as compact JSON with sorted keys.
func canonical(t testing.TB, v any) string {
	t.Helper()
	if s, ok := v.(string); ok {
		var parsed any
		must(t, json.Unmarshal([]byte(s), &parsed))
		v = parsed
	}
	b, err := json.Marshal(v)
	must(t, err)
	return string(b)
}
