package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tilegate/tilegate/bench/loadgen"
)

// runWrk runs job j with wrk (one thread, j.Connections connections) pinned to loadCPU
// instead of the Go child: a load generator in C costs less per request, so it shows whether
// the Go one held a server back. wrk walks the paths in j.Order from a Lua script; its status
// check counts only answers >= 400, so the sampled tiles are fetched again afterwards and
// compared with the file.
func runWrk(dir string, j job) (jobResult, error) {
	var lua bytes.Buffer
	lua.WriteString("local h = {[\"User-Agent\"] = \"tilegate-bench-peers\", [\"Accept-Encoding\"] = \"gzip\"")
	for _, h := range j.Headers {
		fmt.Fprintf(&lua, ", [%q] = %q", h[0], h[1])
	}
	lua.WriteString("}\nlocal paths = {\n")
	for _, i := range j.Order {
		fmt.Fprintf(&lua, "%q,\n", j.Paths[i])
	}
	lua.WriteString(`}
local reqs, i = {}, 0
init = function(args)
  for k, p in ipairs(paths) do reqs[k] = wrk.format("GET", p, h) end
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
`)
	script := filepath.Join(dir, "wrk.lua")
	if err := os.WriteFile(script, lua.Bytes(), 0o644); err != nil {
		return jobResult{}, err
	}
	var wrkCPU time.Duration
	wrk := func(d time.Duration) (string, error) {
		cmd := exec.Command("taskset", "-c", loadCPU, "wrk", "-t1", "-c"+strconv.Itoa(j.Connections),
			"-d"+strconv.Itoa(int(math.Ceil(d.Seconds())))+"s", "--latency", "-s", script, "http://"+j.Addr)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("wrk: %v\n%s", err, out)
		}
		wrkCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		if m := regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`).FindSubmatch(out); m != nil {
			return "", fmt.Errorf("wrk: %s answers were not 200", m[1])
		}
		if m := regexp.MustCompile(`Socket errors: .*`).Find(out); m != nil {
			return "", fmt.Errorf("wrk: %s", m)
		}
		return string(out), nil
	}
	if j.Warmup > 0 {
		if _, err := wrk(j.Warmup); err != nil { // wrk takes whole seconds: at least 1 s
			return jobResult{}, err
		}
	}
	cpu0, _ := loadgen.ProcessCPU(j.ServerPID)
	out, err := wrk(j.Duration)
	if err != nil {
		return jobResult{}, err
	}
	cpu1, _ := loadgen.ProcessCPU(j.ServerPID)
	res := jobResult{ServerCPU: cpu1 - cpu0, ClientCPU: wrkCPU}
	m := regexp.MustCompile(`(\d+) requests in ([\d.]+)(m?s)`).FindStringSubmatch(out)
	if m == nil {
		return res, fmt.Errorf("wrk output without a request count:\n%s", out)
	}
	res.N, _ = strconv.ParseInt(m[1], 10, 64)
	secs, _ := strconv.ParseFloat(m[2], 64)
	if m[3] == "ms" {
		secs /= 1e3
	}
	// The server's CPU is read around the whole wrk process, a little longer than the window
	// its requests are counted in; the start-up (connections, a Lua table) is idle for the server.
	res.Wall = time.Duration(secs * float64(time.Second))
	res.P50, res.P99 = wrkPercentile(out, "50%"), wrkPercentile(out, "99%")
	checked, err := checkSample(j)
	res.Checked = int64(checked)
	return res, err
}

// wrkPercentile reads one line of wrk's latency distribution ("99%    3.20ms").
func wrkPercentile(out, p string) time.Duration {
	m := regexp.MustCompile(`\s` + regexp.QuoteMeta(p) + `\s+([\d.]+)(us|ms|s)`).FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[2]]
	return time.Duration(v * float64(unit))
}

// checkSample fetches j's sampled tiles and compares them with the file's bytes.
func checkSample(j job) (int, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	n := 0
	for i, want := range j.Checks {
		req, err := http.NewRequest("GET", "http://"+j.Addr+j.Paths[i], nil)
		if err != nil {
			return n, err
		}
		req.Header.Set("Accept-Encoding", "gzip")
		for _, h := range j.Headers {
			req.Header.Set(h[0], h[1])
		}
		res, err := c.Do(req)
		if err != nil {
			return n, err
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			return n, err
		}
		if res.StatusCode != 200 || sha256.Sum256(body) != want {
			return n, fmt.Errorf("%s: status %d, %d bytes: not the file's tile", strings.SplitN(j.Paths[i], "?", 2)[0], res.StatusCode, len(body))
		}
		n++
	}
	return n, nil
}
