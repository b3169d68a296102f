//go:build unix

package tilestore

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockUpload takes an exclusive flock on an upload's file for as long as f stays open: the
// mark of a live upload that sweeps (here and on replicas sharing the data directory) leave
// alone. It is independent of SQLite's own (fcntl) locks on the same file.
func lockUpload(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}

// errLocked is what lockUpload returns when another open file holds the lock.
func isLocked(err error) bool {
	return errors.Is(err, syscall.EWOULDBLOCK)
}

// lockDir takes the data directory's uploads lock, shared or exclusive, waiting for it;
// release lets it go. The lock is a flock on the directory itself, so it leaves no file.
func lockDir(dir string, exclusive bool) (release func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open data directory to lock uploads: %w", err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("lock uploads: %w", &os.PathError{Op: "flock", Path: dir, Err: err})
	}
	return func() { _ = f.Close() }, nil
}
