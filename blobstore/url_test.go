package blobstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/tilegate/tilegate/blobstore"
)

func netListen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

func TestParseURL(t *testing.T) {
	for raw, want := range map[string]blobstore.Location{
		"/var/lib/tilegate":        {Dir: "/var/lib/tilegate"},
		"data/":                    {Dir: "data"},
		"file:///srv/tiles":        {Dir: "/srv/tiles"},
		"s3://bkt":                 {Bucket: "bkt"},
		"s3://bkt/tiles/eu":        {Bucket: "bkt", Prefix: "tiles/eu/"},
		"s3://bkt/tiles/?region=x": {Bucket: "bkt", Prefix: "tiles/", Region: "x"},
		"s3://bkt?endpoint=http://127.0.0.1:9000&region=us-east-1&use_path_style=true": {
			Bucket: "bkt", Endpoint: "http://127.0.0.1:9000", Region: "us-east-1", PathStyle: true},
		"s3://bkt?endpoint=https://minio.internal/": {Bucket: "bkt", Endpoint: "https://minio.internal"},
	} {
		got, err := blobstore.ParseURL(raw)
		if err != nil || got != want {
			t.Errorf("ParseURL(%q) = %+v, %v; want %+v", raw, got, err, want)
		}
	}
}

func TestParseURLRefuses(t *testing.T) {
	for _, raw := range []string{
		"", "  ", "gs://bkt", "http://example.com/x", "file://host/x",
		"s3://", "s3:///prefix",
		"s3://key:secret@bkt",                  // credentials in the URL
		"s3://bkt?endpoint=ftp://h",            // not http(s)
		"s3://bkt?endpoint=http://u:p@h:9000",  // credentials in the endpoint
		"s3://bkt?endpoint=http://h:9000/path", // a path
		"s3://bkt?use_path_style=maybe",
		"s3://bkt?regoin=us-east-1", // a misspelled parameter
		"s3://bkt/../x", "s3://bkt/.hidden",
	} {
		if loc, err := blobstore.ParseURL(raw); !errors.Is(err, blobstore.ErrBadURL) {
			t.Errorf("ParseURL(%q) = %+v, %v; want ErrBadURL", raw, loc, err)
		}
	}
}

// The store's String is its URL, which round-trips; no form of printing or logging it shows a
// credential taken from the environment.
func TestStringRedacts(t *testing.T) {
	const secret, token = "SECRET-d41d8cd98f00b204", "TOKEN-e9800998ecf8427e"
	env := map[string]string{"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": token}
	raw := "s3://bkt/pre/?endpoint=http://127.0.0.1:9000&region=eu-west-1&use_path_style=true"
	s, err := blobstore.Open(context.Background(), raw, blobstore.Options{Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	again, err := blobstore.ParseURL(s.String())
	want, _ := blobstore.ParseURL(raw)
	if err != nil || again != want {
		t.Fatalf("String %q parses as %+v, %v; want %+v", s, again, err, want)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("storage", "store", s)
	out := fmt.Sprintf("%v %+v %#v %s", s, s, s, s) + buf.String()
	for _, leak := range []string{secret, token} {
		if strings.Contains(out, leak) {
			t.Fatalf("a credential is printed: %s", out)
		}
	}
	if !strings.Contains(out, "s3://bkt/pre/") {
		t.Fatalf("the store is not described: %s", out)
	}
}
