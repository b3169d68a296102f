// Package mbtiles reads MBTiles files: it validates a file's metadata when a
// dataset is uploaded (Inspect) and serves tiles from a shared set of open,
// read-only handles (Pool).
//
// Files are opened with SQLite's immutable flag: tilegate never modifies an
// MBTiles file in place, it replaces it by atomic rename and then calls
// Pool.Forget, so SQLite can skip all locking and change detection.
package mbtiles

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	// Pure-Go SQLite driver, registered as "sqlite". Do not also import
	// modernc.org/sqlite: it registers the same name and would panic.
	_ "github.com/glebarez/go-sqlite"
)

// Metadata is what tilegate takes from an MBTiles file's metadata table.
type Metadata struct {
	Name         string
	Format       string // "pbf", "png", "jpg", "webp", "avif"; lower-case, "mvt" normalised to "pbf", "jpeg" to "jpg"
	Kind         string // "vector" when Format is pbf, else "raster"
	MinZoom      *int
	MaxZoom      *int
	Bounds       *[4]float64 // west,south,east,north
	Center       *[3]float64 // lon,lat,zoom
	Attribution  string
	VectorLayers json.RawMessage // the "vector_layers" array from the "json" metadata row, nil if absent
	// VectorLayersLoc is where VectorLayers came from in the file, for errors about them:
	// ["metadata", "json", "vector_layers"] here, ["metadata", "vector_layers"] in a PMTiles
	// archive.
	VectorLayersLoc []any
}

// ErrInvalid is wrapped by every error that blames the file's content, so that
// callers can tell a bad upload (a client error) from an I/O failure.
var ErrInvalid = errors.New("not a valid MBTiles file")

// maxMetadataZoom is the highest zoom level Inspect accepts in metadata.
const maxMetadataZoom = 24

// maxTileZoom bounds the zoom Tile will query; beyond it 1<<z overflows
// SQLite's and JavaScript clients' integer ranges and no real file has tiles.
const maxTileZoom = 30

// Tile formats tilegate serves, as they appear in Metadata.Format.
const (
	formatPBF  = "pbf"
	formatPNG  = "png"
	formatJPG  = "jpg"
	formatWebP = "webp"
	formatAVIF = "avif"
)

// ContentType returns the HTTP Content-Type for a tile format, or
// application/octet-stream for a format tilegate does not know.
func ContentType(format string) string {
	switch strings.ToLower(format) {
	case formatPBF, "mvt":
		return "application/vnd.mapbox-vector-tile"
	case formatPNG:
		return "image/png"
	case formatJPG, "jpeg":
		return "image/jpeg"
	case formatWebP:
		return "image/webp"
	case formatAVIF:
		return "image/avif"
	default:
		return "application/octet-stream"
	}
}

// IsGzip reports whether data starts with the gzip magic bytes. Vector tiles
// are usually stored gzipped and must then be served with
// Content-Encoding: gzip rather than decompressed.
func IsGzip(data []byte) bool {
	return len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b
}

