package server_test

import (
	"sync"
	"testing"
	"time"

	"github.com/oapi-codegen/nullable"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
	"github.com/tilegate/tilegate/store"
)

// fakeClock is the usage meter's injected clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *fakeClock) advance(d time.Duration) { c.set(c.now().Add(d)) }

// limitKey creates a key and sets its limits through the API.
func (e *tlEnv) limitKey(t *testing.T, rl *gen.RateLimit, quota *int64) gen.APIKey {
	t.Helper()
	k := e.key(t, e.c, nil, "")
	s := gen.APIKeySettings{}
	if rl != nil {
		s.RateLimit = nullable.NewNullableWithValue(*rl)
	}
	if quota != nil {
		s.MonthlyQuota = nullable.NewNullableWithValue(*quota)
	}
	r, err := e.c.ChangeAPIKeySettingsWithResponse(t.Context(), k.Id, s)
	must(t, err)
	wantStatus(t, r.StatusCode(), 200, r.Body)
	return *r.JSON200
}

func wantHeader(t *testing.T, r tlResponse, name, want string) {
	t.Helper()
	if got := r.header.Get(name); got != want {
		t.Errorf("%s: %q, want %q", name, got, want)
	}
}

// Over its rate limit a key is answered 429 with Retry-After, the reason, the IETF RateLimit
// fields and CORS; it recovers as the bucket refills; the refusals are counted.
func TestRateLimit(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		clock := &fakeClock{t: time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)}
		e := tlStart(t, db, server.Config{Now: clock.now})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		e.uploadOK(t, d.Id, tlVectorFile())
		k := e.limitKey(t, &gen.RateLimit{RequestsPerSecond: 2, Burst: 3}, nil)
		if v, err := k.RateLimit.Get(); err != nil || v.RequestsPerSecond != 2 || v.Burst != 3 {
			t.Fatalf("rate_limit as answered: %+v", k.RateLimit)
		}
		path := tlTilePath(d.Id, "0/0/0", "pbf", "key="+k.Token)
		for i := range 3 {
			tlCheck(t, "within the burst "+string(rune('1'+i)), e.get(t, "GET", path), 200, "")
		}
		r := e.get(t, "GET", path)
		tlCheck(t, "over the burst", r, 429, "rate_limited")
		wantHeader(t, r, "Retry-After", "1")
		wantHeader(t, r, "RateLimit-Policy", `"default";q=2;w=1`)
		wantHeader(t, r, "RateLimit", `"default";r=0;t=1`)
		wantHeader(t, r, "Access-Control-Allow-Origin", "*")
		wantHeader(t, r, "Cache-Control", "no-store")
		if h := e.get(t, "HEAD", path); h.status != 429 || h.header.Get("X-Tilegate-Reason") != "rate_limited" || h.header.Get("Retry-After") != "1" {
			t.Errorf("HEAD over the burst: %d %v", h.status, h.header)
		}

		clock.advance(500 * time.Millisecond) // one token back
		tlCheck(t, "a token later", e.get(t, "GET", path), 200, "")
		tlCheck(t, "and no more", e.get(t, "GET", path), 429, "rate_limited")
		clock.advance(10 * time.Second) // full again: burst 3
		for range 3 {
			tlCheck(t, "recovered", e.get(t, "GET", path), 200, "")
		}
		tlCheck(t, "burst used again", e.get(t, "GET", path), 429, "rate_limited")

		// null removes the limit (the key's cache entry is invalidated by the change).
		rr, err := e.c.ChangeAPIKeySettingsWithResponse(t.Context(), k.Id, gen.APIKeySettings{RateLimit: nullable.NewNullNullable[gen.RateLimit]()})
		must(t, err)
		wantStatus(t, rr.StatusCode(), 200, rr.Body)
		if !rr.JSON200.RateLimit.IsNull() {
			t.Errorf("rate_limit after null: %s", rr.Body)
		}
		for range 5 {
			tlCheck(t, "no limit", e.get(t, "GET", path), 200, "")
		}

		must(t, e.Server.FlushUsage(t.Context()))
		u := readUsageAt(t, db.Store, store.UsageQuery{KeyID: &k.Id}, clock.now())
		if u.served != 12 || u.refused["rate_limited"] != 4 {
			t.Errorf("usage: served %d refused %v; want 12 and rate_limited 4", u.served, u.refused)
		}
	})
}

