package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/oapi-codegen/nullable"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

// On a warm cache a tile request runs no SQL at all, with a key (origin rules included), a
// token, or no credential; TileJSON with a key neither.
func TestTileHotPathRunsNoSQL(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		priv := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		pub := e.dataset(t, e.c, gen.DatasetKindVector, gen.Public)
		e.uploadOK(t, priv.Id, tlVectorFile())
		e.uploadOK(t, pub.Id, tlVectorFile())
		key := "key=" + e.key(t, e.c, []string{"example.com"}, "").Token
		tok := e.token(t, e.c, priv.Id)
		// Keys with a rate limit and a monthly quota: counted, limited and refused in memory.
		quota := int64(1_000_000)
		limited := "key=" + e.limitKey(t, &gen.RateLimit{RequestsPerSecond: 100000, Burst: 1000000}, &quota).Token
		spent := int64(0)
		overQuota := "key=" + e.limitKey(t, nil, &spent).Token
		// A key with every rule (issue #10) costs no statement either.
		all := e.key(t, e.c, []string{"example.com"}, "tile-tests")
		r, err := e.c.ChangeAPIKeySettingsWithResponse(t.Context(), all.Id, gen.APIKeySettings{
			ExpiresAt:  nullable.NewNullableWithValue(time.Now().Add(time.Hour)),
			DatasetIds: nullable.NewNullableWithValue([]uuid.UUID{pub.Id, priv.Id}),
			IpRanges:   tlList([]string{"10.0.0.0/8", "127.0.0.0/8", "::1"}),
		})
		must(t, err)
		wantStatus(t, r.StatusCode(), 200, r.Body)
		requests := []struct {
			path   string
			status int
		}{
			{tlTilePath(priv.Id, "1/1/1", "pbf", key), 200},
			{tlTilePath(priv.Id, "1/0/0", "pbf", tok), 200},
			{tlTilePath(priv.Id, "1/0/0", "pbf", "key="+all.Token), 200},
			{tlTilePath(priv.Id, "3/0/0", "pbf", key), 204},
			{tlTilePath(pub.Id, "0/0/0", "pbf", ""), 200},
			{tlTilePath(priv.Id, "0/0/0", "pbf", "key=AAAAAAAAAAAAAAAAAAAAAAAA"), 403}, // a negative entry
			{tlTilePath(priv.Id, "1/1/1", "pbf", limited), 200},
			{tlTilePath(priv.Id, "1/1/1", "pbf", overQuota), 429},
			{"/api/tiles/" + priv.Id.String() + "/tilejson.json?" + key, 200},
		}
		warm := func() {
			for _, rq := range requests {
				if r := e.get(t, "GET", rq.path, "Origin: https://example.com"); r.status != rq.status {
					t.Fatalf("%s: %d, want %d: %s", rq.path, r.status, rq.status, r.body)
				}
			}
		}
		warm()
		e.tlListening(t)
		tlWarmAfterFlush(t, db, warm)
		// The first rate-limited request starts the replica heartbeat, the first request with a
		// quota reads the month's count: both in the background, done before counting.
		tlWaitFor(t, 5*time.Second, "the replica heartbeat", func() bool { return e.Server.LiveReplicas() > 0 })
		must(t, e.Server.FlushUsage(t.Context()))

		before := db.Statements.Load()
		for range 20 {
			warm()
		}
		if n := db.Statements.Load() - before; n != 0 {
			t.Errorf("%d tile requests on a warm cache ran %d SQL statements, want 0", 20*len(requests), n)
		}
	})
}

