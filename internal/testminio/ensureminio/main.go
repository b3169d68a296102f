// Command ensureminio builds the MinIO test fixture into the cache when it is missing and
// prints its path (.ci/run's ensure_minio). MinIO is AGPL: a test fixture, never shipped.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/tilegate/tilegate/internal/testminio"
)

func main() {
	bin, err := testminio.Ensure(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(bin)
}
