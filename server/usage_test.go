package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
	"github.com/tilegate/tilegate/store"
)

// usageSums adds up the usage rows of a key or a dataset (flushed) in the last day.
type usageSums struct {
	served, bytes int64
	refused       map[string]int64
	byCredential  map[string]int64
	byDataset     map[uuid.UUID]int64
	byKey         map[uuid.UUID]int64
}

func readUsage(t *testing.T, st *store.Store, q store.UsageQuery) usageSums {
	t.Helper()
	return readUsageAt(t, st, q, time.Now())
}

// readUsageAt is readUsage of the day before at (from q.From when set).
func readUsageAt(t *testing.T, st *store.Store, q store.UsageQuery, at time.Time) usageSums {
	t.Helper()
	now := at.Unix()
	if q.From == 0 {
		q.From = now - 86400
	}
	q.To, q.Bucket = now+3600, 3600
	rows, err := st.Usage(t.Context(), q)
	must(t, err)
	s := usageSums{refused: map[string]int64{}, byCredential: map[string]int64{},
		byDataset: map[uuid.UUID]int64{}, byKey: map[uuid.UUID]int64{}}
	for _, r := range rows {
		s.served += r.Served
		s.bytes += r.Bytes
		if r.Reason != "" {
			s.refused[r.Reason] += r.Refused
		}
		s.byCredential[r.Credential] += r.Served
		s.byDataset[r.DatasetID] += r.Served
		s.byKey[r.KeyID] += r.Served
	}
	return s
}

// Tiles served and bytes per key × dataset, refusals per key × reason, token and public traffic
// per dataset: exact after a flush, and nothing is written before it.
func TestUsageCountsAfterFlush(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		priv := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		pub := e.dataset(t, e.c, gen.DatasetKindVector, gen.Public)
		e.uploadOK(t, priv.Id, tlVectorFile())
		e.uploadOK(t, pub.Id, tlVectorFile())
		k := e.key(t, e.c, []string{"example.com"}, "")
		key := "key=" + k.Token
		tok := e.token(t, e.c, priv.Id)
		ok := "Origin: https://example.com"

		var bytes int64
		for _, zxy := range []string{"0/0/0", "1/0/0", "1/1/1"} {
			r := e.get(t, "GET", tlTilePath(priv.Id, zxy, "pbf", key), ok)
			tlCheck(t, "key tile", r, 200, "")
			bytes += int64(len(r.body))
		}
		tlCheck(t, "no tile there", e.get(t, "GET", tlTilePath(priv.Id, "3/0/0", "pbf", key), ok), 204, "")
		tlCheck(t, "HEAD", e.get(t, "HEAD", tlTilePath(priv.Id, "0/0/0", "pbf", key), ok), 200, "")
		for range 2 {
			tlCheck(t, "other origin", e.get(t, "GET", tlTilePath(priv.Id, "0/0/0", "pbf", key), "Origin: https://evil.test"), 403, "origin")
		}
		tlCheck(t, "no origin", e.get(t, "GET", tlTilePath(priv.Id, "0/0/0", "pbf", key)), 403, "unknown_origin")
		tlCheck(t, "unknown key", e.get(t, "GET", tlTilePath(priv.Id, "0/0/0", "pbf", "key=AAAAAAAAAAAAAAAAAAAAAAAA")), 403, "unknown_key")
		var tokBytes int64
		for range 2 {
			r := e.get(t, "GET", tlTilePath(priv.Id, "1/0/0", "pbf", tok))
			tlCheck(t, "token tile", r, 200, "")
			tokBytes += int64(len(r.body))
		}
		tlCheck(t, "public tile", e.get(t, "GET", tlTilePath(pub.Id, "0/0/0", "pbf", "")), 200, "")

		if got := readUsage(t, db.Store, store.UsageQuery{KeyID: &k.Id}); got.served != 0 || len(got.refused) != 0 {
			t.Fatalf("usage written before a flush: %+v", got)
		}
		// Background refreshes of cached entries (after the listener's connect flush) run SQL of
		// their own: count the flush's statements once they are done.
		tlWarmAfterFlush(t, db, func() {})
		before := db.Statements.Load()
		must(t, e.Server.FlushUsage(t.Context()))
		if n := db.Statements.Load() - before; n != 1 {
			t.Errorf("a flush ran %d statements, want 1", n)
		}
		before = db.Statements.Load()
		must(t, e.Server.FlushUsage(t.Context()))
		if n := db.Statements.Load() - before; n != 0 {
			t.Errorf("a flush with nothing counted ran %d statements, want 0", n)
		}

		ku := readUsage(t, db.Store, store.UsageQuery{KeyID: &k.Id})
		if ku.served != 5 || ku.bytes != bytes || ku.byDataset[priv.Id] != 5 {
			t.Errorf("key usage: served %d bytes %d (dataset %d), want 5, %d, 5", ku.served, ku.bytes, ku.byDataset[priv.Id], bytes)
		}
		if want := map[string]int64{"origin": 2, "unknown_origin": 1}; !equalCounts(ku.refused, want) {
			t.Errorf("key refusals %v, want %v", ku.refused, want)
		}
		du := readUsage(t, db.Store, store.UsageQuery{DatasetID: &priv.Id})
		if du.served != 7 || du.bytes != bytes+tokBytes || du.byKey[k.Id] != 5 || du.byCredential["token"] != 2 {
			t.Errorf("dataset usage: served %d bytes %d by key %d by token %d; want 7, %d, 5, 2",
				du.served, du.bytes, du.byKey[k.Id], du.byCredential["token"], bytes+tokBytes)
		}
		pu := readUsage(t, db.Store, store.UsageQuery{DatasetID: &pub.Id})
		if pu.served != 1 || pu.byCredential["public"] != 1 {
			t.Errorf("public dataset usage: served %d (public %d), want 1", pu.served, pu.byCredential["public"])
		}

		// Counts add up across flushes (and replicas: the same upsert).
		tlCheck(t, "key tile", e.get(t, "GET", tlTilePath(priv.Id, "0/0/0", "pbf", key), ok), 200, "")
		must(t, e.Server.FlushUsage(t.Context()))
		if got := readUsage(t, db.Store, store.UsageQuery{KeyID: &k.Id}).served; got != 6 {
			t.Errorf("after a second flush: served %d, want 6", got)
		}
	})
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }

