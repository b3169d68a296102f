package blobstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/tilegate/tilegate/blobstore"
	"github.com/tilegate/tilegate/internal/testminio"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testminio.StopShared()
	os.Exit(code)
}

// testPartSize is S3's smallest part: a Put above it is a multipart upload.
const testPartSize = 5 << 20

// fixture is one kind of store under test, with what the tests need to look behind it.
type fixture struct {
	store blobstore.Store
	// leaveCrashed leaves what a process that crashed in the middle of a Put of key leaves.
	leaveCrashed func(t *testing.T, key string)
	// partials counts the partial data of unfinished Puts.
	partials func(t *testing.T) int
	// requests counts HTTP requests to the bucket (nil for a directory).
	requests *atomic.Int64
}

// forEachStore runs test against a local directory and a MinIO bucket.
func forEachStore(t *testing.T, test func(t *testing.T, f fixture)) {
	t.Run("local", func(t *testing.T) { test(t, localFixture(t)) })
	t.Run("s3", func(t *testing.T) { test(t, s3Fixture(t)) })
}

func localFixture(t *testing.T) fixture {
	dir := filepath.Join(t.TempDir(), "data")
	return fixture{
		store: blobstore.NewLocal(dir),
		leaveCrashed: func(t *testing.T, key string) {
			if err := os.MkdirAll(dir, 0o750); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, ".put-crashed"+key), []byte("partial"), 0o640); err != nil {
				t.Fatal(err)
			}
		},
		partials: func(t *testing.T) int {
			n := 0
			_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
				if err == nil && strings.HasPrefix(d.Name(), ".put-") {
					n++
				}
				return nil
			})
			return n
		},
	}
}

// countingTransport counts the requests it carries.
type countingTransport struct {
	n *atomic.Int64
	http.RoundTripper
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.RoundTripper.RoundTrip(r)
}