// last_used is recorded in memory and written every LastUsedInterval, and on Close.
func TestAPIKeyLastUsed(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{LastUsedInterval: 50 * time.Millisecond})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		e.uploadOK(t, d.Id, tlVectorFile())
		used := e.key(t, e.c, nil, "")
		unused := e.key(t, e.c, nil, "")
		lastUsed := func(id gen.APIKey) *time.Time {
			r, err := e.c.GetAPIKeyWithResponse(t.Context(), id.Id)
			must(t, err)
			wantStatus(t, r.StatusCode(), 200, r.Body)
			if v, err := r.JSON200.LastUsed.Get(); err == nil {
				return &v
			}
			return nil
		}
		if lastUsed(used) != nil {
			t.Fatal("a new key has last_used")
		}
		start := time.Now().Truncate(time.Second)
		for range 5 {
			tlCheck(t, "tile", e.get(t, "GET", tlTilePath(d.Id, "0/0/0", "pbf", "key="+used.Token)), 200, "")
		}
		var at *time.Time
		tlWaitFor(t, 3*time.Second, "last_used to be written", func() bool { at = lastUsed(used); return at != nil })
		if at.Before(start) || at.After(time.Now().Add(time.Second)) {
			t.Errorf("last_used %v, request at %v", at, start)
		}
		if lastUsed(unused) != nil {
			t.Error("an unused key got last_used")
		}
		// A later use moves it forward (times are kept to the second).
		time.Sleep(1100 * time.Millisecond)
		tlCheck(t, "tile", e.get(t, "GET", tlTilePath(d.Id, "0/0/0", "pbf", "key="+used.Token)), 200, "")
		tlWaitFor(t, 3*time.Second, "last_used to move forward", func() bool { v := lastUsed(used); return v != nil && v.After(*at) })
		r, err := e.c.GetAPIKeyWithResponse(t.Context(), used.Id)
		must(t, err)
		if !r.JSON200.Changed.Equal(used.Changed) {
			t.Errorf("using a key changed `changed`: %v → %v", used.Changed, r.JSON200.Changed)
		}

		// A server whose flusher would wait an hour writes on Close.
		slow := tlStart(t, db, server.Config{LastUsedInterval: time.Hour})
		k := slow.key(t, slow.c, nil, "")
		p := slow.dataset(t, slow.c, gen.DatasetKindVector, gen.Private)
		slow.uploadOK(t, p.Id, tlVectorFile())
		tlCheck(t, "tile", slow.get(t, "GET", tlTilePath(p.Id, "0/0/0", "pbf", "key="+k.Token)), 200, "")
		time.Sleep(100 * time.Millisecond)
		if v, _ := db.Store.GetAPIKey(t.Context(), slow.acct.ID, k.Id); v.LastUsed != nil {
			t.Fatal("written before Close")
		}
		must(t, slow.Server.Close())
		v, err := db.Store.GetAPIKey(t.Context(), slow.acct.ID, k.Id)
		must(t, err)
		if v.LastUsed == nil {
			t.Error("Close did not write last_used")
		}
	})
}

// The PostgreSQL listener comes back after its connection is killed, flushing the cache, and
// notifications work again.
func TestTileCacheListenerReconnects(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		if db.Name != "postgres" {
			t.Skip("LISTEN/NOTIFY is PostgreSQL's")
		}
		e := tlStart(t, db, server.Config{TileCacheTTL: time.Hour})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		e.uploadOK(t, d.Id, tlVectorFile())
		k := e.key(t, e.c, nil, "")
		p := tlTilePath(d.Id, "0/0/0", "pbf", "key="+k.Token)
		tlCheck(t, "warm", e.get(t, "GET", p), 200, "")
		e.tlListening(t)

		conn, err := pgx.Connect(context.Background(), db.URL)
		must(t, err)
		defer conn.Close(context.Background())
		var killed int
		must(t, conn.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = 'tilegate-listener'`).Scan(&killed))
		if killed == 0 {
			t.Fatal("no listener connection found")
		}
		tlWaitFor(t, 2*time.Second, "the listener to notice", func() bool { return !e.Server.Listening() })
		// A change while it is away is not notified; the flush on reconnect covers it.
		must(t, db.Store.DeleteAPIKey(t.Context(), e.acct.ID, k.Id))
		tlWaitFor(t, 10*time.Second, "the listener to reconnect", e.Server.Listening)
		tlCheck(t, "after reconnecting", e.get(t, "GET", p), 403, "unknown_key")

		// And notifications flow again.
		k2 := e.key(t, e.c, nil, "")
		p2 := tlTilePath(d.Id, "0/0/0", "pbf", "key="+k2.Token)
		tlCheck(t, "second key", e.get(t, "GET", p2), 200, "")
		must(t, db.Store.DeleteAPIKey(t.Context(), e.acct.ID, k2.Id))
		tlWaitFor(t, time.Second, "the notification", func() bool { return e.get(t, "GET", p2).status == 403 })
	})
}