// Bad limits are a 422 naming the field, and change nothing.
func TestLimitsValidation(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		k := e.key(t, e.c, nil, "")
		for _, body := range []string{
			`{"rate_limit":{"requests_per_second":0,"burst":1}}`,
			`{"rate_limit":{"requests_per_second":100001,"burst":1}}`,
			`{"rate_limit":{"requests_per_second":1,"burst":1000001}}`,
			`{"rate_limit":{"requests_per_second":1}}`,
			`{"rate_limit":{"requests_per_second":1,"burst":1,"window":3}}`,
			`{"monthly_quota":-1}`,
			`{"monthly_quota":"lots"}`,
		} {
			r, err := e.c.ChangeAPIKeySettingsWithBodyWithResponse(t.Context(), k.Id, "application/json", stringsReader(body))
			must(t, err)
			wantStatus(t, r.StatusCode(), 422, r.Body)
		}
		g, err := e.c.GetAPIKeyWithResponse(t.Context(), k.Id)
		must(t, err)
		if !g.JSON200.RateLimit.IsNull() || !g.JSON200.MonthlyQuota.IsNull() || g.JSON200.UsageThisMonth != 0 {
			t.Errorf("limits after refused changes: %s", g.Body)
		}
	})
}

// A key's monthly quota: 429 quota_exceeded with Retry-After to the next month once reached;
// usage_this_month counts what is not written yet; a new month (injected clock) starts afresh.
func TestMonthlyQuota(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		clock := &fakeClock{t: time.Date(2026, 1, 31, 23, 58, 0, 0, time.UTC)}
		e := tlStart(t, db, server.Config{Now: clock.now})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		e.uploadOK(t, d.Id, tlVectorFile())
		quota := int64(3)
		k := e.limitKey(t, nil, &quota)
		path := tlTilePath(d.Id, "0/0/0", "pbf", "key="+k.Token)
		tlCheck(t, "first", e.get(t, "GET", path), 200, "")
		must(t, e.Server.FlushUsage(t.Context())) // one written, the others not yet
		// A tile not served after all (here: the wrong format) does not use the quota up.
		tlCheck(t, "wrong format", e.get(t, "GET", tlTilePath(d.Id, "0/0/0", "png", "key="+k.Token)), 404, "")
		for range 2 {
			tlCheck(t, "within the quota", e.get(t, "GET", path), 200, "")
		}
		r := e.get(t, "GET", path)
		tlCheck(t, "over the quota", r, 429, "quota_exceeded")
		wantHeader(t, r, "Retry-After", "120") // 2026-02-01T00:00:00Z
		wantHeader(t, r, "RateLimit-Policy", `"monthly";q=3;w=2678400`)
		wantHeader(t, r, "RateLimit", `"monthly";r=0;t=120`)
		wantHeader(t, r, "Access-Control-Allow-Origin", "*")
		usage := func() int64 {
			g, err := e.c.GetAPIKeyWithResponse(t.Context(), k.Id)
			must(t, err)
			wantStatus(t, g.StatusCode(), 200, g.Body)
			return g.JSON200.UsageThisMonth
		}
		if n := usage(); n != 3 {
			t.Errorf("usage_this_month %d, want 3", n)
		}
		must(t, e.Server.FlushUsage(t.Context()))
		if n := usage(); n != 3 {
			t.Errorf("usage_this_month after a flush %d, want 3", n)
		}
		tlCheck(t, "still over", e.get(t, "GET", path), 429, "quota_exceeded")

		clock.set(time.Date(2026, 2, 1, 0, 0, 1, 0, time.UTC))
		for range 3 {
			tlCheck(t, "next month", e.get(t, "GET", path), 200, "")
		}
		r = e.get(t, "GET", path)
		tlCheck(t, "next month's quota used", r, 429, "quota_exceeded")
		wantHeader(t, r, "Retry-After", "2419199") // to 2026-03-01
		if n := usage(); n != 3 {
			t.Errorf("usage_this_month in February %d, want 3", n)
		}

		// Raising the quota lets the key on at once; null removes it.
		more := int64(4)
		rr, err := e.c.ChangeAPIKeySettingsWithResponse(t.Context(), k.Id, gen.APIKeySettings{MonthlyQuota: nullable.NewNullableWithValue(more)})
		must(t, err)
		wantStatus(t, rr.StatusCode(), 200, rr.Body)
		tlCheck(t, "raised", e.get(t, "GET", path), 200, "")
		tlCheck(t, "raised, used", e.get(t, "GET", path), 429, "quota_exceeded")
		must(t, e.Server.FlushUsage(t.Context()))
		feb := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC).Unix()
		u := readUsageAt(t, db.Store, store.UsageQuery{KeyID: &k.Id, From: feb}, clock.now())
		if u.served != 4 || u.refused["quota_exceeded"] != 2 {
			t.Errorf("February usage: served %d refused %v; want 4 and quota_exceeded 2", u.served, u.refused)
		}
	})
}
