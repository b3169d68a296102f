// Command storage measures uploads into an S3-compatible bucket (#18 figures): a large MBTiles
// file (default 1 GiB of incompressible tiles) uploaded to a tilegate whose files live in a real
// MinIO bucket, beside the same upload to a tilegate on a local data directory, rounds
// interleaved. For each it reports the wall time and MB/s of the whole upload, the time of the
// bucket Put (from the server's log; the rest is receiving and checking, as on a directory) and
// the server's peak RSS above its idle RSS (/proc: VmHWM against VmRSS before the upload). Then a
// second replica with an empty data directory serves a tile of the dataset: its first tile
// (the file fetched from the bucket) and a warm one.
//
//	go run ./bench/storage [-size 1073741824] [-rounds 2]
//
// MinIO is the test fixture (internal/testminio: found in the user's cache, built once when
// missing). Only 127.0.0.1 is contacted. Not pinned to CPUs: MinIO, tilegate and this client share
// the machine's cores, so the figures are of one machine, not of tilegate alone.
package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tilegate/tilegate/bench/loadgen"
	"github.com/tilegate/tilegate/internal/testminio"
	"github.com/tilegate/tilegate/mbtiles"
	"github.com/tilegate/tilegate/store"
)

func main() {
	size := flag.Int64("size", 1<<30, "bytes of tiles in the uploaded file")
	rounds := flag.Int("rounds", 2, "uploads to each server, interleaved")
	flag.Parse()
	if err := run(*size, *rounds); err != nil {
		log.Fatal(err)
	}
}

type server struct {
	name string
	cmd  *exec.Cmd
	base string
	log  string
}