// dsn builds a SQLite URI that opens path read-only and immutable. The path is
// percent-escaped so that '?', '#' and '%' in file names are not taken as URI
// syntax. The driver runs every _pragma value on each new connection.
func dsn(path string, pragmas ...string) string {
	u := url.URL{Scheme: "file", Path: path, OmitHost: true}
	q := url.Values{"mode": {"ro"}, "immutable": {"1"}}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// sqliteHeader is the magic string at the start of every SQLite 3 database.
var sqliteHeader = []byte("SQLite format 3\x00")

// checkHeader rejects files that are obviously not (complete) SQLite databases
// before SQLite sees them: it gives clearer errors than SQLite does, and it
// catches truncated files, which SQLite only notices when it happens to read a
// missing page. Errors opening or reading the file (*fs.PathError, naming
// path) are returned as they are, so that a missing file is not reported as
// an invalid one.
func checkHeader(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: not a regular file", ErrInvalid)
	}
	if fi.Size() == 0 {
		return fmt.Errorf("%w: empty file", ErrInvalid)
	}
	var hdr [100]byte
	n, err := io.ReadFull(f, hdr[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	if !bytes.HasPrefix(hdr[:n], sqliteHeader) {
		return fmt.Errorf("%w: not an SQLite database", ErrInvalid)
	}
	if n < len(hdr) {
		return fmt.Errorf("%w: truncated SQLite header (%d bytes)", ErrInvalid, n)
	}
	pageSize := int64(binary.BigEndian.Uint16(hdr[16:18]))
	if pageSize == 1 {
		pageSize = 65536
	}
	if pageSize < 512 || pageSize > 65536 || pageSize&(pageSize-1) != 0 {
		return fmt.Errorf("%w: bad SQLite page size %d", ErrInvalid, pageSize)
	}
	// The header's page count is only trustworthy when the change counter
	// matches the version-valid-for number; old writers leave it stale.
	pages := int64(binary.BigEndian.Uint32(hdr[28:32]))
	if pages > 0 && binary.BigEndian.Uint32(hdr[24:28]) == binary.BigEndian.Uint32(hdr[92:96]) {
		want := pages * pageSize
		if fi.Size() < want {
			return fmt.Errorf("%w: truncated: %d bytes, SQLite header says %d", ErrInvalid, fi.Size(), want)
		}
		// SQLite never reads past the header's page count: whatever follows would be stored
		// and kept for nothing (gigabytes of it, as far as the upload limit goes).
		if fi.Size() > want {
			return fmt.Errorf("%w: %d bytes follow the database's last page (the SQLite header says %d bytes)", ErrInvalid, fi.Size()-want, want)
		}
	}
	if fi.Size()%pageSize != 0 {
		return fmt.Errorf("%w: truncated: %d bytes is not a whole number of %d-byte pages", ErrInvalid, fi.Size(), pageSize)
	}
	return nil
}

// Inspect opens path read-only and checks it against the rules of what an uploaded file may be
// (see rules.go and README "Reliability: uploaded files"): a readable, undamaged SQLite
// database (PRAGMA integrity_check) whose metadata and tiles are plain tables (or tiles the
// map/images layout), with at most lim.MaxMetadataRows metadata rows of at most
// lim.MaxMetadataValueBytes each, no tile above lim.MaxTileBytes and no NUL in any string it
// brings in. It then reads and validates the metadata. Problems with the file's content are
// reported as errors wrapping ErrInvalid (a *FieldError when one value is to blame); a missing or
// unreadable file and a cancelled ctx are not. Every read that can scan the file stops when ctx
// ends.
//
// The format is taken from metadata or, when absent, inferred from the first tile's magic bytes.
func Inspect(ctx context.Context, path string, lim Limits) (*Metadata, Layout, error) {
	if err := checkHeader(path); err != nil {
		return nil, 0, fmt.Errorf("inspect %s: %w", path, err)
	}
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		return nil, 0, fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)

	md, layout, err := inspect(ctx, db, lim.withDefaults())
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, 0, fmt.Errorf("inspect %s: %w", path, ctxErr)
		}
		return nil, 0, fmt.Errorf("inspect %s: %w", path, err)
	}
	return md, layout, nil
}

// invalid wraps a SQLite error as ErrInvalid: once the header check has
// passed, anything SQLite rejects (corrupt pages, missing tables or columns,
// an unreadable schema) is a problem with the file.
func invalid(what string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrInvalid, what, err)
}

func inspect(ctx context.Context, db *sql.DB, lim Limits) (*Metadata, Layout, error) {
	layout, err := checkLayout(ctx, db)
	if err != nil {
		return nil, 0, err
	}
	// TEMP tables (execScan) live on one connection.
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer conn.Close()
	// The metadata's size first: a file is refused for it before the integrity check reads
	// every page.
	if err := checkMetadataSize(ctx, conn, lim); err != nil {
		return nil, 0, err
	}
	if err := checkIntegrity(ctx, conn); err != nil {
		return nil, 0, err
	}
	if err := checkTileSizes(ctx, conn, layout, lim.MaxTileBytes); err != nil {
		return nil, 0, err
	}

	// Selecting the columns by name checks that they exist; the first tile
	// lets us infer a missing format.
	var (
		z, x, y   any
		firstTile []byte
		hasTile   = true
	)
	err = conn.QueryRowContext(ctx,
		`SELECT zoom_level, tile_column, tile_row, tile_data FROM `+layout.tileSource()+` LIMIT 1`).Scan(&z, &x, &y, &firstTile)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		hasTile = false
	case err != nil:
		return nil, 0, invalid("read tiles", classify(err))
	}

	rows, err := readMetadata(ctx, conn, lim)
	if err != nil {
		return nil, 0, err
	}
	md, err := parseMetadata(rows, hasTile, firstTile)
	if err != nil {
		return nil, 0, err
	}
	return md, layout, nil
}

