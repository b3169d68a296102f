package tilestore

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/mbtiles"
)

// Upload is one upload in progress: a temporary file in the data directory the body is written
// to (File), checked in place (Path), then published under a name of its own. The caller must
// call Cleanup when done.
type Upload struct {
	s       *Store
	Dataset uuid.UUID
	// File is the temporary file, open for writing the body; the caller closes it.
	File *os.File
	// Path is the temporary file's path, for the checks (SQLite reads files by path).
	Path string
	// Kind is what the file holds (Detect), which its published name says.
	Kind Kind
	lock *os.File // held open (and locked) while the upload is live, for sweeps
	// published is the final file while the dataset does not have it yet (removed on cleanup).
	published string
	// object is the bucket object while the dataset does not have it yet (deleted on cleanup).
	object string
}

// NewUpload creates the upload's file and locks it at once: the lock marks the upload live
// for sweeps until it has cleaned up. Both happen under the data directory's uploads lock
// (shared), which a sweep takes exclusively, so a sweep never finds a file not yet locked and
// may remove every unlocked upload file at once.
func (s *Store) NewUpload(dataset uuid.UUID) (*Upload, error) {
	if err := os.MkdirAll(s.cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	release, err := lockDir(s.cfg.Dir, false)
	if err != nil {
		return nil, err
	}
	defer release()
	tmp, err := os.CreateTemp(s.cfg.Dir, uploadPrefix+dataset.String()+"-*.mbtiles")
	if err != nil {
		return nil, fmt.Errorf("create upload file: %w", err)
	}
	up := &Upload{s: s, Dataset: dataset, File: tmp, Path: tmp.Name()}
	if up.lock, err = os.Open(up.Path); err != nil {
		_ = tmp.Close()
		mbtiles.RemoveFile(up.Path)
		return nil, fmt.Errorf("open upload file: %w", err)
	}
	if err := lockUpload(up.lock); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		s.log.Warn("lock upload file", "file", up.Path, "err", err)
	}
	return up, nil
}

// Cleanup removes the temporary file (and a published file the dataset did not take, unless
// Keep was called) and lets the lock go.
func (up *Upload) Cleanup() {
	mbtiles.RemoveFile(up.Path)
	if up.published != "" {
		_ = os.Remove(up.published)
	}
	if up.object != "" {
		up.s.deleteObject(up.object)
	}
	_ = up.lock.Close()
}

// Publish syncs the checked file and renames it to a name of its own in the data directory,
// and returns that name; with a bucket, streams it there under that name instead (bucket.go).
// Until Keep, Cleanup removes it. ctx bounds a bucket's Put (with putTimeout by size).
func (up *Upload) Publish(ctx context.Context) (string, error) {
	s := up.s
	if err := syncFile(up.Path); err != nil {
		return "", err
	}
	name, err := Name(up.Dataset, up.Kind)
	if err != nil {
		return "", err
	}
	if s.cfg.Bucket != nil {
		return up.publishBucket(ctx, name)
	}
	final := s.path(name)
	if err := os.Rename(up.Path, final); err != nil {
		return "", fmt.Errorf("publish upload: %w", err)
	}
	up.published = final
	if err := syncFile(s.cfg.Dir); err != nil {
		return "", err
	}
	return name, nil
}

// Keep leaves the published file in place on Cleanup: the dataset has it now, or may have it
// (a commit whose reply was lost), in which case the sweep removes it once no dataset
// references it. With a bucket, the checked file becomes this replica's cached copy.
func (up *Upload) Keep() {
	up.published = ""
	if up.object != "" {
		if up.Kind == MBTiles { // a PMTiles archive is read from the bucket by range: no copy
			up.s.cache.adopt(up.object, up.Path)
		}
		up.object = ""
	}
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}
