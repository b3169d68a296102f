package tilestore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tilegate/tilegate/mbtiles"
)

// sweeper sweeps what crashed or stuck processes leave in the data directory, at start and
// then every Config.SweepInterval:
//
//   - uploads (.upload-*): removed at once when no live upload holds their flock (lockUpload):
//     an upload creates and locks its file under the uploads lock (lockDir, shared), which the
//     sweep holds exclusively, so no file is met between the two; a lone SQLite side file once
//     older than uploadMinAge; without flock support, when older than abandonedUploadAge;
//   - tile files (Name): removed when no dataset row references them on
//     two sweeps at least the replaced-files grace period apart, so that reads in flight on a
//     file just replaced (here or on a replica) finish, and a file published a moment before
//     its row commits is not taken.
type sweeper struct {
	s        *Store
	interval time.Duration
	grace    time.Duration

	mu         sync.Mutex
	orphanSeen map[string]time.Time // tile file → first sweep that found it unreferenced
	copySeen   map[string]time.Time // cached copy (with a bucket) → the same
	stop       chan struct{}
	done       chan struct{}
}

const (
	uploadMinAge       = time.Minute
	abandonedUploadAge = 24 * time.Hour
)

func newSweeper(s *Store, interval, grace time.Duration) *sweeper {
	return &sweeper{s: s, interval: interval, grace: max(grace, 0), orphanSeen: map[string]time.Time{}, copySeen: map[string]time.Time{}}
}

// start sweeps uploads at once, then everything in the background every interval.
func (f *sweeper) start() {
	f.sweepUploads()
	f.stop, f.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(f.done)
		t := time.NewTicker(f.interval)
		defer t.Stop()
		for {
			f.sweep()
			select {
			case <-f.stop:
				return
			case <-t.C:
			}
		}
	}()
}

func (f *sweeper) close() {
	if f.stop == nil {
		return
	}
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	<-f.done
}

func (f *sweeper) sweep() {
	f.sweepUploads()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if f.s.cfg.Bucket != nil {
		f.sweepBucket(ctx, time.Now())
		return
	}
	f.sweepTiles(ctx, time.Now())
}

// sweepUploads removes the upload files no live upload owns, with their SQLite side files.
func (f *sweeper) sweepUploads() {
	dir := f.s.cfg.Dir
	if _, err := os.Stat(dir); err != nil {
		return // nothing uploaded yet (or the directory is unusable: /readyz says so)
	}
	release, err := lockDir(dir, true)
	if err != nil {
		f.s.log.Warn("sweep uploads", "err", err)
		return
	}
	defer release()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, uploadPrefix) || e.IsDir() {
			continue
		}
		base := name
		for _, suffix := range []string{"-journal", "-wal", "-shm"} {
			base = strings.TrimSuffix(base, suffix)
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		if base != name {
			// A side file goes with its upload; alone, once old.
			if _, err := os.Stat(filepath.Join(dir, base)); err == nil || time.Since(info.ModTime()) < uploadMinAge {
				continue
			}
		}
		path := filepath.Join(dir, name)
		if base == name && !f.abandoned(path, info.ModTime()) {
			continue
		}
		if base == name {
			mbtiles.RemoveFile(path)
		} else {
			_ = os.Remove(path)
		}
		f.s.log.Info("removed abandoned upload", "file", path)
	}
}

// abandoned reports whether no live upload holds path's lock. The lock taken to find out is
// released when the function returns (the caller then removes the file).
func (f *sweeper) abandoned(path string, modTime time.Time) bool {
	file, err := os.Open(path)
	if err != nil {
		return false
	}
	defer file.Close()
	err = lockUpload(file)
	switch {
	case err == nil:
		return true
	case errors.Is(err, errors.ErrUnsupported):
		return time.Since(modTime) > abandonedUploadAge
	case isLocked(err):
		return false
	default:
		f.s.log.Warn("lock upload file", "file", path, "err", err)
		return false
	}
}

// sweepTiles removes tile files no dataset references on two sweeps grace apart. The directory
// is listed before the references are read, so a file published and committed meanwhile is
// seen referenced.
func (f *sweeper) sweepTiles(ctx context.Context, now time.Time) {
	dir := f.s.cfg.Dir
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	var names []string
	for _, e := range entries {
		if IsName(e.Name()) && e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return
	}
	refs, err := f.s.cfg.Referenced(ctx)
	if err != nil {
		f.s.log.Warn("sweep tile files: read the datasets' files", "err", err)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	present := map[string]bool{}
	for _, name := range names {
		present[name] = true
		if refs[name] {
			delete(f.orphanSeen, name)
			continue
		}
		first, ok := f.orphanSeen[name]
		if !ok {
			f.orphanSeen[name] = now
			continue
		}
		if now.Sub(first) < f.grace {
			continue
		}
		path := filepath.Join(dir, name)
		f.s.cfg.Pool.Forget(path)
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			f.s.log.Warn("remove unreferenced tile file", "file", path, "err", err)
			continue
		}
		delete(f.orphanSeen, name)
		f.s.log.Info("removed unreferenced tile file", "file", path)
	}
	for name := range f.orphanSeen {
		if !present[name] {
			delete(f.orphanSeen, name)
		}
	}
}
