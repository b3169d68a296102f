// Package blobstore is where dataset files live: a local directory (the default) or an
// S3-compatible bucket, behind one interface. Objects are written whole or not at all: a reader
// never sees a half-written object (a local file is renamed into place once synced; an S3
// object appears only when its upload completes), and what a crash leaves behind is removed by
// SweepIncomplete.
//
// Every call takes a context: its deadline bounds the call, network included.
package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"regexp"
	"time"
)

// The errors every Store returns, as values (errors.Is); the cause stays wrapped.
var (
	// ErrNotExist: no object has this key.
	ErrNotExist = errors.New("no such object")
	// ErrChanged: the object was replaced since it was opened; the reader must open it again.
	// Keys are written once in tilegate (each upload gets a new key), so this means a fault.
	ErrChanged = errors.New("object changed while being read")
	// ErrUnavailable: the storage could not be reached or failed (network, timeout, a 5xx, a
	// refused credential or a missing bucket). Passing from a tile's point of view: 503.
	ErrUnavailable = errors.New("storage unavailable")
	// ErrInvalidKey: the key is not one Store accepts (see ValidKey).
	ErrInvalidKey = errors.New("invalid object key")
)

// Info describes a stored object.
type Info struct {
	Key     string // relative to the store's root (the URL's prefix for a bucket)
	Size    int64
	ModTime time.Time
	// ETag identifies this version of the object (the bucket's ETag; size and modification time
	// of a local file).
	ETag string
}

// Store holds objects by key.
type Store interface {
	// Put streams r into key and returns the stored object's Info. Memory is bounded (one part
	// buffer for a bucket, none for a directory) whatever r's size. The object becomes visible
	// only when complete; when Put fails, nothing is visible under key and the partial data is
	// removed (or, after a crash, by SweepIncomplete). An existing object is replaced.
	Put(ctx context.Context, key string, r io.Reader) (Info, error)
	// Open returns a reader of key's current version.
	Open(ctx context.Context, key string) (Object, error)
	// Stat returns key's Info.
	Stat(ctx context.Context, key string) (Info, error)
	// Delete removes key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// List yields the complete objects whose key starts with prefix, in no promised order.
	List(ctx context.Context, prefix string) iter.Seq2[Info, error]
	// SweepIncomplete removes the partial data of Puts started before `before` that never
	// completed (a crashed process's; an aborted multipart upload in a bucket) and returns how
	// many it removed. Choose `before` well before now: Puts in progress on other replicas
	// started after it are left alone.
	SweepIncomplete(ctx context.Context, before time.Time) (int, error)
	// Check reports whether the storage can be used (the directory exists or can be created; the
	// bucket exists and the credentials are accepted).
	Check(ctx context.Context) error
	// String describes the store for logs and errors; it never contains a credential.
	String() string
}

// Object reads one version of an object with range reads.
type Object interface {
	// ReadAt reads len(p) bytes at off, as io.ReaderAt does: n < len(p) only with an error
	// (io.EOF at the end of the object). For a bucket it is one ranged GET of the version
	// opened; ErrChanged if the object was replaced since.
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
	Info() Info
	Close() error
}

// maxKeyBytes bounds a key well below S3's 1024.
const maxKeyBytes = 512

// keyRE: segments of letters, digits, '.', '_' and '-' separated by '/', each starting with a
// letter or digit — so no "." or ".." segment, no hidden name (a local store's partial files
// are hidden names) and no empty segment.
var keyRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$`)

// ValidKey reports whether key is acceptable to every Store.
func ValidKey(key string) error {
	if len(key) > maxKeyBytes || !keyRE.MatchString(key) {
		return fmt.Errorf("%w: %q", ErrInvalidKey, key)
	}
	return nil
}

// ReadAll reads the whole of a (small) object.
func ReadAll(ctx context.Context, s Store, key string) ([]byte, error) {
	o, err := s.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer o.Close()
	buf := make([]byte, o.Info().Size)
	n, err := o.ReadAt(ctx, buf, 0)
	if errors.Is(err, io.EOF) && n == len(buf) {
		err = nil
	}
	return buf[:n], err
}

// ctxReader stops a copy when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
