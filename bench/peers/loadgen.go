package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tilegate/tilegate/bench/loadgen"
)

// job is what the orchestrator asks one load-generator child to do: request Paths (each a
// request target, query included) in the given shuffled Order over Connections keep-alive
// connections to Addr for Duration after a Warmup, and check the answers of the Checks.
type job struct {
	Addr        string
	Paths       []string
	Order       []int
	Headers     [][2]string
	Connections int
	Warmup      time.Duration
	Duration    time.Duration
	ServerPID   int
	// Checks maps an index into Paths to the SHA-256 of the bytes the file stores for it.
	// Every answer must be 200; the bodies of these must also hash to the value.
	Checks map[int][32]byte
}

// jobResult is what the child reports back.
type jobResult struct {
	N         int64         // tiles served in the measured window
	Wall      time.Duration // length of the measured window
	ServerCPU time.Duration // server user+system CPU in the window
	ClientCPU time.Duration // the load generator's own CPU in the window
	P50, P99  time.Duration
	Checked   int64 // sampled answers compared byte for byte
	Bytes     int64 // body bytes read in the window
	Err       string
}

// runLoadChild is the child side: it reads a job on stdin and writes a jobResult on stdout.
// The orchestrator starts it under taskset on its own CPU with GOMAXPROCS=1.
func runLoadChild() error {
	var j job
	if err := json.NewDecoder(os.Stdin).Decode(&j); err != nil {
		return fmt.Errorf("read job: %w", err)
	}
	res := runJob(j)
	return json.NewEncoder(os.Stdout).Encode(res)
}

func runJob(j job) jobResult {
	reqs := make([][]byte, len(j.Paths))
	for i, p := range j.Paths {
		var b bytes.Buffer
		fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tilegate-bench-peers\r\nAccept-Encoding: gzip\r\n", p, j.Addr)
		for _, h := range j.Headers {
			fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
		}
		b.WriteString("\r\n")
		reqs[i] = b.Bytes()
	}
	var (
		next     atomic.Int64 // position in Order, shared so the workers walk one shuffled sequence
		measured atomic.Bool
		stop     atomic.Bool
		n        atomic.Int64
		nbytes   atomic.Int64
		checked  atomic.Int64
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	fail := func(err error) { errOnce.Do(func() { firstErr = err }); stop.Store(true) }
	lat := make([][]time.Duration, j.Connections)
	for w := range j.Connections {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", j.Addr)
			if err != nil {
				fail(err)
				return
			}
			defer c.Close()
			br := bufio.NewReaderSize(c, 64<<10)
			var body []byte
			for !stop.Load() {
				i := j.Order[int(next.Add(1)-1)%len(j.Order)]
				t0 := time.Now()
				if _, err := c.Write(reqs[i]); err != nil {
					fail(err)
					return
				}
				status, b, err := readResponse(br, body[:0])
				body = b
				if err != nil {
					fail(fmt.Errorf("%s: %w", j.Paths[i], err))
					return
				}
				d := time.Since(t0)
				if status != 200 {
					fail(fmt.Errorf("%s: status %d: %.200s", j.Paths[i], status, body))
					return
				}
				if want, ok := j.Checks[i]; ok {
					if sha256.Sum256(body) != want {
						fail(fmt.Errorf("%s: body of %d bytes differs from the file's tile", j.Paths[i], len(body)))
						return
					}
					if measured.Load() {
						checked.Add(1)
					}
				}
				if measured.Load() {
					n.Add(1)
					nbytes.Add(int64(len(body)))
					lat[w] = append(lat[w], d)
				}
			}
		}()
	}
	time.Sleep(j.Warmup)
	cpu0, _ := loadgen.ProcessCPU(j.ServerPID)
	self0 := selfCPU()
	start := time.Now()
	measured.Store(true)
	time.Sleep(j.Duration)
	measured.Store(false)
	wall := time.Since(start)
	cpu1, _ := loadgen.ProcessCPU(j.ServerPID)
	self1 := selfCPU()
	stop.Store(true)
	wg.Wait()

	all := slices.Concat(lat...)
	slices.Sort(all)
	res := jobResult{N: n.Load(), Wall: wall, ServerCPU: cpu1 - cpu0, ClientCPU: self1 - self0,
		Checked: checked.Load(), Bytes: nbytes.Load()}
	if len(all) > 0 {
		res.P50 = all[len(all)*50/100]
		res.P99 = all[len(all)*99/100]
	}
	if firstErr != nil {
		res.Err = firstErr.Error()
	}
	return res
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// readResponse reads one HTTP/1.1 response (Content-Length or chunked body) into body.
func readResponse(br *bufio.Reader, body []byte) (int, []byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, body, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, body, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, body, fmt.Errorf("bad status line %q", line)
	}
	length, chunked := -1, false
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return 0, body, err
		}
		if len(line) <= 2 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch {
		case asciiEqualFold(k, "Content-Length"):
			if length, err = strconv.Atoi(string(v)); err != nil {
				return 0, body, fmt.Errorf("bad Content-Length %q", v)
			}
		case asciiEqualFold(k, "Transfer-Encoding"):
			chunked = asciiEqualFold(v, "chunked")
		}
	}
	switch {
	case chunked:
		for {
			line, err = br.ReadSlice('\n')
			if err != nil {
				return 0, body, err
			}
			sz, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
			if err != nil {
				return 0, body, fmt.Errorf("bad chunk size %q", line)
			}
			if sz == 0 {
				_, err = br.ReadSlice('\n') // no trailers are sent
				return status, body, err
			}
			if body, err = readN(br, body, int(sz)); err != nil {
				return 0, body, err
			}
			if _, err = br.Discard(2); err != nil {
				return 0, body, err
			}
		}
	case length >= 0:
		body, err = readN(br, body, length)
		return status, body, err
	case status == 204 || status == 304:
		return status, body, nil
	}
	return 0, body, errors.New("response without length")
}

func readN(r io.Reader, body []byte, n int) ([]byte, error) {
	off := len(body)
	body = slices.Grow(body, n)[:off+n]
	_, err := io.ReadFull(r, body[off:])
	return body, err
}

func asciiEqualFold(b []byte, s string) bool {
	return len(b) == len(s) && bytes.EqualFold(b, []byte(s))
}
