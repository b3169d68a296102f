package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3 keeps objects in a bucket under a prefix, through minio-go (chosen over the AWS SDK v2 for
// size: docs/storage.md).
type S3 struct {
	loc      Location
	client   *minio.Client
	core     minio.Core // single-request calls (a ranged GET is one request)
	partSize uint64
}

func newS3(ctx context.Context, loc Location, opt Options) (*S3, error) {
	host, secure := "s3.amazonaws.com", true
	if loc.Endpoint != "" {
		u, err := url.Parse(loc.Endpoint)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadURL, err)
		}
		host, secure = u.Host, u.Scheme == "https"
	}
	region := loc.Region
	for _, v := range []string{"AWS_REGION", "AWS_DEFAULT_REGION"} {
		if region == "" {
			region = opt.Getenv(v)
		}
	}
	lookup := minio.BucketLookupAuto
	if loc.PathStyle {
		lookup = minio.BucketLookupPath
	}
	client, err := minio.New(host, &minio.Options{
		Creds:        awsCredentials(opt.Getenv),
		Secure:       secure,
		Region:       region,
		BucketLookup: lookup,
		Transport:    opt.Transport,
	})
	if err != nil {
		return nil, fmt.Errorf("storage %s: %w", loc, err)
	}
	ps := opt.PartSize
	if ps == 0 {
		ps = 16 << 20
	}
	return &S3{loc: loc, client: client, core: minio.Core{Client: client}, partSize: ps}, nil
}

// awsCredentials are the usual AWS ones: the access key variables when set, else the shared
// credentials file (AWS_SHARED_CREDENTIALS_FILE, AWS_PROFILE), else the instance's or task's role
// (web identity, ECS, EC2 metadata).
func awsCredentials(getenv func(string) string) *credentials.Credentials {
	id, secret := getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY")
	if id != "" && secret != "" {
		return credentials.NewStaticV4(id, secret, getenv("AWS_SESSION_TOKEN"))
	}
	return credentials.NewChainCredentials([]credentials.Provider{
		&credentials.FileAWSCredentials{},
		&credentials.IAM{},
	})
}

// String is the storage URL; credentials are never part of it.
func (s *S3) String() string { return s.loc.String() }

// GoString keeps %#v from printing the client (and, through it, the credentials).
func (s *S3) GoString() string { return "blobstore.S3(" + s.loc.String() + ")" }

func (s *S3) name(key string) (string, error) {
	if err := ValidKey(key); err != nil {
		return "", err
	}
	return s.loc.Prefix + key, nil
}

func (s *S3) Check(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.loc.Bucket)
	if err != nil {
		return s3Err("check "+s.loc.Bucket, err)
	}
	if !ok {
		return fmt.Errorf("check %s: %w: no such bucket", s, ErrUnavailable)
	}
	return nil
}

// Put streams r in parts of partSize with one part buffer: an object smaller than a part is one
// PUT, a larger one a multipart upload, which S3 makes visible only at CompleteMultipartUpload.
// On failure minio-go aborts the multipart upload; a crash leaves it to SweepIncomplete.
func (s *S3) Put(ctx context.Context, key string, r io.Reader) (Info, error) {
	name, err := s.name(key)
	if err != nil {
		return Info{}, err
	}
	up, err := s.client.PutObject(ctx, s.loc.Bucket, name, ctxReader{ctx, r}, -1, minio.PutObjectOptions{
		PartSize:    s.partSize,
		ContentType: "application/octet-stream",
	})
	if err != nil {
		return Info{}, s3Err("put "+key, err)
	}
	return Info{Key: key, Size: up.Size, ModTime: up.LastModified, ETag: up.ETag}, nil
}

func (s *S3) Stat(ctx context.Context, key string) (Info, error) {
	name, err := s.name(key)
	if err != nil {
		return Info{}, err
	}
	oi, err := s.client.StatObject(ctx, s.loc.Bucket, name, minio.StatObjectOptions{})
	if err != nil {
		return Info{}, s3Err("stat "+key, err)
	}
	return Info{Key: key, Size: oi.Size, ModTime: oi.LastModified, ETag: oi.ETag}, nil
}

