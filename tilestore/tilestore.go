// Package tilestore is where datasets' tile files live, and the one owner of their naming rule:
// uploads are received, published under a name of their own, served, retired after a grace
// period and swept of what crashed processes leave behind, here and nowhere else. The server
// keeps the HTTP handlers and the wiring; the tile path reads the files through Source.
//
// The data directory is shared by replicas and outlives processes. Its names:
//
//   - <dataset>-<random>.mbtiles or .pmtiles: a published tile file (Name; the extension says
//     its kind, told from its content at upload: kind.go), immutable: a new upload gets a
//     new name, so open handles (here and on replicas) keep reading the old one until it is
//     retired, and ETags change with the file (Version);
//   - .upload-*: an upload in progress (or a crashed one's leftover), and readiness probes.
package tilestore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/blobstore"
	"github.com/tilegate/tilegate/mbtiles"
	"github.com/tilegate/tilegate/pmtiles"
)

// Config is what a Store needs.
type Config struct {
	// Dir is the data directory.
	Dir string
	// Pool holds the tile files open for reading.
	Pool *mbtiles.Pool
	// PMTiles keeps PMTiles archives' headers and directories (nil: a cache of
	// pmtiles.DefaultCacheBytes); MaxTileBytes bounds their tiles (0: the MBTiles default).
	PMTiles      *pmtiles.Cache
	MaxTileBytes int64
	// Grace is how long a replaced or unreferenced file stays for reads in flight (here and on
	// replicas that have not heard of the change yet); negative: removed at once.
	Grace time.Duration
	// SweepInterval is how often the directory is swept (Start).
	SweepInterval time.Duration
	// Referenced returns the names of the tile files datasets reference (the database's view).
	Referenced func(ctx context.Context) (map[string]bool, error)
	Logger     *slog.Logger

	// Bucket, when set, is where the tile files live (TILEGATE_STORAGE_URL s3://…), shared by
	// the replicas (bucket.go); Dir is then this replica's own: uploads being received and
	// checked, and the cache of the bucket's files (Dir/cache). nil: Dir is where they live.
	Bucket blobstore.Store
	// CacheBytes bounds the cache of the bucket's files (with a bucket).
	CacheBytes int64
	// FetchWait is the longest a tile waits for its file to be fetched from the bucket; past
	// it the tile is answered 503 while the fetch goes on.
	FetchWait time.Duration
	// CommitTimeout is the longest a dataset row may take to take an upload's object once it
	// is in the bucket (the database deadline of the commit): unreferenced objects younger
	// than it are never swept.
	CommitTimeout time.Duration
	// MaxUpload is the largest upload: incomplete bucket uploads are aborted by the sweep once
	// older than its Put may take. IncompleteAge, when set, is that age instead.
	MaxUpload     int64
	IncompleteAge time.Duration
}

// Store is the datasets' tile files.
type Store struct {
	cfg     Config
	log     *slog.Logger
	retired *retiredFiles
	sweeper *sweeper

	// With a bucket (else nil):
	cache         *cache         // this replica's copies of the bucket's files
	bucketRetired *bucketRetired // replaced files' objects waiting for their grace period
	deadMu        sync.Mutex
	deadPuts      map[string]time.Time // failed Puts whose parts may be left (bucket.go)
}

// New returns the store of cfg.Dir (and cfg.Bucket); Start begins its sweeps.
func New(cfg Config) (*Store, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PMTiles == nil {
		cfg.PMTiles = pmtiles.NewCache(0)
	}
	s := &Store{cfg: cfg, log: cfg.Logger}
	s.retired = newRetiredFiles(cfg.Pool, cfg.Logger, cfg.Grace)
	s.sweeper = newSweeper(s, cfg.SweepInterval, cfg.Grace)
	if cfg.Bucket != nil {
		if cfg.FetchWait <= 0 {
			cfg.FetchWait = 10 * time.Second
		}
		c, err := openCache(filepath.Join(cfg.Dir, "cache"), cfg.Bucket, cfg.Pool, cfg.CacheBytes, cfg.FetchWait, cfg.Logger)
		if err != nil {
			return nil, err
		}
		s.cfg = cfg
		s.cache = c
		s.bucketRetired = &bucketRetired{s: s, timer: map[string]*time.Timer{}}
	}
	return s, nil
}

// Start sweeps abandoned uploads at once, then everything in the background every SweepInterval.
func (s *Store) Start() { s.sweeper.start() }

// Close stops the sweeps and removes the retired files still waiting for their grace period.
func (s *Store) Close() {
	s.sweeper.close()
	s.retired.close()
	if s.bucketRetired != nil {
		s.bucketRetired.close()
		s.cache.close()
	}
}