func parseMetadata(rows map[string]string, hasTile bool, firstTile []byte) (*Metadata, error) {
	md := &Metadata{Name: rows["name"], Attribution: rows["attribution"],
		VectorLayersLoc: []any{"metadata", "json", "vector_layers"}}

	md.Format = normaliseFormat(rows["format"])
	if md.Format == "" {
		if !hasTile {
			return nil, fmt.Errorf("%w: no format in metadata and no tiles to infer it from", ErrInvalid)
		}
		md.Format = sniffFormat(firstTile)
		if md.Format == "" {
			return nil, fmt.Errorf("%w: no format in metadata and first tile is of unknown type", ErrInvalid)
		}
	}
	switch md.Format {
	case formatPBF:
		md.Kind = "vector"
	case formatPNG, formatJPG, formatWebP, formatAVIF:
		md.Kind = "raster"
	default:
		return nil, fmt.Errorf("%w: unsupported format %q", ErrInvalid, md.Format)
	}

	var err error
	if md.MinZoom, err = parseZoom("minzoom", rows); err != nil {
		return nil, err
	}
	if md.MaxZoom, err = parseZoom("maxzoom", rows); err != nil {
		return nil, err
	}
	if md.MinZoom != nil && md.MaxZoom != nil && *md.MinZoom > *md.MaxZoom {
		return nil, fmt.Errorf("%w: minzoom %d > maxzoom %d", ErrInvalid, *md.MinZoom, *md.MaxZoom)
	}
	if md.Bounds, err = parseBounds(rows); err != nil {
		return nil, err
	}
	if md.Center, err = parseCenter(rows, md.MinZoom); err != nil {
		return nil, err
	}
	if md.VectorLayers, err = parseVectorLayers(rows); err != nil {
		return nil, err
	}
	return md, nil
}

// metadataKeys are the metadata rows parseMetadata reads; the others are never loaded.
var metadataKeys = []string{"name", "format", "minzoom", "maxzoom", "bounds", "center", "attribution", "json"}