// openPrefix is how much of an object Open reads with the request that learns its size and
// version: 16 KiB holds a PMTiles archive's header and root directory (the spec keeps both in
// the first 16,384 bytes), so a replica's first tile of an archive costs three requests (this,
// a leaf directory, the tile) instead of four with a HEAD first.
const openPrefix = 16 << 10

// Open reads the object's first bytes (one ranged GET, which also says its size and ETag) and
// reads that version; reads inside those bytes cost no request.
func (s *S3) Open(ctx context.Context, key string) (Object, error) {
	name, err := s.name(key)
	if err != nil {
		return nil, err
	}
	opts := minio.GetObjectOptions{}
	if err := opts.SetRange(0, openPrefix-1); err != nil {
		return nil, err
	}
	body, oi, h, err := s.core.GetObject(ctx, s.loc.Bucket, name, opts)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "InvalidRange" { // an empty object
			info, serr := s.Stat(ctx, key)
			if serr != nil {
				return nil, serr
			}
			return s.OpenVersion(info), nil
		}
		return nil, s3Err("open "+key, err)
	}
	defer body.Close()
	size, ok := totalSize(h.Get("Content-Range"))
	if !ok {
		size = oi.Size // a server that answered the whole object
	}
	prefix, err := io.ReadAll(io.LimitReader(body, openPrefix))
	if err != nil {
		return nil, s3Err("open "+key, err)
	}
	info := Info{Key: key, Size: size, ModTime: oi.LastModified, ETag: oi.ETag}
	return &s3Object{s: s, name: name, info: info, prefix: prefix}, nil
}

// totalSize reads the complete length from a Content-Range ("bytes 0-16383/123456").
func totalSize(contentRange string) (int64, bool) {
	_, total, ok := strings.Cut(contentRange, "/")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(total, 10, 64)
	return n, err == nil && n >= 0
}

// OpenVersion reads the object info describes without a request: a caller that knows the
// object's size and ETag (a cache of headers) saves the Stat.
func (s *S3) OpenVersion(info Info) Object {
	return &s3Object{s: s, name: s.loc.Prefix + info.Key, info: info}
}

type s3Object struct {
	s      *S3
	name   string
	info   Info
	prefix []byte // the object's first bytes, read by Open (nil: none)
}

func (o *s3Object) Info() Info   { return o.info }
func (o *s3Object) Close() error { return nil }

// ReadAt is one ranged GET, conditional on the ETag opened.
func (o *s3Object) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read %s: negative offset", o.info.Key)
	}
	if off >= o.info.Size {
		return 0, io.EOF
	}
	want := min(int64(len(p)), o.info.Size-off)
	if want == 0 {
		return 0, nil
	}
	if off+want <= int64(len(o.prefix)) { // read by Open already
		n := copy(p, o.prefix[off:off+want])
		if want < int64(len(p)) {
			return n, io.EOF
		}
		return n, nil
	}
	opts := minio.GetObjectOptions{}
	if err := opts.SetRange(off, off+want-1); err != nil {
		return 0, err
	}
	if o.info.ETag != "" {
		if err := opts.SetMatchETag(o.info.ETag); err != nil {
			return 0, err
		}
	}
	body, _, _, err := o.s.core.GetObject(ctx, o.s.loc.Bucket, o.name, opts)
	if err != nil {
		return 0, s3Err("read "+o.info.Key, err)
	}
	defer body.Close()
	n, err := io.ReadFull(body, p[:want])
	if err != nil {
		return n, s3Err("read "+o.info.Key, err)
	}
	if want < int64(len(p)) {
		return n, io.EOF
	}
	return n, nil
}

func (s *S3) Delete(ctx context.Context, key string) error {
	name, err := s.name(key)
	if err != nil {
		return err
	}
	if err := s.client.RemoveObject(ctx, s.loc.Bucket, name, minio.RemoveObjectOptions{}); err != nil {
		err = s3Err("delete "+key, err)
		if errors.Is(err, ErrNotExist) {
			return nil
		}
		return err
	}
	return nil
}