func equalCounts(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// The usage endpoints: a viewer reads them; hour and day buckets; refusals by reason; per
// dataset and per key; empty buckets omitted; another account's key or dataset is 404 (a
// dataset shared with it too); more than 1,000 buckets is 422.
// awayFromHourBoundary waits, when the next UTC hour is less than margin away, until it has
// begun: a test that counts traffic into "this hour's" bucket must not straddle two (CI once
// ran TestUsageEndpoints across an hour and saw its traffic split).
func awayFromHourBoundary(t testing.TB, margin time.Duration) {
	now := time.Now()
	if left := now.Truncate(time.Hour).Add(time.Hour).Sub(now); left < margin {
		t.Logf("waiting %s for the next hour to begin", left)
		time.Sleep(left + 100*time.Millisecond)
	}
}

func TestUsageEndpoints(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		awayFromHourBoundary(t, 30*time.Second)
		e := tlStart(t, db, server.Config{})
		ctx := t.Context()
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		e.uploadOK(t, d.Id, tlVectorFile())
		k := e.key(t, e.c, []string{"example.com"}, "")
		other := e.key(t, e.c, nil, "")
		tok := e.token(t, e.c, d.Id)
		for range 3 {
			tlCheck(t, "key", e.get(t, "GET", tlTilePath(d.Id, "0/0/0", "pbf", "key="+k.Token), "Origin: https://example.com"), 200, "")
		}
		tlCheck(t, "origin", e.get(t, "GET", tlTilePath(d.Id, "0/0/0", "pbf", "key="+k.Token), "Origin: https://evil.test"), 403, "origin")
		tlCheck(t, "other key", e.get(t, "GET", tlTilePath(d.Id, "1/0/0", "pbf", "key="+other.Token)), 200, "")
		tlCheck(t, "token", e.get(t, "GET", tlTilePath(d.Id, "1/0/0", "pbf", tok)), 200, "")
		must(t, e.Server.FlushUsage(ctx))

		viewer := e.Env.Client(t, e.Env.NewPrincipal(t, e.acct.ID, "viewer").Token)
		r, err := viewer.GetAPIKeyUsageWithResponse(ctx, k.Id, nil)
		must(t, err)
		wantStatus(t, r.StatusCode(), 200, r.Body)
		if r.JSON200.KeyId != k.Id || r.JSON200.Granularity != gen.Hour || len(r.JSON200.Items) != 1 {
			t.Fatalf("key usage: %s", r.Body)
		}
		it := r.JSON200.Items[0]
		hour := time.Now().UTC().Truncate(time.Hour)
		if !it.Start.Equal(hour) || it.Served != 3 || it.Refused["origin"] != 1 || it.Datasets[d.Id.String()] != 3 || it.Bytes <= 0 {
			t.Errorf("key usage item: %s (want start %v, served 3, refused origin 1, dataset 3)", r.Body, hour)
		}

		day := gen.Day
		from := time.Now().Add(-72 * time.Hour)
		rd, err := viewer.GetAPIKeyUsageWithResponse(ctx, k.Id, &gen.GetAPIKeyUsageParams{Granularity: &day, From: &from})
		must(t, err)
		wantStatus(t, rd.StatusCode(), 200, rd.Body)
		if len(rd.JSON200.Items) != 1 || !rd.JSON200.Items[0].Start.Equal(hour.Truncate(24*time.Hour)) || rd.JSON200.Items[0].Served != 3 {
			t.Errorf("daily key usage: %s", rd.Body)
		}
		// A period before the traffic has no buckets at all.
		past := time.Now().Add(-48 * time.Hour)
		re, err := viewer.GetAPIKeyUsageWithResponse(ctx, k.Id, &gen.GetAPIKeyUsageParams{To: &past})
		must(t, err)
		wantStatus(t, re.StatusCode(), 200, re.Body)
		if len(re.JSON200.Items) != 0 {
			t.Errorf("usage of a period without traffic: %s", re.Body)
		}

		rs, err := viewer.GetDatasetUsageWithResponse(ctx, d.Id, nil)
		must(t, err)
		wantStatus(t, rs.StatusCode(), 200, rs.Body)
		if len(rs.JSON200.Items) != 1 {
			t.Fatalf("dataset usage: %s", rs.Body)
		}
		di := rs.JSON200.Items[0]
		if di.Served != 5 || di.Tokens != 1 || di.Public != 0 || di.Keys[k.Id.String()] != 3 || di.Keys[other.Id.String()] != 1 || di.Refused["origin"] != 1 {
			t.Errorf("dataset usage item: %s", rs.Body)
		}

		// 422: more than 1,000 buckets, and an empty period; nothing is read.
		longAgo := time.Now().Add(-1001 * time.Hour)
		for name, p := range map[string]*gen.GetAPIKeyUsageParams{
			"1001 hours":     {From: &longAgo},
			"to before from": {From: &from, To: &longAgo},
		} {
			r, err := viewer.GetAPIKeyUsageWithResponse(ctx, k.Id, p)
			must(t, err)
			wantStatus(t, r.StatusCode(), 422, r.Body)
			_ = name
		}
		longAgoDay := time.Now().Add(-1001 * 24 * time.Hour)
		r4, err := viewer.GetDatasetUsageWithResponse(ctx, d.Id, &gen.GetDatasetUsageParams{From: &longAgoDay, Granularity: &day})
		must(t, err)
		wantStatus(t, r4.StatusCode(), 422, r4.Body)
		ok1000 := time.Now().Add(-999 * 24 * time.Hour)
		r5, err := viewer.GetDatasetUsageWithResponse(ctx, d.Id, &gen.GetDatasetUsageParams{From: &ok1000, Granularity: &day})
		must(t, err)
		wantStatus(t, r5.StatusCode(), 200, r5.Body)

		// Another account: 404 for the key and the dataset, even once the dataset is shared with it.
		b := e.Env.NewAccount(t)
		bc := e.Env.Client(t, b.Token)
		r6, err := bc.GetAPIKeyUsageWithResponse(ctx, k.Id, nil)
		must(t, err)
		wantStatus(t, r6.StatusCode(), 404, r6.Body)
		g, err := e.c.CreateGrantWithResponse(ctx, d.Id, gen.GrantCreate{AccountId: &b.ID})
		must(t, err)
		wantStatus(t, g.StatusCode(), 201, g.Body)
		r7, err := bc.GetDatasetUsageWithResponse(ctx, d.Id, nil)
		must(t, err)
		wantStatus(t, r7.StatusCode(), 404, r7.Body)
	})
}

// The retention job runs periodically and deletes usage older than TILEGATE_USAGE_RETENTION.
func TestUsageRetentionJob(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{UsageRetention: 48 * time.Hour, UsageRetentionEvery: 50 * time.Millisecond})
		key := uuid.New()
		now := time.Now().Unix()
		hour := now - now%3600
		must(t, db.Store.AddUsage(t.Context(), []store.UsageRow{
			{Hour: hour - 72*3600, KeyID: key, DatasetID: uuid.New(), Credential: store.CredentialKey, Served: 5},
			{Hour: hour - 24*3600, KeyID: key, DatasetID: uuid.New(), Credential: store.CredentialKey, Served: 2},
		}))
		tlWaitFor(t, 5*time.Second, "the retention job", func() bool {
			left, err := db.Store.ServedSince(t.Context(), []uuid.UUID{key}, 0)
			must(t, err)
			return left[key] == 2
		})
		_ = e
	})
}
