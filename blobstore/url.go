package blobstore

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Location is a parsed TILEGATE_STORAGE_URL.
type Location struct {
	// Dir is the local directory (empty for a bucket).
	Dir string
	// Bucket, Prefix ("" or ending in '/'), Endpoint (scheme://host[:port], "" for AWS),
	// Region and PathStyle locate a bucket.
	Bucket    string
	Prefix    string
	Endpoint  string
	Region    string
	PathStyle bool
}

// ErrBadURL is wrapped by every error of ParseURL.
var ErrBadURL = errors.New("invalid storage URL")

// s3Params are the query parameters an s3:// URL may carry, named as gocloud.dev names them.
// Anything else is refused: a misspelled parameter must not be silently ignored.
var s3Params = map[string]bool{"endpoint": true, "region": true, "use_path_style": true}

// ParseURL reads a storage URL: a local directory (a path, or file:///path), or
// s3://BUCKET[/PREFIX][?endpoint=http://HOST:PORT&region=REGION&use_path_style=true].
// It holds no credentials: those come from the environment (Open).
func ParseURL(raw string) (Location, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return Location{}, fmt.Errorf("%w: empty", ErrBadURL)
	}
	if !strings.Contains(raw, "://") {
		return Location{Dir: filepath.Clean(raw)}, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Location{}, fmt.Errorf("%w: %w", ErrBadURL, err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" || u.Path == "" {
			return Location{}, fmt.Errorf("%w: want file:///absolute/path", ErrBadURL)
		}
		return Location{Dir: filepath.Clean(u.Path)}, nil
	case "s3":
		return parseS3(u)
	default:
		return Location{}, fmt.Errorf("%w: scheme %q (want a directory or s3://)", ErrBadURL, u.Scheme)
	}
}

func parseS3(u *url.URL) (Location, error) {
	if u.User != nil {
		return Location{}, fmt.Errorf("%w: credentials do not belong in the URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", ErrBadURL)
	}
	loc := Location{Bucket: u.Host, Prefix: strings.TrimPrefix(u.Path, "/")}
	if loc.Bucket == "" {
		return Location{}, fmt.Errorf("%w: no bucket", ErrBadURL)
	}
	if loc.Prefix != "" {
		loc.Prefix = strings.TrimSuffix(loc.Prefix, "/") + "/"
		if err := ValidKey(strings.TrimSuffix(loc.Prefix, "/")); err != nil {
			return Location{}, fmt.Errorf("%w: prefix: %w", ErrBadURL, err)
		}
	}
	q := u.Query()
	for name := range q {
		if !s3Params[name] {
			return Location{}, fmt.Errorf("%w: unknown parameter %q (known: endpoint, region, use_path_style)", ErrBadURL, name)
		}
	}
	loc.Region = q.Get("region")
	if v := q.Get("use_path_style"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return Location{}, fmt.Errorf("%w: use_path_style=%q is not a boolean", ErrBadURL, v)
		}
		loc.PathStyle = b
	}
	if ep := q.Get("endpoint"); ep != "" {
		e, err := url.Parse(ep)
		if err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" ||
			e.User != nil || (e.Path != "" && e.Path != "/") || e.RawQuery != "" {
			return Location{}, fmt.Errorf("%w: endpoint %q: want http(s)://HOST[:PORT]", ErrBadURL, ep)
		}
		loc.Endpoint = e.Scheme + "://" + e.Host
	}
	return loc, nil
}

// String is the location as a URL. It never holds a credential (ParseURL refuses them).
func (l Location) String() string {
	if l.Dir != "" {
		return l.Dir
	}
	u := url.URL{Scheme: "s3", Host: l.Bucket, Path: "/" + l.Prefix}
	q := url.Values{}
	if l.Endpoint != "" {
		q.Set("endpoint", l.Endpoint)
	}
	if l.Region != "" {
		q.Set("region", l.Region)
	}
	if l.PathStyle {
		q.Set("use_path_style", "true")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// Options are what Open takes besides the URL.
type Options struct {
	// Getenv reads the credentials' environment variables (AWS_ACCESS_KEY_ID,
	// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION, AWS_DEFAULT_REGION); nil is os.Getenv.
	Getenv func(string) string
	// Transport carries a bucket's HTTP requests; nil is a default transport.
	Transport http.RoundTripper
	// PartSize is a bucket upload's part size, and so the memory one Put holds (0: 16 MiB, the
	// S3 minimum that allows objects up to 160 GB in 10,000 parts).
	PartSize uint64
}

// Open opens the store a storage URL names. It makes no network request (Check does).
func Open(ctx context.Context, raw string, opt Options) (Store, error) {
	loc, err := ParseURL(raw)
	if err != nil {
		return nil, err
	}
	if loc.Dir != "" {
		return NewLocal(loc.Dir), nil
	}
	if opt.Getenv == nil {
		opt.Getenv = os.Getenv
	}
	return newS3(ctx, loc, opt)
}
