package server_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

// BenchmarkTokenBatch measures POST /api/tiles/tokens/ end to end over loopback HTTP (server
// and client in this process) for batches of 1, 20 and 50 datasets, on each database.
func BenchmarkTokenBatch(b *testing.B) {
	for _, db := range testenv.Databases() {
		env := testenv.Start(b, db, server.Config{})
		acct := env.NewAccount(b)
		c := env.Client(b, acct.Token)
		var ids []string
		for i := range 50 {
			kind := gen.DatasetKindVector
			if i%3 == 0 {
				kind = gen.DatasetKindRaster
			}
			ids = append(ids, createDataset(b, c, gen.DatasetCreate{Name: fmt.Sprint("d", i), Kind: kind}).Id.String())
		}
		hc := env.HTTPClient(b)
		hc.Transport = nil // measure the server, not the response validator
		for _, n := range []int{1, 20, 50} {
			body := `{"dataset_ids":["` + strings.Join(ids[:n], `","`) + `"]}`
			b.Run(fmt.Sprintf("%s/%d", db.Name, n), func(b *testing.B) {
				for b.Loop() {
					doJSON(b, hc, env.URL, acct.Token, "POST", "/api/tiles/tokens/", body, 200)
				}
			})
		}
	}
}
