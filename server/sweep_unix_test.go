//go:build unix

package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

// What crashed processes leave in the data directory is swept at start (uploads) and by the
// periodic sweep (tile files no dataset references, after the grace period), while a live upload
// — another replica's, known by its lock, and one in progress here — and referenced files stay.
func TestSweepLeftovers(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		dir := filepath.Join(t.TempDir(), "data")
		fx := writeSweepFixture(t, dir)
		// Another replica's upload in progress: old, but locked.
		replicaUpload := filepath.Join(dir, ".upload-"+uuid.NewString()+"-3.mbtiles")
		must(t, os.WriteFile(replicaUpload, []byte("partial"), 0o640))
		old := time.Now().Add(-2 * time.Hour)
		must(t, os.Chtimes(replicaUpload, old, old))
		lock, err := os.Open(replicaUpload)
		must(t, err)
		defer lock.Close()
		must(t, syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB))

		e := tlStart(t, db, server.Config{DataDir: dir, FileSweepInterval: 50 * time.Millisecond, ReplacedTilesGrace: 200 * time.Millisecond})
		// At start, at once.
		if exists(fx.leftover) || exists(fx.leftoverJournal) {
			t.Errorf("abandoned uploads survived the start: %v", e.tlFiles(t))
		}
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		e.uploadOK(t, d.Id, tlVectorFile())
		tlWaitFor(t, 10*time.Second, "the unreferenced tile file to be removed", func() bool { return !exists(fx.orphanTiles) })

		// An upload in progress here whose file looks old (a slow client) stays.
		body := tlFile(t, tlVectorFile())
		conn, err := net.Dial("tcp", strings.TrimPrefix(e.URL, "http://"))
		must(t, err)
		defer conn.Close()
		w := bufio.NewWriter(conn)
		fmt.Fprintf(w, "PUT /api/datasets/%s/tiles/ HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer %s\r\n"+
			"Content-Type: application/octet-stream\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", d.Id, e.acct.Token, len(body))
		_, _ = w.Write(body[:len(body)/2])
		must(t, w.Flush())
		var live string
		tlWaitFor(t, 10*time.Second, "the upload to start", func() bool {
			for _, n := range e.tlFiles(t) {
				if strings.HasPrefix(n, ".upload-"+d.Id.String()) {
					live = filepath.Join(dir, n)
					return true
				}
			}
			return false
		})
		must(t, os.Chtimes(live, old, old))
		time.Sleep(500 * time.Millisecond) // ten sweeps
		if !exists(live) {
			t.Fatal("a live upload was swept")
		}
		if !exists(replicaUpload) {
			t.Error("another replica's live upload was swept")
		}
		_, _ = w.Write(body[len(body)/2:])
		must(t, w.Flush())
		resp, err := io.ReadAll(conn)
		must(t, err)
		if !strings.HasPrefix(string(resp), "HTTP/1.1 200") {
			t.Errorf("the live upload: %.300s", resp)
		}
		time.Sleep(500 * time.Millisecond) // the replaced file's grace period, and sweeps
		e.tlOnlyFileBut(t, d.Id, replicaUpload)

		// Once the other replica is gone, its upload goes too.
		must(t, lock.Close())
		tlWaitFor(t, 10*time.Second, "the dead replica's upload to be removed", func() bool { return !exists(replicaUpload) })
		e.tlOnlyFile(t, d.Id)
	})
}

// tlOnlyFileBut is tlOnlyFile with one more expected file.
func (e *tlEnv) tlOnlyFileBut(t *testing.T, id uuid.UUID, also string) {
	t.Helper()
	var names []string
	for _, n := range e.tlFiles(t) {
		if n != filepath.Base(also) {
			names = append(names, n)
		}
	}
	if len(names) != 1 || !strings.HasPrefix(names[0], id.String()+"-") {
		t.Errorf("data directory holds %v besides %s", names, filepath.Base(also))
	}
}
