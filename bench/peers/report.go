package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// report prints, per tile file, one line per mode: medians over rounds, and ratios to the
// mbtileserver public run paired with each of its runs (seconds apart, so drifting load on the
// shared machine hits both alike), then the median of those.
func report(w io.Writer, o options, modes []*mode, sets map[string]*tileSet) {
	gen := "Go, GOMAXPROCS=1"
	if o.wrk {
		gen = "wrk, one thread"
	}
	fmt.Fprintf(w, "\ntilegate vs mbtileserver: servers pinned to CPU %s, load generator (%s, %d connections) to CPU %s;\n",
		serverCPU, gen, o.connections, loadCPU)
	fmt.Fprintf(w, "%d interleaved rounds x %v per mode, every tile in shuffled order, fresh credentials per round\n", o.rounds, o.duration)
	for _, size := range o.sizes {
		ts := sets[size]
		fmt.Fprintf(w, "\n%s tiles: %d tiles, %d B mean stored (gzipped) size\n", size, len(ts.coords), ts.avg)
		fmt.Fprintf(w, "%-30s %9s %7s %8s %7s %8s %8s %8s %7s  %s\n",
			"mode", "tiles/s", "x peer", "CPU/tile", "x peer", "p50", "p99", "RSS", "client", "target (x mbtileserver public)")
		for _, m := range modes {
			if m.size != size {
				continue
			}
			rate, cpu, p50, p99, client := m.medians()
			rRate, rCPU := m.ratios()
			target, ok := targetOf(m, size, rRate, rCPU)
			verdict := ""
			if target != "" {
				verdict = target + map[bool]string{true: "  met", false: "  MISSED"}[ok]
			}
			fmt.Fprintf(w, "%-30s %9.0f %7.2f %6.1fµs %7.2f %6.2fms %6.2fms %6.0fMiB %6.0f%%  %s\n",
				m.name, rate, rRate, cpu, rCPU, p50, p99, float64(m.proc.peakRSS())/(1<<20), client*100, verdict)
		}
	}
	var checked, served int64
	for _, m := range modes {
		for _, r := range m.results {
			checked += r.Checked
			served += r.N
		}
	}
	fmt.Fprintf(w, "\n%d tiles served in the measured windows, all 200; %d sampled bodies equal to the file's bytes\n", served, checked)
	fmt.Fprintf(w, "\nper round tiles/s:\n")
	for _, m := range modes {
		var rs []string
		for _, r := range m.results {
			rs = append(rs, strconv.Itoa(int(float64(r.N)/r.Wall.Seconds())))
		}
		fmt.Fprintf(w, "  %-30s %-5s %s\n", m.name, m.size, strings.Join(rs, " "))
	}
	fmt.Fprintf(w, "\nx peer: median over rounds of (mode / the mbtileserver public run just before it). CPU/tile: server\n"+
		"user+system CPU from /proc per tile served. p50/p99: client-side latency. RSS: the server process's\n"+
		"VmHWM (tilegate serves all its modes from one process). client: the load generator's CPU share of\n"+
		"the window (near 100%% means it, not the server, set the pace).\n")
}

// medians returns m's medians over rounds: tiles/s, server CPU µs per tile, p50 and p99 in
// ms, and the load generator's CPU share.
func (m *mode) medians() (rate, cpu, p50, p99, client float64) {
	var rates, cpus, p50s, p99s, clients []float64
	for _, r := range m.results {
		rates = append(rates, float64(r.N)/r.Wall.Seconds())
		cpus = append(cpus, perTile(r.ServerCPU, r.N))
		p50s = append(p50s, ms(r.P50))
		p99s = append(p99s, ms(r.P99))
		clients = append(clients, r.ClientCPU.Seconds()/r.Wall.Seconds())
	}
	return median(rates), median(cpus), median(p50s), median(p99s), median(clients)
}

// ratios returns the medians of m's tiles/s and CPU-per-tile ratios to the baseline run paired
// with each of its runs.
func (m *mode) ratios() (rate, cpu float64) {
	if m.baseline {
		return 1, 1
	}
	var rates, cpus []float64
	for i, r := range m.results {
		b := m.pairs[i]
		rates = append(rates, (float64(r.N)/r.Wall.Seconds())/(float64(b.N)/b.Wall.Seconds()))
		if bc := perTile(b.ServerCPU, b.N); bc > 0 {
			cpus = append(cpus, perTile(r.ServerCPU, r.N)/bc)
		}
	}
	return median(rates), median(cpus)
}

// targetOf states issue #9's target for m and whether this run meets it: on small tiles
// tilegate public >= 1.25x mbtileserver public's tiles/s, key+origin and token >= 1.15x, and
// CPU per tile <= 0.8x; on large tiles every tilegate mode >= 1.0x.
func targetOf(m *mode, size string, rate, cpu float64) (string, bool) {
	if !strings.HasPrefix(m.name, "tilegate") {
		return "", true
	}
	if size == "large" {
		return ">= 1.00", rate >= 1.0
	}
	want := 1.15
	if strings.Contains(m.name, "public") {
		want = 1.25
	}
	return fmt.Sprintf(">= %.2f, CPU <= 0.80", want), rate >= want && cpu <= 0.8
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }
