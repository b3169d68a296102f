package server

import (
	"io"
	"net/http"
	"os"

	"github.com/tilegate/tilegate/tileurl"
)

// EchoOnly returns h (a Server's Handler) without its tile dispatch: every request goes through
// echo's router, as before tileDispatch.
func EchoOnly(h http.Handler) http.Handler { return h.(geolensAlias).next.(*tileDispatch).e }

// TakesTile reports whether the tile dispatch serves a GET of path itself.
func TakesTile(path string) bool {
	_, ok := tileurl.Segments(path)
	return ok
}

// SetUploadWriter wraps the file each upload's body is written to (a full disk is injected there).
func (s *Server) SetUploadWriter(wrap func(*os.File) io.Writer) { s.uploadWriter = wrap }