// Dir is the data directory.
func (s *Store) Dir() string { return s.cfg.Dir }

// uploadPrefix starts the name of every upload in progress in the data directory.
const uploadPrefix = ".upload-"

// nameRE matches the names Name gives.
var nameRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-[0-9a-f]{16}\.(mbtiles|pmtiles)$`)

// Name is a new tile file's name, "<dataset>-<random>.mbtiles" (or .pmtiles, after kind):
// unique per upload, so a new file never replaces one that open handles (here or on other
// replicas) still read, and ETags change with the file.
func Name(dataset uuid.UUID, kind Kind) (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return dataset.String() + "-" + hex.EncodeToString(b) + kind.ext(), nil
}

// IsName reports whether name is one Name gives.
func IsName(name string) bool { return nameRE.MatchString(name) }

// Version is the random part of a tile file's name, unique per upload: the ETag's stem.
func Version(name string) string {
	name = strings.TrimSuffix(name, filepath.Ext(name))
	if i := strings.LastIndexByte(name, '-'); i >= 0 {
		name = name[i+1:]
	}
	return name
}

// path is the file of name in the data directory.
func (s *Store) path(name string) string { return filepath.Join(s.cfg.Dir, name) }

// Retire stops new reads of the replaced file name here at once and removes it after the grace
// period (replicas' reads that meet it gone read the dataset again).
func (s *Store) Retire(name string) {
	if s.cfg.Bucket != nil {
		s.bucketRetired.retire(name)
		return
	}
	s.retired.retire(s.path(name))
}

// Remove removes the file of a deleted dataset: at once from the data directory; with a
// bucket, this replica's copy at once and the object after the grace period (other replicas
// may not have heard of the deletion yet).
func (s *Store) Remove(name string) error {
	if s.cfg.Bucket != nil {
		s.cache.forget(name)
		s.cache.drop(name)
		s.bucketRetired.retire(name)
		return nil
	}
	path := s.path(name)
	s.cfg.Pool.Forget(path)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Check reports whether the data directory can be listed and written: it writes, syncs and
// removes a small file (named as uploads are, so a probe cut short is swept like one). With a
// bucket, it also asks the bucket (ErrBucket when it does not answer).
func (s *Store) Check(ctx context.Context) error {
	if err := s.checkDir(); err != nil {
		return err
	}
	if s.cfg.Bucket != nil {
		return s.checkBucket(ctx)
	}
	return nil
}

func (s *Store) checkDir() error {
	dir := s.cfg.Dir
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open data directory: %w", err)
	}
	_, err = d.Readdirnames(1)
	_ = d.Close()
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("list data directory: %w", err)
	}
	f, err := os.CreateTemp(dir, uploadPrefix+"readyz-*")
	if err != nil {
		return fmt.Errorf("write data directory: %w", err)
	}
	defer func() { _ = os.Remove(f.Name()) }()
	_, err = f.Write([]byte("ok"))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write data directory: %w", err)
	}
	return nil
}

// retiredFiles removes replaced tile files after a grace period, so reads in flight on them
// finish — here, and on replicas that have not heard of the upload yet (a reader that fails on
// a vanished file reads the dataset again) — or at once on close.
type retiredFiles struct {
	tiles *mbtiles.Pool
	log   *slog.Logger
	grace time.Duration
	mu    sync.Mutex
	timer map[string]*time.Timer // guarded by mu; nil once closed
}

func newRetiredFiles(tiles *mbtiles.Pool, log *slog.Logger, grace time.Duration) *retiredFiles {
	return &retiredFiles{tiles: tiles, log: log, grace: grace, timer: map[string]*time.Timer{}}
}

// retire stops new reads of path here at once and removes the file after the grace period.
func (r *retiredFiles) retire(path string) {
	r.tiles.Forget(path)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timer == nil || r.grace < 0 {
		r.remove(path)
		return
	}
	if _, ok := r.timer[path]; ok {
		return
	}
	r.timer[path] = time.AfterFunc(r.grace, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.timer != nil {
			delete(r.timer, path)
			r.remove(path)
		}
	})
}

// close removes every file still waiting.
func (r *retiredFiles) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for path, t := range r.timer {
		t.Stop()
		r.remove(path)
	}
	r.timer = nil
}

func (r *retiredFiles) remove(path string) {
	r.tiles.Forget(path) // a read may have reopened it meanwhile
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		r.log.Warn("remove replaced tiles", "file", path, "err", err)
	}
}
