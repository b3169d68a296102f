package tilestore

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/blobstore"
	"github.com/tilegate/tilegate/internal/testminio"
	"github.com/tilegate/tilegate/mbtiles"
	"github.com/tilegate/tilegate/tilesource"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testminio.StopShared()
	os.Exit(code)
}

// openBucket opens a fresh MinIO bucket (under a prefix) as a blobstore.Store.
func openBucket(t *testing.T) blobstore.Store {
	t.Helper()
	srv := testminio.Shared(t)
	bucket := srv.Bucket(t)
	env := map[string]string{"AWS_ACCESS_KEY_ID": testminio.AccessKey, "AWS_SECRET_ACCESS_KEY": testminio.SecretKey}
	s, err := blobstore.Open(context.Background(),
		fmt.Sprintf("s3://%s/tiles?endpoint=%s&region=%s&use_path_style=true", bucket, srv.Endpoint, testminio.Region),
		blobstore.Options{Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// warnings records the WARN and ERROR lines a store logs.
type warnings struct {
	mu    sync.Mutex
	lines []string
}

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lines = append(w.lines, r.Message)
	return nil
}
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }
func (w *warnings) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.lines...)
}

// refs is the datasets' view of which files they reference, shared by the replicas.
type refs struct {
	mu    sync.Mutex
	names map[string]bool
}

func (r *refs) set(name string, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.names[name] = on
}

func (r *refs) get(context.Context) (map[string]bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]bool{}
	for k, v := range r.names {
		if v {
			out[k] = true
		}
	}
	return out, nil
}

