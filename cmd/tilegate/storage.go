package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/tilegate/tilegate/blobstore"
)

// openStorage reads TILEGATE_STORAGE_URL: unset, the tile files live in the data directory;
// a directory, there instead; an s3:// URL, in that bucket, with the data directory as this
// replica's own (uploads being checked, the cache of the bucket's files). It returns the data
// directory and the bucket (nil for none), and logs where the files live — the URL holds no
// credential (blobstore refuses one), and the AWS variables are never logged.
func openStorage(ctx context.Context, raw, dataDir string) (string, blobstore.Store, error) {
	if raw == "" {
		slog.Info("storage", "location", absPath(dataDir))
		return dataDir, nil, nil
	}
	loc, err := blobstore.ParseURL(raw)
	if err != nil {
		return "", nil, fmt.Errorf("TILEGATE_STORAGE_URL: %w", err)
	}
	if loc.Dir != "" {
		slog.Info("storage", "location", absPath(loc.Dir))
		return loc.Dir, nil, nil
	}
	bucket, err := blobstore.Open(ctx, raw, blobstore.Options{})
	if err != nil {
		return "", nil, fmt.Errorf("TILEGATE_STORAGE_URL: %w", err)
	}
	slog.Info("storage", "location", bucket.String(), "local", absPath(dataDir))
	return dataDir, bucket, nil
}

func absPath(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}
