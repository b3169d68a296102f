package main_test

import (
	"path/filepath"
	"testing"

	"github.com/tilegate/tilegate/internal/testenv"
)

// TILEGATE_HOT_TILE_CACHE_BYTES bounds the hot-tile cache (64 MiB by default) and 0 turns it off,
// as the admin listener's cache_max_bytes reports.
func TestHotTileCacheSetting(t *testing.T) {
	for _, tt := range []struct {
		env  []string
		want float64 // tilegate_cache_max_bytes{cache="tile"}; 0: not reported (off)
	}{
		{nil, 64 << 20},
		{[]string{"TILEGATE_HOT_TILE_CACHE_BYTES=1048576"}, 1 << 20},
		{[]string{"TILEGATE_HOT_TILE_CACHE_BYTES=0"}, 0},
	} {
		p := startServer(t, "sqlite:"+filepath.Join(t.TempDir(), "t.db"), tt.env...)
		admin := p.adminAddr()
		if admin == "" {
			t.Fatalf("%v: no admin listener; log:\n%s", tt.env, p.stderr.String())
		}
		m := testenv.ScrapeMetrics(t, "http://"+admin+"/metrics")
		if got := m.Value("tilegate_cache_max_bytes", "cache", "tile"); got != tt.want {
			t.Errorf("%v: tilegate_cache_max_bytes{cache=tile} = %v, want %v", tt.env, got, tt.want)
		}
	}
}