func newBucketStore(t *testing.T, bucket blobstore.Store, r *refs, w *warnings, cacheBytes int64) *Store {
	t.Helper()
	pool := mbtiles.NewPool(8)
	t.Cleanup(func() { _ = pool.Close() })
	s, err := New(Config{
		Dir: t.TempDir(), Pool: pool, Grace: 100 * time.Millisecond, SweepInterval: time.Hour,
		Referenced: r.get, Logger: slog.New(w), Bucket: bucket, CacheBytes: cacheBytes,
		FetchWait: 5 * time.Second, CommitTimeout: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func keys(t *testing.T, s blobstore.Store) string {
	t.Helper()
	var out []string
	for info, err := range s.List(context.Background(), "") {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, info.Key)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func putObject(t *testing.T, s blobstore.Store, key string, data []byte) {
	t.Helper()
	if _, err := s.Put(context.Background(), key, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
}

func newName(t *testing.T) string {
	t.Helper()
	n, err := Name(uuid.New(), MBTiles)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Two replicas sweeping the bucket at the same moments delete each unreferenced tile file once
// it has been seen unreferenced for orphanAge (never sooner: an object completes before its
// row takes it), leave referenced files and objects that are not tile files alone, and log no
// failure.
func TestBucketSweepTwoReplicas(t *testing.T) {
	bucket := openBucket(t)
	r := &refs{names: map[string]bool{}}
	w := &warnings{}
	a := newBucketStore(t, bucket, r, w, 1<<30)
	b := newBucketStore(t, bucket, r, w, 1<<30)
	ref, orphan, late := newName(t), newName(t), newName(t)
	r.set(ref, true)
	for _, k := range []string{ref, orphan, "notes/readme.txt"} {
		putObject(t, bucket, k, []byte(k))
	}
	both := func() {
		var wg sync.WaitGroup
		for _, s := range []*Store{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				s.sweeper.sweepBucket(ctx, time.Now())
			}()
		}
		wg.Wait()
	}
	both()                                     // first seen unreferenced: kept
	putObject(t, bucket, late, []byte("late")) // complete, its row not committed yet
	both()
	if got, want := keys(t, bucket), sortedJoin(ref, orphan, late, "notes/readme.txt"); got != want {
		t.Fatalf("after sweeps within orphanAge: %s, want %s", got, want)
	}
	if age := a.orphanAge(); age != time.Second {
		t.Fatalf("orphanAge %v, want 1s (the floor above Grace and CommitTimeout)", age)
	}
	time.Sleep(600 * time.Millisecond)
	r.set(late, true) // its row commits, within CommitTimeout
	time.Sleep(600 * time.Millisecond)
	both()
	if got, want := keys(t, bucket), sortedJoin(ref, late, "notes/readme.txt"); got != want {
		t.Fatalf("after sweeps past orphanAge: %s, want %s", got, want)
	}
	if lines := w.all(); len(lines) != 0 {
		t.Errorf("sweeps logged %v", lines)
	}
}

func sortedJoin(s ...string) string {
	sort.Strings(s)
	return strings.Join(s, " ")
}

// gatedStore holds Opens until released and counts them.
type gatedStore struct {
	blobstore.Store
	opens atomic.Int64
	gate  chan struct{}
}

func (g *gatedStore) Open(ctx context.Context, key string) (blobstore.Object, error) {
	g.opens.Add(1)
	<-g.gate
	return g.Store.Open(ctx, key)
}

// Concurrent first tiles of a file wait for one fetch; past FetchWait they are ErrUnavailable
// while the fetch goes on, and once it ends the copy serves without another. A file missing
// from the bucket is ErrMissing.
func TestCacheFetchOnce(t *testing.T) {
	bucket := openBucket(t)
	g := &gatedStore{Store: bucket, gate: make(chan struct{})}
	r := &refs{names: map[string]bool{}}
	s := newBucketStore(t, g, r, &warnings{}, 1<<30)
	s.cache.wait = 300 * time.Millisecond
	name := newName(t)
	data := make([]byte, 3*fetchChunk/2) // two ranged reads
	_, _ = rand.Read(data)
	putObject(t, bucket, name, data)

	var wg sync.WaitGroup
	errs := make([]error, 10)
	start := time.Now()
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = s.cache.acquire(context.Background(), name)
		}()
	}
	wg.Wait()
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("waiting tiles took %v, want about the 300ms fetch wait", took)
	}
	for _, err := range errs {
		if !errors.Is(err, tilesource.ErrUnavailable) {
			t.Fatalf("a tile past the fetch wait: %v, want ErrUnavailable", err)
		}
	}
	close(g.gate)
	// The fetch goes on after the gate opens: the next tile waits for it (a busy machine, the
	// race detector: more than the 300 ms above). Every acquire above has returned (wg.Wait), so
	// nothing reads wait while it changes.
	s.cache.wait = 30 * time.Second
	path, release, err := s.cache.acquire(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	release()
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the copy: %d bytes, %v; want the object's %d", len(got), err, len(data))
	}
	if n := g.opens.Load(); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
	if _, _, err := s.cache.acquire(context.Background(), newName(t)); !errors.Is(err, tilesource.ErrMissing) {
		t.Errorf("a file not in the bucket: %v, want ErrMissing", err)
	}
}

// The cache evicts least recently used copies, never one a tile is being read from: while
// every copy is in use it holds more than its limit, and evicts as soon as a read ends.
func TestCacheEvictsOnlyUnused(t *testing.T) {
	bucket := openBucket(t)
	const size = 100_000
	r := &refs{names: map[string]bool{}}
	s := newBucketStore(t, bucket, r, &warnings{}, size*3/2)
	one, two, three := newName(t), newName(t), newName(t)
	for _, n := range []string{one, two, three} {
		putObject(t, bucket, n, make([]byte, size))
	}
	ctx := context.Background()
	present := func(name string) bool {
		_, err := os.Stat(filepath.Join(s.cfg.Dir, "cache", name))
		return err == nil
	}
	_, releaseOne, err := s.cache.acquire(ctx, one)
	if err != nil {
		t.Fatal(err)
	}
	_, releaseTwo, err := s.cache.acquire(ctx, two)
	if err != nil {
		t.Fatal(err)
	}
	if !present(one) || !present(two) {
		t.Fatal("a copy in use was evicted")
	}
	if used, limit := s.cache.usage(); used <= limit {
		t.Fatalf("used %d, limit %d: want the overshoot of two copies in use", used, limit)
	}
	releaseOne()
	if present(one) || !present(two) {
		t.Fatalf("after the read of the older copy ended: one %v, two %v; want only two", present(one), present(two))
	}
	releaseTwo()
	_, releaseThree, err := s.cache.acquire(ctx, three)
	if err != nil {
		t.Fatal(err)
	}
	releaseThree()
	if present(two) || !present(three) {
		t.Fatalf("after a third file: two %v, three %v; want only three", present(two), present(three))
	}
	if used, limit := s.cache.usage(); used > limit || used != size {
		t.Fatalf("used %d of %d, want one copy", used, limit)
	}

	// Another process cannot take the cache while this one has it; a restart keeps the copies.
	again := Config{Dir: s.cfg.Dir, Pool: s.cfg.Pool, Referenced: r.get, Bucket: bucket, CacheBytes: size * 3 / 2}
	if _, err := New(again); !errors.Is(err, ErrCacheInUse) {
		t.Fatalf("a second store on the same cache: %v, want ErrCacheInUse", err)
	}
	s.Close()
	s2, err := New(again)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if names := s2.cache.names(); len(names) != 1 || names[0] != three {
		t.Fatalf("after a restart the cache has %v, want [%s]", names, three)
	}
}