func s3Fixture(t *testing.T) fixture {
	srv := testminio.Shared(t)
	bucket := srv.Bucket(t)
	requests := &atomic.Int64{}
	store := openS3(t, srv, bucket, "tiles/", countingTransport{requests, http.DefaultTransport})
	ctx := context.Background()
	return fixture{
		store:    store,
		requests: requests,
		leaveCrashed: func(t *testing.T, key string) {
			core := minio.Core{Client: srv.Client}
			id, err := core.NewMultipartUpload(ctx, bucket, "tiles/"+key, minio.PutObjectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			part := bytes.Repeat([]byte{1}, testPartSize)
			if _, err := core.PutObjectPart(ctx, bucket, "tiles/"+key, id, 1, bytes.NewReader(part), int64(len(part)), minio.PutObjectPartOptions{}); err != nil {
				t.Fatal(err)
			}
		},
		partials: func(t *testing.T) int {
			n := 0
			for up := range srv.Client.ListIncompleteUploads(ctx, bucket, "", true) {
				if up.Err != nil {
					t.Fatal(up.Err)
				}
				n++
			}
			return n
		},
	}
}

func openS3(t testing.TB, srv *testminio.Server, bucket, prefix string, tr http.RoundTripper) blobstore.Store {
	env := map[string]string{"AWS_ACCESS_KEY_ID": testminio.AccessKey, "AWS_SECRET_ACCESS_KEY": testminio.SecretKey}
	raw := fmt.Sprintf("s3://%s/%s?endpoint=%s&region=%s&use_path_style=true", bucket, prefix, srv.Endpoint, testminio.Region)
	s, err := blobstore.Open(context.Background(), raw, blobstore.Options{
		Getenv: func(k string) string { return env[k] }, Transport: tr, PartSize: testPartSize})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func put(t *testing.T, s blobstore.Store, key string, data []byte) blobstore.Info {
	t.Helper()
	info, err := s.Put(ctxT(t), key, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	if info.Key != key || info.Size != int64(len(data)) || info.ETag == "" {
		t.Fatalf("put %s: info %+v, want size %d and an ETag", key, info, len(data))
	}
	return info
}

// What is put reads back, whole and by ranges, with io.ReaderAt's end-of-object rules.
func TestPutReadRanges(t *testing.T) {
	forEachStore(t, func(t *testing.T, f fixture) {
		ctx := ctxT(t)
		data := randomBytes(t, 100_000)
		put(t, f.store, "d/one.pmtiles", data)
		o, err := f.store.Open(ctx, "d/one.pmtiles")
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		if o.Info().Size != int64(len(data)) {
			t.Fatalf("size %d, want %d", o.Info().Size, len(data))
		}
		for _, r := range []struct {
			off, n, want int
			eof          bool
		}{
			{0, 16384, 16384, false},
			{12345, 1, 1, false},
			{99_990, 10, 10, false},
			{99_990, 20, 10, true}, // past the end: short, io.EOF
			{100_000, 5, 0, true},
			{200_000, 5, 0, true},
		} {
			p := make([]byte, r.n)
			n, err := o.ReadAt(ctx, p, int64(r.off))
			if n != r.want || (r.eof != errors.Is(err, io.EOF)) || (!r.eof && err != nil) {
				t.Fatalf("ReadAt(%d bytes at %d) = %d, %v; want %d, eof %v", r.n, r.off, n, err, r.want, r.eof)
			}
			if n > 0 && !bytes.Equal(p[:n], data[r.off:r.off+n]) {
				t.Fatalf("ReadAt(%d bytes at %d): wrong bytes", r.n, r.off)
			}
		}
		all, err := blobstore.ReadAll(ctx, f.store, "d/one.pmtiles")
		if err != nil || !bytes.Equal(all, data) {
			t.Fatalf("ReadAll: %d bytes, %v", len(all), err)
		}
	})
}

// A Put bigger than a part is a multipart upload (in a bucket) and reads back byte for byte.
func TestPutMultipart(t *testing.T) {
	forEachStore(t, func(t *testing.T, f fixture) {
		data := randomBytes(t, 2*testPartSize+12345)
		put(t, f.store, "big", data)
		all, err := blobstore.ReadAll(ctxT(t), f.store, "big")
		if err != nil || !bytes.Equal(all, data) {
			t.Fatalf("ReadAll: %d bytes (want %d), %v", len(all), len(data), err)
		}
		if n := f.partials(t); n != 0 {
			t.Fatalf("%d partial uploads left after a complete Put", n)
		}
	})
}

// Stat, Delete and replacing a key; missing keys are ErrNotExist, deleting one is no error.
func TestStatDeleteReplace(t *testing.T) {
	forEachStore(t, func(t *testing.T, f fixture) {
		ctx := ctxT(t)
		if _, err := f.store.Stat(ctx, "nope"); !errors.Is(err, blobstore.ErrNotExist) {
			t.Fatalf("Stat(missing) = %v, want ErrNotExist", err)
		}
		if _, err := f.store.Open(ctx, "nope"); !errors.Is(err, blobstore.ErrNotExist) {
			t.Fatalf("Open(missing) = %v, want ErrNotExist", err)
		}
		if err := f.store.Delete(ctx, "nope"); err != nil {
			t.Fatalf("Delete(missing) = %v, want nil", err)
		}
		put(t, f.store, "k", []byte("first"))
		second := put(t, f.store, "k", []byte("second!"))
		st, err := f.store.Stat(ctx, "k")
		if err != nil || st.Size != 7 || st.ETag != second.ETag {
			t.Fatalf("Stat after replace = %+v, %v; want the second version %+v", st, err, second)
		}
		if err := f.store.Delete(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.store.Stat(ctx, "k"); !errors.Is(err, blobstore.ErrNotExist) {
			t.Fatalf("Stat after Delete = %v, want ErrNotExist", err)
		}
	})
}

// Keys that could escape the store, hide among partial files or collide are refused by every
// call before anything is touched.
func TestInvalidKeys(t *testing.T) {
	forEachStore(t, func(t *testing.T, f fixture) {
		ctx := ctxT(t)
		for _, key := range []string{"", "../x", "a/../../x", ".put-x", "a/.hidden", "a//b", "/abs", "a/", "a\\b", "a b", "ü", strings.Repeat("a", 513)} {
			if _, err := f.store.Put(ctx, key, strings.NewReader("x")); !errors.Is(err, blobstore.ErrInvalidKey) {
				t.Errorf("Put(%q) = %v, want ErrInvalidKey", key, err)
			}
			if _, err := f.store.Stat(ctx, key); !errors.Is(err, blobstore.ErrInvalidKey) {
				t.Errorf("Stat(%q) = %v, want ErrInvalidKey", key, err)
			}
			if _, err := f.store.Open(ctx, key); !errors.Is(err, blobstore.ErrInvalidKey) {
				t.Errorf("Open(%q) = %v, want ErrInvalidKey", key, err)
			}
			if err := f.store.Delete(ctx, key); !errors.Is(err, blobstore.ErrInvalidKey) {
				t.Errorf("Delete(%q) = %v, want ErrInvalidKey", key, err)
			}
		}
		if keys := listKeys(t, f.store, ""); len(keys) != 0 {
			t.Fatalf("objects after refused Puts: %v", keys)
		}
	})
}

func listKeys(t *testing.T, s blobstore.Store, prefix string) []string {
	t.Helper()
	var keys []string
	for info, err := range s.List(ctxT(t), prefix) {
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		keys = append(keys, info.Key)
	}
	sort.Strings(keys)
	return keys
}

// List yields the complete objects under a prefix, and stops when the caller does.
func TestList(t *testing.T) {
	forEachStore(t, func(t *testing.T, f fixture) {
		if keys := listKeys(t, f.store, ""); len(keys) != 0 {
			t.Fatalf("empty store lists %v", keys)
		}
		for _, k := range []string{"a-1", "a-2", "a/x", "b/y/z", "c"} {
			put(t, f.store, k, []byte(k))
		}
		f.leaveCrashed(t, "a-3")
		for prefix, want := range map[string]string{
			"":    "a-1 a-2 a/x b/y/z c",
			"a":   "a-1 a-2 a/x",
			"a-":  "a-1 a-2",
			"b/":  "b/y/z",
			"b/y": "b/y/z",
			"zzz": "",
		} {
			if got := strings.Join(listKeys(t, f.store, prefix), " "); got != want {
				t.Errorf("List(%q) = %q, want %q", prefix, got, want)
			}
		}
		n := 0
		for _, err := range f.store.List(ctxT(t), "") {
			if err != nil {
				t.Fatal(err)
			}
			if n++; n == 2 {
				break
			}
		}
		if n != 2 {
			t.Fatalf("stopped after %d", n)
		}
	})
}

// gate is a body that sends its first part, then waits until released, then fails or ends.
type gate struct {
	first   io.Reader
	sent    chan struct{}
	release chan error
	done    bool
	end     error // what the body returns once released, on every later read
}

func newGate(first []byte) *gate {
	return &gate{first: bytes.NewReader(first), sent: make(chan struct{}), release: make(chan error, 1)}
}

func (g *gate) Read(p []byte) (int, error) {
	n, err := g.first.Read(p)
	if n > 0 {
		return n, nil
	}
	if err != io.EOF {
		return 0, err
	}
	if !g.done {
		g.done = true
		close(g.sent)
		g.end = <-g.release
		if g.end == nil {
			g.end = io.EOF
		}
	}
	return 0, g.end
}

// While a Put streams (past its first part in a bucket), its key is not visible — neither to
// Stat nor List — and the one it replaces still serves; a Put that fails leaves nothing visible
// and no partial data. A Put that completes is visible at once.
func TestPutVisibleOnlyWhenComplete(t *testing.T) {
	forEachStore(t, func(t *testing.T, f fixture) {
		ctx := ctxT(t)
		old := put(t, f.store, "ds", []byte("old version"))
		for _, fail := range []bool{true, false} {
			g := newGate(randomBytes(t, testPartSize+1000))
			res := make(chan error, 1)
			go func() { _, err := f.store.Put(ctx, "ds", g); res <- err }()
			select {
			case <-g.sent:
			case err := <-res:
				t.Fatalf("Put ended early: %v", err)
			}
			time.Sleep(100 * time.Millisecond) // let the first part reach the bucket
			st, err := f.store.Stat(ctx, "ds")
			if err != nil || st.ETag != old.ETag {
				t.Fatalf("mid-Put Stat = %+v, %v; want the old version %+v", st, err, old)
			}
			if keys := listKeys(t, f.store, ""); strings.Join(keys, " ") != "ds" {
				t.Fatalf("mid-Put List = %v", keys)
			}
			if fail {
				g.release <- errors.New("client went away")
				if err := <-res; err == nil {
					t.Fatal("Put of a failing body succeeded")
				}
				if n := f.partials(t); n != 0 {
					t.Fatalf("%d partial uploads left after a failed Put", n)
				}
				if st, err := f.store.Stat(ctx, "ds"); err != nil || st.ETag != old.ETag {
					t.Fatalf("after the failed Put, Stat = %+v, %v; want the old version", st, err)
				}
				continue
			}
			g.release <- nil
			if err := <-res; err != nil {
				t.Fatal(err)
			}
			if st, err := f.store.Stat(ctx, "ds"); err != nil || st.Size != testPartSize+1000 {
				t.Fatalf("after the Put, Stat = %+v, %v", st, err)
			}
		}
	})
}

// A Put stopped by its context fails with the context's error and leaves nothing.
func TestPutCancelled(t *testing.T) {
	forEachStore(t, func(t *testing.T, f fixture) {
		ctx, cancel := context.WithCancel(ctxT(t))
		g := newGate(randomBytes(t, testPartSize+1000))
		res := make(chan error, 1)
		go func() { _, err := f.store.Put(ctx, "cut", g); res <- err }()
		<-g.sent
		cancel()
		g.release <- context.Canceled // the body read returns as a request body would
		if err := <-res; !errors.Is(err, context.Canceled) {
			t.Fatalf("Put = %v, want context.Canceled", err)
		}
		if _, err := f.store.Stat(ctxT(t), "cut"); !errors.Is(err, blobstore.ErrNotExist) {
			t.Fatalf("Stat after a cancelled Put = %v, want ErrNotExist", err)
		}
		if n := f.partials(t); n != 0 {
			t.Fatalf("%d partial uploads left after a cancelled Put", n)
		}
	})
}

// What a crashed Put leaves is invisible, kept while it may be live (started after `before`),
// and removed by SweepIncomplete once older.
func TestSweepIncomplete(t *testing.T) {
	forEachStore(t, func(t *testing.T, f fixture) {
		ctx := ctxT(t)
		put(t, f.store, "kept", []byte("complete"))
		f.leaveCrashed(t, "crashed")
		if _, err := f.store.Stat(ctx, "crashed"); !errors.Is(err, blobstore.ErrNotExist) {
			t.Fatalf("a crashed Put is visible: %v", err)
		}
		n, err := f.store.SweepIncomplete(ctx, time.Now().Add(-time.Hour))
		if err != nil || n != 0 || f.partials(t) != 1 {
			t.Fatalf("sweep of recent partials removed %d (%v); %d left, want 1", n, err, f.partials(t))
		}
		n, err = f.store.SweepIncomplete(ctx, time.Now().Add(time.Minute))
		if err != nil || n != 1 || f.partials(t) != 0 {
			t.Fatalf("sweep removed %d (%v); %d left, want 0", n, err, f.partials(t))
		}
		if keys := listKeys(t, f.store, ""); strings.Join(keys, " ") != "kept" {
			t.Fatalf("after the sweep: %v, want [kept]", keys)
		}
	})
}

// A reader never mixes versions: on a directory it keeps reading the version it opened (the
// file is replaced by rename); in a bucket the first bytes come from the opening request and
// every later read is conditional on the opened ETag, so a replaced object is ErrChanged.
func TestReadAfterReplace(t *testing.T) {
	forEachStore(t, func(t *testing.T, f fixture) {
		ctx := ctxT(t)
		pad := bytes.Repeat([]byte{'.'}, 20<<10) // past what a bucket's Open reads
		one := append([]byte("version one"), append(pad, "old end"...)...)
		put(t, f.store, "v", one)
		o, err := f.store.Open(ctx, "v")
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		put(t, f.store, "v", append([]byte("VERSION TWO"), append(pad, "NEW END"...)...))
		p := make([]byte, 7)
		if n, err := o.ReadAt(ctx, p, 0); err != nil || string(p[:n]) != "version" {
			t.Fatalf("read at 0: %q, %v; want the opened version", p[:n], err)
		}
		n, err := o.ReadAt(ctx, p, int64(len(one)-7))
		if f.requests == nil {
			if err != nil || string(p[:n]) != "old end" {
				t.Fatalf("read %q, %v; want the opened version", p[:n], err)
			}
			return
		}
		if !errors.Is(err, blobstore.ErrChanged) {
			t.Fatalf("read %q, %v; want ErrChanged", p[:n], err)
		}
	})
}

// A bucket that cannot be reached is ErrUnavailable within the call's deadline; wrong
// credentials are ErrUnavailable too (a configuration fault, not a missing object).
func TestS3Unavailable(t *testing.T) {
	srv := testminio.Shared(t)
	bucket := srv.Bucket(t)
	l, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	dead, err := blobstore.Open(context.Background(), "s3://b?endpoint=http://"+addr+"&region=us-east-1&use_path_style=true",
		blobstore.Options{Getenv: func(k string) string {
			return map[string]string{"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}[k]
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := dead.Stat(ctx, "x"); !errors.Is(err, blobstore.ErrUnavailable) {
		t.Fatalf("Stat on a dead endpoint = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Stat took %v past its 2 s deadline", d)
	}
	if err := dead.Check(ctx); !errors.Is(err, blobstore.ErrUnavailable) {
		t.Fatalf("Check on a dead endpoint = %v, want ErrUnavailable", err)
	}

	env := map[string]string{"AWS_ACCESS_KEY_ID": testminio.AccessKey, "AWS_SECRET_ACCESS_KEY": "wrong-secret"}
	bad, err := blobstore.Open(context.Background(),
		fmt.Sprintf("s3://%s?endpoint=%s&region=%s&use_path_style=true", bucket, srv.Endpoint, testminio.Region),
		blobstore.Options{Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Stat(ctx, "x"); !errors.Is(err, blobstore.ErrUnavailable) || errors.Is(err, blobstore.ErrNotExist) {
		t.Fatalf("Stat with a wrong secret = %v, want ErrUnavailable", err)
	}
	good := openS3(t, srv, bucket, "", nil)
	if err := good.Check(ctx); err != nil {
		t.Fatalf("Check = %v", err)
	}
	missing := openS3(t, srv, "no-such-bucket-here", "", nil)
	if err := missing.Check(ctx); !errors.Is(err, blobstore.ErrUnavailable) {
		t.Fatalf("Check of a missing bucket = %v, want ErrUnavailable", err)
	}
}
