package testminio_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/tilegate/tilegate/internal/testminio"
)

// The fixture serves S3: an object put into a fresh bucket reads back, and Close stops the
// server (its port refuses connections afterwards).
func TestStartServesS3AndStops(t *testing.T) {
	s, err := testminio.Launch(context.Background(), t.TempDir())
	if err != nil {
		testminio.Unavailable(t, err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	bucket := s.Bucket(t)
	body := []byte("hello tiles")
	if _, err := s.Client.PutObject(ctx, bucket, "a/b", bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	obj, err := s.Client.GetObject(ctx, bucket, "a/b", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read back %q, %v; want %q", got, err, body)
	}
	if other := s.Bucket(t); other == bucket {
		t.Fatalf("two buckets named %s", bucket)
	}

	s.Close()
	client := &http.Client{Timeout: time.Second}
	if resp, err := client.Get(s.Endpoint + "/minio/health/live"); err == nil {
		resp.Body.Close()
		t.Fatalf("server still answers after Close: %s", resp.Status)
	}
}

// TILEGATE_MINIO names the binary to use; one that is not there is an error, not a build.
func TestEnsureRefusesMissingOverride(t *testing.T) {
	t.Setenv("TILEGATE_MINIO", t.TempDir()+"/no-such-minio")
	if bin, err := testminio.Ensure(context.Background()); err == nil {
		t.Fatalf("Ensure = %s, nil; want an error", bin)
	}
}