// checkMetadataSize bounds the metadata's row count and total bytes by lim before anything is
// loaded (octet_length of a stored value reads its record header only).
func checkMetadataSize(ctx context.Context, conn *sql.Conn, lim Limits) error {
	var n int
	var total int64
	if err := conn.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(l), 0) FROM (
		SELECT coalesce(octet_length(name), 0) + coalesce(octet_length(value), 0) AS l FROM metadata LIMIT ?)`,
		lim.MaxMetadataRows+1).Scan(&n, &total); err != nil {
		return invalid("read metadata", classify(err))
	}
	if n > lim.MaxMetadataRows {
		return &FieldError{Loc: []any{"metadata"}, Msg: fmt.Sprintf("more than %d rows", lim.MaxMetadataRows)}
	}
	if total > lim.MaxMetadataBytes {
		return &FieldError{Loc: []any{"metadata"},
			Msg: fmt.Sprintf("the names and values are %d bytes together; the limit is %d", total, lim.MaxMetadataBytes)}
	}
	return nil
}

// readMetadata returns the metadata rows tilegate uses (metadataKeys) as a map keyed by
// lower-case name, after checkMetadataSize. When a name repeats, the first row wins. NULL values
// read as "". Every name and value is bounded by lim before it is loaded, only the values of the
// keys used are loaded, and a NUL in any name or value is refused.
func readMetadata(ctx context.Context, conn *sql.Conn, lim Limits) (map[string]string, error) {
	// A key is used when its name, lower-cased and trimmed of ASCII white space, is one of
	// metadataKeys; the names are matched again in Go below, the same way.
	rows, err := conn.QueryContext(ctx, `SELECT
		CASE WHEN octet_length(name) <= ? THEN name END,
		CASE WHEN octet_length(value) <= ? AND lower(trim(name, ' '||char(9,10,11,12,13))) IN (`+placeholders(len(metadataKeys))+`) THEN value END,
		coalesce(octet_length(name), 0), coalesce(octet_length(value), 0),
		coalesce(instr(CAST(value AS BLOB), x'00'), 0) > 0
		FROM metadata LIMIT ?`, metadataArgs(lim)...)
	if err != nil {
		return nil, invalid("read metadata", classify(err))
	}
	defer rows.Close()
	m := map[string]string{}
	for i := 0; rows.Next(); i++ {
		var name, value sql.NullString
		var nameLen, valueLen int64
		var valueNUL bool // checked by SQLite: unused values never reach Go
		if err := rows.Scan(&name, &value, &nameLen, &valueLen, &valueNUL); err != nil {
			return nil, invalid("read metadata", classify(err))
		}
		if nameLen > lim.MaxMetadataValueBytes {
			return nil, &FieldError{Loc: []any{"metadata", i},
				Msg: fmt.Sprintf("the name is %d bytes; the limit is %d", nameLen, lim.MaxMetadataValueBytes)}
		}
		key := strings.ToLower(strings.Trim(name.String, asciiSpace)) // as the query matched it
		if strings.IndexByte(key, 0) >= 0 {
			return nil, &FieldError{Loc: []any{"metadata", i}, Msg: "the name contains a NUL character"}
		}
		if valueLen > lim.MaxMetadataValueBytes {
			return nil, &FieldError{Loc: []any{"metadata", key},
				Msg: fmt.Sprintf("the value is %d bytes; the limit is %d", valueLen, lim.MaxMetadataValueBytes)}
		}
		if valueNUL || strings.IndexByte(value.String, 0) >= 0 {
			return nil, &FieldError{Loc: []any{"metadata", key}, Msg: "the value contains a NUL character"}
		}
		if _, dup := m[key]; !dup && slices.Contains(metadataKeys, key) {
			m[key] = value.String
		}
	}
	if err := rows.Err(); err != nil {
		return nil, invalid("read metadata", classify(err))
	}
	return m, nil
}

// asciiSpace is what metadata names are trimmed of (SQLite's trim() knows no Unicode spaces).
const asciiSpace = " \t\n\v\f\r"

func placeholders(n int) string { return strings.TrimSuffix(strings.Repeat("?,", n), ",") }

// metadataArgs are readMetadata's query arguments.
func metadataArgs(lim Limits) []any {
	args := []any{lim.MaxMetadataValueBytes, lim.MaxMetadataValueBytes}
	for _, k := range metadataKeys {
		args = append(args, k)
	}
	return append(args, lim.MaxMetadataRows)
}

// normaliseFormat maps the spellings found in the wild to tilegate's names.
func normaliseFormat(s string) string {
	switch f := strings.ToLower(strings.TrimSpace(s)); f {
	case "mvt":
		return formatPBF
	case "jpeg":
		return formatJPG
	default:
		return f
	}
}

// sniffFormat infers a tile format from its first bytes, or returns "".
// Gzipped data is assumed to be a vector tile: nothing else is stored gzipped
// in MBTiles. An uncompressed vector tile starts with the protobuf key of
// field 3 (layers), length-delimited: 0x1a.
func sniffFormat(data []byte) string {
	switch {
	case IsGzip(data):
		return formatPBF
	case bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")):
		return formatPNG
	case bytes.HasPrefix(data, []byte{0xff, 0xd8, 0xff}):
		return formatJPG
	case len(data) >= 12 && string(data[0:4]) == "RIFF" && string(data[8:12]) == "WEBP":
		return formatWebP
	case len(data) >= 12 && string(data[4:8]) == "ftyp" && (string(data[8:12]) == "avif" || string(data[8:12]) == "avis"):
		return formatAVIF
	case len(data) > 0 && data[0] == 0x1a:
		return formatPBF
	default:
		return ""
	}
}

// parseZoom reads an integer zoom level. Some writers store "5.0", which is
// accepted; fractional zooms are not.
func parseZoom(key string, rows map[string]string) (*int, error) {
	s, ok := rows[key]
	if !ok || strings.TrimSpace(s) == "" {
		return nil, nil
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f != math.Trunc(f) {
		return nil, fmt.Errorf("%w: %s %q is not an integer", ErrInvalid, key, s)
	}
	if f < 0 || f > maxMetadataZoom {
		return nil, fmt.Errorf("%w: %s %v out of range 0..%d", ErrInvalid, key, f, maxMetadataZoom)
	}
	z := int(f)
	return &z, nil
}

// parseFloats splits a comma-separated list of finite numbers.
func parseFloats(key, s string) ([]float64, error) {
	parts := strings.Split(s, ",")
	out := make([]float64, len(parts))
	for i, p := range parts {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%w: %s %q: %q is not a number", ErrInvalid, key, s, p)
		}
		out[i] = f
	}
	return out, nil
}

func validLonLat(lon, lat float64) bool {
	return lon >= -180 && lon <= 180 && lat >= -90 && lat <= 90
}

// parseBounds reads "west,south,east,north" in WGS84 degrees. West may exceed
// east (bounds crossing the antimeridian); south may not exceed north.
func parseBounds(rows map[string]string) (*[4]float64, error) {
	s, ok := rows["bounds"]
	if !ok || strings.TrimSpace(s) == "" {
		return nil, nil
	}
	f, err := parseFloats("bounds", s)
	if err != nil {
		return nil, err
	}
	if len(f) != 4 {
		return nil, fmt.Errorf("%w: bounds %q: want 4 numbers, got %d", ErrInvalid, s, len(f))
	}
	if !validLonLat(f[0], f[1]) || !validLonLat(f[2], f[3]) || f[1] > f[3] {
		return nil, fmt.Errorf("%w: bounds %q out of range", ErrInvalid, s)
	}
	return &[4]float64{f[0], f[1], f[2], f[3]}, nil
}

// parseCenter reads "lon,lat,zoom". Files that give only "lon,lat" are
// accepted with the zoom taken from minzoom (or 0), as TileJSON clients need
// one.
func parseCenter(rows map[string]string, minZoom *int) (*[3]float64, error) {
	s, ok := rows["center"]
	if !ok || strings.TrimSpace(s) == "" {
		return nil, nil
	}
	f, err := parseFloats("center", s)
	if err != nil {
		return nil, err
	}
	switch len(f) {
	case 2:
		z := 0.0
		if minZoom != nil {
			z = float64(*minZoom)
		}
		f = append(f, z)
	case 3:
	default:
		return nil, fmt.Errorf("%w: center %q: want 3 numbers, got %d", ErrInvalid, s, len(f))
	}
	if !validLonLat(f[0], f[1]) || f[2] < 0 || f[2] > maxMetadataZoom {
		return nil, fmt.Errorf("%w: center %q out of range", ErrInvalid, s)
	}
	return &[3]float64{f[0], f[1], f[2]}, nil
}

// parseVectorLayers extracts "vector_layers" from the "json" metadata row,
// which must be a JSON object if present.
func parseVectorLayers(rows map[string]string) (json.RawMessage, error) {
	s := strings.TrimSpace(rows["json"])
	if s == "" {
		return nil, nil
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &doc); err != nil {
		return nil, fmt.Errorf("%w: metadata json: %w", ErrInvalid, err)
	}
	layers, ok := doc["vector_layers"]
	if !ok || bytes.Equal(layers, []byte("null")) {
		return nil, nil
	}
	var arr []any
	dec := json.NewDecoder(bytes.NewReader(layers))
	dec.UseNumber()
	if err := dec.Decode(&arr); err != nil {
		return nil, fmt.Errorf("%w: metadata json: vector_layers is not an array", ErrInvalid)
	}
	if loc := FindNUL(arr, []any{"metadata", "json", "vector_layers"}); loc != nil {
		return nil, &FieldError{Loc: loc, Msg: "contains a NUL character"}
	}
	return layers, nil
}

// FindNUL returns the location of the first string (or object key) in v (decoded JSON) that
// contains a NUL character ("\u0000" in JSON), or nil: loc followed by the path to it.
func FindNUL(v any, loc []any) []any {
	switch v := v.(type) {
	case string:
		if strings.IndexByte(v, 0) >= 0 {
			return loc
		}
	case []any:
		for i, e := range v {
			if l := FindNUL(e, append(loc[:len(loc):len(loc)], i)); l != nil {
				return l
			}
		}
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys) // the same file always names the same place
		for _, k := range keys {
			at := append(loc[:len(loc):len(loc)], k)
			if strings.IndexByte(k, 0) >= 0 {
				return at
			}
			if l := FindNUL(v[k], at); l != nil {
				return l
			}
		}
	}
	return nil
}