func (s *S3) List(ctx context.Context, prefix string) iter.Seq2[Info, error] {
	return func(yield func(Info, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		ch := s.client.ListObjects(ctx, s.loc.Bucket, minio.ListObjectsOptions{Prefix: s.loc.Prefix + prefix, Recursive: true})
		// Stop the listing goroutine when the caller stops; it sends ctx's error without
		// watching ctx, so drain it.
		defer func() {
			cancel()
			for range ch {
			}
		}()
		for oi := range ch {
			if oi.Err != nil {
				yield(Info{}, s3Err("list "+prefix, oi.Err))
				return
			}
			key := strings.TrimPrefix(oi.Key, s.loc.Prefix)
			if ValidKey(key) != nil {
				continue // not written by a Store
			}
			if !yield(Info{Key: key, Size: oi.Size, ModTime: oi.LastModified, ETag: oi.ETag}, nil) {
				return
			}
		}
	}
}

// SweepIncomplete aborts the multipart uploads under the prefix initiated before `before`.
func (s *S3) SweepIncomplete(ctx context.Context, before time.Time) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	// The listing goroutine sends its last error without watching ctx: drain it.
	ch := s.client.ListIncompleteUploads(ctx, s.loc.Bucket, "", true)
	defer func() {
		cancel()
		for range ch {
		}
	}()
	n := 0
	// The whole bucket is listed and filtered here: MinIO lists incomplete uploads only for an
	// empty prefix or one exact object name, not for a key prefix (AWS does either).
	for up := range ch {
		if up.Err != nil {
			return n, s3Err("list incomplete uploads", up.Err)
		}
		if !strings.HasPrefix(up.Key, s.loc.Prefix) || !up.Initiated.Before(before) {
			continue
		}
		if err := s.core.AbortMultipartUpload(ctx, s.loc.Bucket, up.Key, up.UploadID); err != nil {
			if err = s3Err("abort upload of "+up.Key, err); !errors.Is(err, ErrNotExist) {
				return n, err
			}
			continue // completed or aborted meanwhile
		}
		n++
	}
	return n, nil
}

// s3Err maps an S3 or transport error to the package's vocabulary, keeping the cause.
func s3Err(what string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w: %w", what, ErrUnavailable, err)
	}
	resp := minio.ToErrorResponse(err)
	switch {
	case resp.Code == minio.NoSuchKey, resp.Code == "NoSuchUpload", resp.StatusCode == http.StatusNotFound && resp.Code != minio.NoSuchBucket:
		return fmt.Errorf("%s: %w: %w", what, ErrNotExist, err)
	case resp.Code == "PreconditionFailed", resp.StatusCode == http.StatusPreconditionFailed:
		return fmt.Errorf("%s: %w: %w", what, ErrChanged, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%s: %w: response cut short: %w", what, ErrUnavailable, err)
	default:
		return fmt.Errorf("%s: %w: %w", what, ErrUnavailable, err)
	}
}

// AbortIncomplete aborts the multipart uploads of key still in progress, whatever their age,
// and returns how many it aborted: for a caller that knows the Put of key has failed (keys are
// written once) and whose own abort could not reach the bucket.
func (s *S3) AbortIncomplete(ctx context.Context, key string) (int, error) {
	name, err := s.name(key)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	// The listing goroutine sends its last error without watching ctx: drain it.
	ch := s.client.ListIncompleteUploads(ctx, s.loc.Bucket, name, false)
	defer func() {
		cancel()
		for range ch {
		}
	}()
	n := 0
	for up := range ch {
		if up.Err != nil {
			return n, s3Err("list incomplete uploads of "+key, up.Err)
		}
		if up.Key != name {
			continue
		}
		if err := s.core.AbortMultipartUpload(ctx, s.loc.Bucket, up.Key, up.UploadID); err != nil {
			if err = s3Err("abort upload of "+key, err); !errors.Is(err, ErrNotExist) {
				return n, err
			}
			continue
		}
		n++
	}
	return n, nil
}
