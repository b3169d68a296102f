package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Local keeps objects as files under a directory: key a/b is file DIR/a/b. A Put writes a
// hidden partial file (.put-*) beside its target, syncs it and renames it into place.
type Local struct {
	dir string
}

// partialPrefix starts the names of Puts in progress; keys never start with '.'.
const partialPrefix = ".put-"

// NewLocal returns the store of dir (created by Put and Check when missing).
func NewLocal(dir string) *Local { return &Local{dir: dir} }

// Path is the file that holds key: the MBTiles reader (SQLite) reads files by path.
func (l *Local) Path(key string) (string, error) {
	if err := ValidKey(key); err != nil {
		return "", err
	}
	return filepath.Join(l.dir, filepath.FromSlash(key)), nil
}

func (l *Local) String() string { return l.dir }

// GoString keeps %#v as short as %v.
func (l *Local) GoString() string { return "blobstore.Local(" + strconv.Quote(l.dir) + ")" }

func (l *Local) Check(ctx context.Context) error {
	if err := os.MkdirAll(l.dir, 0o750); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

func (l *Local) Put(ctx context.Context, key string, r io.Reader) (Info, error) {
	path, err := l.Path(key)
	if err != nil {
		return Info{}, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return Info{}, localErr("put "+key, err)
	}
	f, err := os.CreateTemp(dir, partialPrefix+"*")
	if err != nil {
		return Info{}, localErr("put "+key, err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err := io.Copy(f, ctxReader{ctx, r}); err != nil {
		return Info{}, fmt.Errorf("put %s: %w", key, err)
	}
	if err := f.Sync(); err != nil {
		return Info{}, localErr("put "+key, err)
	}
	if err := f.Close(); err != nil {
		return Info{}, localErr("put "+key, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return Info{}, localErr("put "+key, err)
	}
	done = true
	if err := syncDir(dir); err != nil {
		return Info{}, localErr("put "+key, err)
	}
	return l.Stat(ctx, key)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (l *Local) Stat(ctx context.Context, key string) (Info, error) {
	path, err := l.Path(key)
	if err != nil {
		return Info{}, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return Info{}, localErr("stat "+key, err)
	}
	if !fi.Mode().IsRegular() {
		return Info{}, fmt.Errorf("stat %s: %w: not a regular file", key, ErrNotExist)
	}
	return localInfo(key, fi), nil
}

func localInfo(key string, fi fs.FileInfo) Info {
	return Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime(),
		ETag: strconv.FormatInt(fi.Size(), 16) + "-" + strconv.FormatInt(fi.ModTime().UnixNano(), 16)}
}

func (l *Local) Open(ctx context.Context, key string) (Object, error) {
	path, err := l.Path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, localErr("open "+key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, localErr("open "+key, err)
	}
	if !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, fmt.Errorf("open %s: %w: not a regular file", key, ErrNotExist)
	}
	return &localObject{f: f, info: localInfo(key, fi)}, nil
}

// localObject reads an open file: a file replaced by rename keeps serving the version opened.
type localObject struct {
	f    *os.File
	info Info
}

func (o *localObject) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	n, err := o.f.ReadAt(p, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return n, localErr("read "+o.info.Key, err)
	}
	return n, err
}

func (o *localObject) Info() Info   { return o.info }
func (o *localObject) Close() error { return o.f.Close() }

func (l *Local) Delete(ctx context.Context, key string) error {
	path, err := l.Path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return localErr("delete "+key, err)
	}
	return nil
}

func (l *Local) List(ctx context.Context, prefix string) iter.Seq2[Info, error] {
	return func(yield func(Info, error) bool) {
		err := filepath.WalkDir(l.dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if path == l.dir && errors.Is(err, fs.ErrNotExist) {
					return filepath.SkipAll // nothing stored yet
				}
				return err
			}
			if cerr := ctx.Err(); cerr != nil {
				return cerr
			}
			if path == l.dir {
				return nil
			}
			rel, err := filepath.Rel(l.dir, path)
			if err != nil {
				return err
			}
			key := filepath.ToSlash(rel)
			if d.IsDir() {
				// Skip hidden directories and those that cannot hold a key with this prefix.
				if strings.HasPrefix(d.Name(), ".") ||
					!strings.HasPrefix(key+"/", prefix) && !strings.HasPrefix(prefix, key+"/") {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() || ValidKey(key) != nil || !strings.HasPrefix(key, prefix) {
				return nil
			}
			fi, err := d.Info()
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed meanwhile
			} else if err != nil {
				return err
			}
			if !yield(localInfo(key, fi), nil) {
				return errStop
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			yield(Info{}, localErr("list "+prefix, err))
		}
	}
}

var errStop = errors.New("stop")

func (l *Local) SweepIncomplete(ctx context.Context, before time.Time) (int, error) {
	n := 0
	err := filepath.WalkDir(l.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if d.IsDir() || !strings.HasPrefix(d.Name(), partialPrefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil || !fi.ModTime().Before(before) {
			return nil // gone, or still being written
		}
		if err := os.Remove(path); err == nil {
			n++
		}
		return nil
	})
	if err != nil {
		return n, localErr("sweep", err)
	}
	return n, nil
}

// localErr wraps a file-system error in the package's vocabulary, keeping the cause.
func localErr(what string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: %w: %w", what, ErrNotExist, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", what, err)
	default:
		return fmt.Errorf("%s: %w: %w", what, ErrUnavailable, err)
	}
}
