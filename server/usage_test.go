package server_test

import (
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
	now := time.Now().Unix()
	q.From, q.To, q.Bucket = now-86400, now+3600, 3600
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
