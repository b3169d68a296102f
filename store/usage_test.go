package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/store"
)

// Counts add up on conflict (replicas and flushes), in one statement; sums per bucket; the
// rows of a period, of one key, of one dataset.
func TestAddUsageAddsUp(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		ctx := context.Background()
		key, ds := uuid.New(), uuid.New()
		h := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC).Unix()
		row := func(hour int64, served int64, reason string, refused int64) store.UsageRow {
			return store.UsageRow{Hour: hour, KeyID: key, DatasetID: ds, Credential: store.CredentialKey, Reason: reason,
				Served: served, Bytes: served * 10, Refused: refused}
		}
		before := db.Statements.Load()
		must(t, db.Store.AddUsage(ctx, []store.UsageRow{row(h, 2, "", 0), row(h+3600, 1, "", 0), row(h, 0, "origin", 1)}))
		if n := db.Statements.Load() - before; n != 1 {
			t.Errorf("AddUsage ran %d statements, want 1", n)
		}
		must(t, db.Store.AddUsage(ctx, []store.UsageRow{row(h, 3, "", 0), row(h, 0, "origin", 2)}))
		got, err := db.Store.Usage(ctx, store.UsageQuery{KeyID: &key, From: h - 86400, To: h + 86400, Bucket: 86400})
		must(t, err)
		var served, bytes, refused int64
		for _, b := range got {
			if b.Start != h-h%86400 {
				t.Errorf("bucket start %d, want %d", b.Start, h-h%86400)
			}
			served, bytes, refused = served+b.Served, bytes+b.Bytes, refused+b.Refused
		}
		if served != 6 || bytes != 60 || refused != 3 || len(got) != 2 {
			t.Errorf("daily sums: %+v", got)
		}
		hourly, err := db.Store.Usage(ctx, store.UsageQuery{DatasetID: &ds, From: h + 3600, To: h + 7200, Bucket: 3600})
		must(t, err)
		if len(hourly) != 1 || hourly[0].Served != 1 || hourly[0].Start != h+3600 {
			t.Errorf("the second hour: %+v", hourly)
		}
		since, err := db.Store.ServedSince(ctx, []uuid.UUID{key, uuid.New()}, h+1)
		must(t, err)
		if len(since) != 1 || since[key] != 1 {
			t.Errorf("served since the second hour: %v", since)
		}
	})
}

// Retention deletes rows before the cutoff only; on PostgreSQL one replica at a time runs it
// (a second one, while the first holds the lock, does not).
func TestUsageRetention(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		ctx := context.Background()
		key := uuid.New()
		now := time.Now().Unix()
		old, recent := now-now%3600-401*86400, now-now%3600-399*86400
		must(t, db.Store.AddUsage(ctx, []store.UsageRow{
			{Hour: old, KeyID: key, DatasetID: uuid.New(), Credential: store.CredentialKey, Served: 1},
			{Hour: recent, KeyID: key, DatasetID: uuid.New(), Credential: store.CredentialKey, Served: 1},
		}))
		var deleted int64
		ran, err := db.Store.WithUsageLock(ctx, func(ctx context.Context) error {
			if db.Name == "postgres" {
				again, err := db.Store.WithUsageLock(ctx, func(context.Context) error { return nil })
				if err != nil || again {
					t.Errorf("a second replica ran the job while the lock was held (%v, %v)", again, err)
				}
			}
			var err error
			deleted, err = db.Store.DeleteUsageBefore(ctx, now-400*86400)
			return err
		})
		must(t, err)
		if !ran || deleted < 1 {
			t.Fatalf("retention: ran %v, deleted %d", ran, deleted)
		}
		left, err := db.Store.ServedSince(ctx, []uuid.UUID{key}, 0)
		must(t, err)
		if left[key] != 1 {
			t.Errorf("after retention the key has %d served, want the recent row's 1", left[key])
		}
	})
}
