package server

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/oapi-codegen/nullable"
	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/store"
)

// generatedPage is what the key list answered before keyPageJSON: the generated type, built
// with apiKeyOut, encoded by json.Encoder. keyPageJSON must write the same bytes.
func generatedPage(t testing.TB, r keyPageJSON) []byte {
	out := gen.ListAPIKeys200JSONResponse{TotalCount: int(r.page.Total), Items: make([]gen.APIKey, len(r.page.Items))}
	for i, k := range r.page.Items {
		out.Items[i] = apiKeyOut(k, r.used[k.ID])
	}
	if r.page.Next != nil {
		out.Cursor = nullable.NewNullableWithValue(r.page.Next.Encode())
	} else {
		out.Cursor = nullable.NewNullNullable[string]()
	}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func ptr[T any](v T) *T { return &v }

func TestKeyPageJSONMatchesGenerated(t *testing.T) {
	now := store.Now()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)
	full := store.APIKey{
		ID: uuid.New(), Token: "tok_abc", Name: `swift <harbor> & "co"`, Description: ptr("line\nnext\ttab\u2028 é \x01"),
		UserAgent: ptr(`Mozilla/5.0 \ (x)`), Origins: store.StringList{"https://a.example", "*.b.example"},
		Created: t0, Changed: t0.Add(time.Second), LastUsed: ptr(t0.Add(time.Hour)), ExpiresAt: ptr(t0.Add(48 * time.Hour)),
		Enabled: true, DatasetScoped: true, DatasetIDs: []uuid.UUID{uuid.New(), uuid.New()},
		IPRanges: &store.StringList{"10.0.0.0/8", "2001:db8::/32"}, PreviousTokenExpiresAt: ptr(now.Add(time.Hour)),
		RateLimitRPS: ptr(10), RateLimitBurst: ptr(20), MonthlyQuota: ptr(int64(1_000_000)),
	}
	bare := store.APIKey{ID: uuid.New(), Name: "bare", Created: t0, Changed: t0}
	scopedEmpty := bare
	scopedEmpty.ID, scopedEmpty.DatasetScoped = uuid.New(), true
	pastGrace := full
	pastGrace.ID, pastGrace.PreviousTokenExpiresAt, pastGrace.RateLimitBurst = uuid.New(), ptr(now.Add(-time.Second)), nil
	emptyOrigins := bare
	emptyOrigins.ID, emptyOrigins.Origins, emptyOrigins.IPRanges = uuid.New(), store.StringList{}, &store.StringList{}

	for name, r := range map[string]keyPageJSON{
		"empty": {now: now},
		"page": {now: now, page: store.Page[store.APIKey]{Total: 12345, Items: []store.APIKey{full, bare, scopedEmpty, pastGrace, emptyOrigins},
			Next: &store.Cursor{Created: t0, ID: full.ID}}, used: map[uuid.UUID]int64{full.ID: 42, bare.ID: 0}},
	} {
		want := generatedPage(t, r)
		if got := r.append(nil); string(got) != string(want) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
}

// FuzzKeyPageJSON checks the string escaping against encoding/json for any text a client can
// store in a name, description, user agent or origin.
func FuzzKeyPageJSON(f *testing.F) {
	for _, s := range []string{"", "plain", "<script>&amp;", "\"\\/\b\f\n\r\t\x00\x1f\x7f", "\u2028\u2029", "\xff\xfe", "é漢字🙂", "a\xc3"} {
		f.Add(s, s+"x")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		k := store.APIKey{ID: uuid.New(), Token: b, Name: a, Description: &b, UserAgent: &a, Origins: store.StringList{a, b}, Created: t0, Changed: t0}
		r := keyPageJSON{now: t0, page: store.Page[store.APIKey]{Total: 1, Items: []store.APIKey{k}}}
		if got, want := r.append(nil), generatedPage(t, r); string(got) != string(want) {
			t.Fatalf("\n got %q\nwant %q", got, want)
		}
	})
}