func run(size int64, rounds int) error {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "tilegate-bench-storage-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	fmt.Fprintln(os.Stderr, "starting MinIO (built once into the user's cache when missing)…")
	minio, err := testminio.Launch(ctx, filepath.Join(tmp, "minio"))
	if err != nil {
		return err
	}
	defer minio.Close()
	bucket, err := minio.NewBucket(ctx)
	if err != nil {
		return err
	}

	dbURL := "sqlite:" + filepath.Join(tmp, "tilegate.db")
	st, err := store.Open(ctx, dbURL, store.Options{})
	if err != nil {
		return err
	}
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	acct, err := st.CreateAccount(ctx, "bench")
	st.Close()
	if err != nil {
		return err
	}
	auth := "Bearer " + acct.Token

	bin := filepath.Join(tmp, "tilegate")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/tilegate").CombinedOutput(); err != nil {
		return fmt.Errorf("build: %v\n%s", err, out)
	}
	file := filepath.Join(tmp, "large.mbtiles")
	fmt.Fprintf(os.Stderr, "writing a %d MB MBTiles file…\n", size/1e6)
	if err := writeLarge(file, size); err != nil {
		return err
	}
	fi, err := os.Stat(file)
	if err != nil {
		return err
	}

	storage := fmt.Sprintf("s3://%s/tiles?endpoint=%s&region=%s&use_path_style=true", bucket, minio.Endpoint, testminio.Region)
	common := []string{"DATABASE_URL=" + dbURL, "TILEGATE_MAX_UPLOAD=" + strconv.FormatInt(4*fi.Size(), 10),
		"TILEGATE_ADMIN_ADDR=", "TILEGATE_LOG_FORMAT=json",
		"AWS_ACCESS_KEY_ID=" + testminio.AccessKey, "AWS_SECRET_ACCESS_KEY=" + testminio.SecretKey}
	start := func(name string, env ...string) (*server, error) {
		addr, err := loadgen.FreeAddr()
		if err != nil {
			return nil, err
		}
		s := &server{name: name, base: "http://" + addr, log: filepath.Join(tmp, name+".log")}
		logFile, err := os.Create(s.log)
		if err != nil {
			return nil, err
		}
		s.cmd = exec.Command(bin, "serve")
		s.cmd.Env = append(append(os.Environ(), common...), append(env, "TILEGATE_ADDR="+addr,
			"TILEGATE_DATA_DIR="+filepath.Join(tmp, name))...)
		s.cmd.Stdout, s.cmd.Stderr = io.Discard, logFile
		if err := s.cmd.Start(); err != nil {
			return nil, err
		}
		return s, loadgen.WaitReady(http.DefaultClient, s.base)
	}
	stop := func(s *server) { _ = s.cmd.Process.Signal(os.Interrupt); _ = s.cmd.Wait() }

	client := &http.Client{Timeout: time.Hour}
	fmt.Printf("upload of %.0f MB (%d bytes), %d rounds interleaved\n\n", float64(fi.Size())/1e6, fi.Size(), rounds)
	fmt.Printf("%-10s %5s %9s %8s %10s %12s\n", "storage", "round", "total", "MB/s", "bucket Put", "peak RSS +")
	var dataset string
	for r := range rounds {
		for _, kind := range []string{"directory", "bucket"} {
			var s *server
			if kind == "bucket" {
				s, err = start(fmt.Sprintf("bucket-%d", r), "TILEGATE_STORAGE_URL="+storage)
			} else {
				s, err = start(fmt.Sprintf("dir-%d", r))
			}
			if err != nil {
				return err
			}
			var d struct{ ID string }
			if err := loadgen.Call(client, "POST", s.base+"/api/datasets/", auth, "application/json",
				`{"name":"large","kind":"vector","visibility":"public"}`, 201, &d); err != nil {
				stop(s)
				return err
			}
			time.Sleep(time.Second) // settle: the idle RSS
			idle, _, err := rss(s.cmd.Process.Pid)
			if err != nil {
				stop(s)
				return err
			}
			f, err := os.Open(file)
			if err != nil {
				return err
			}
			begin := time.Now()
			err = loadgen.CallReader(client, "PUT", s.base+"/api/datasets/"+d.ID+"/tiles/", auth, "application/octet-stream", f, 200, nil)
			took := time.Since(begin)
			f.Close()
			if err != nil {
				stop(s)
				return fmt.Errorf("%s upload: %w", kind, err)
			}
			_, peak, err := rss(s.cmd.Process.Pid)
			if err != nil {
				stop(s)
				return err
			}
			put := "-"
			if kind == "bucket" {
				if d, ok := logDuration(s.log, "tile file stored in the bucket"); ok {
					put = d.Round(time.Millisecond).String()
				}
				dataset = d.ID
			}
			fmt.Printf("%-10s %5d %9s %8.1f %10s %9.1f MB\n", kind, r+1, took.Round(time.Millisecond),
				float64(fi.Size())/1e6/took.Seconds(), put, float64(peak-idle)/1e6)
			if kind == "bucket" && r == rounds-1 {
				defer stop(s)
			} else {
				stop(s)
			}
		}
	}

	// A second replica with an empty data directory: its first tile fetches the file.
	b, err := start("replica-b", "TILEGATE_STORAGE_URL="+storage, "TILEGATE_STORAGE_FETCH_WAIT=10m")
	if err != nil {
		return err
	}
	defer stop(b)
	tile := func() (time.Duration, error) {
		begin := time.Now()
		res, err := client.Get(b.base + "/api/tiles/" + dataset + "/14/1/16383.pbf")
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			return 0, fmt.Errorf("tile on the second replica: %s", res.Status)
		}
		return time.Since(begin), nil
	}
	cold, err := tile()
	if err != nil {
		return err
	}
	warm, err := tile()
	if err != nil {
		return err
	}
	fetch, _ := logDuration(b.log, "tile file fetched from the bucket")
	fmt.Printf("\nsecond replica, empty data directory: first tile %v (fetch of the file %v, %.1f MB/s), next tile %v\n",
		cold.Round(time.Millisecond), fetch.Round(time.Millisecond), float64(fi.Size())/1e6/fetch.Seconds(), warm.Round(time.Microsecond))
	return nil
}

// rss reads a process's resident set size and its peak (VmRSS, VmHWM), in bytes.
func rss(pid int) (cur, peak int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, err
		}
		if k == "VmRSS" {
			cur = kb << 10
		} else {
			peak = kb << 10
		}
	}
	return cur, peak, sc.Err()
}

// logDuration finds the last log line with msg and returns its "took".
func logDuration(path, msg string) (time.Duration, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	var found time.Duration
	ok := false
	for _, line := range strings.Split(string(data), "\n") {
		var rec struct{ Msg, Took string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == msg {
			if d, err := time.ParseDuration(rec.Took); err == nil {
				found, ok = d, true
			}
		}
	}
	return found, ok
}

// writeLarge writes an MBTiles file of about size bytes: incompressible tiles of 8–24 KiB at
// zoom 14.
func writeLarge(path string, size int64) error {
	if err := mbtiles.WriteTestFile(path, mbtiles.TestFile{Name: "large", Format: "pbf", MinZoom: 0, MaxZoom: 14}); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	stmt, err := tx.Prepare(`INSERT INTO tiles VALUES (?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 24<<10)
	var written int64
	for i := 0; written < size; i++ {
		data := buf[:8<<10+r.IntN(16<<10)]
		for j := range data {
			data[j] = byte(r.Uint32())
		}
		data[0] = 0x1a
		if _, err := stmt.Exec(14, i%16384, i/16384, data); err != nil {
			return err
		}
		written += int64(len(data))
	}
	return tx.Commit()
}
