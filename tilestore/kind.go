package tilestore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tilegate/tilegate/pmtiles"
)

// Kind is what a tile file holds. It is told by the file's content when uploaded (DetectKind),
// never by a client's file name, and then carried by the published name's extension (Name,
// KindOf), so the tile path knows how to read a file without opening it.
type Kind int

const (
	// MBTiles: an SQLite database (the default: content that is neither kind is checked as
	// MBTiles, whose checks say what is wrong with it).
	MBTiles Kind = iota
	// PMTiles: a PMTiles version 3 archive.
	PMTiles
)

func (k Kind) String() string {
	if k == PMTiles {
		return "PMTiles"
	}
	return "MBTiles"
}

// ext is the kind's file name extension.
func (k Kind) ext() string {
	if k == PMTiles {
		return ".pmtiles"
	}
	return ".mbtiles"
}

// detectBytes is how many of a file's first bytes DetectKind needs.
const detectBytes = 16

// DetectKind tells a tile file's kind by its first bytes: the PMTiles magic number (any
// version: the archive's checks refuse other versions by name), else MBTiles.
func DetectKind(prefix []byte) Kind {
	if bytes.HasPrefix(prefix, pmtiles.Magic) {
		return PMTiles
	}
	return MBTiles
}

// KindOf is the kind of the published file name (by its extension, which Name chose from the
// content).
func KindOf(name string) Kind {
	if strings.HasSuffix(name, PMTiles.ext()) {
		return PMTiles
	}
	return MBTiles
}

// Detect reads the start of the upload's file, tells its kind (DetectKind) and keeps it for
// Publish, which names the file after it.
func (up *Upload) Detect() (Kind, error) {
	f, err := os.Open(up.Path)
	if err != nil {
		return 0, fmt.Errorf("read upload file: %w", err)
	}
	defer f.Close()
	b := make([]byte, detectBytes)
	n, err := io.ReadFull(f, b)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return 0, fmt.Errorf("read upload file: %w", err)
	}
	up.Kind = DetectKind(b[:n])
	return up.Kind, nil
}
