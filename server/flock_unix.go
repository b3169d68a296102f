//go:build unix

package server

import (
	"errors"
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
