package server

import (
	"io"
	"net/http"

	"github.com/labstack/echo/v4"
)

// closeOnUnreadBody closes the connection after an answer to an upload (the one PUT) given
// before its body was read to its end (a 401 or 413, a 503 over the concurrency cap).
// Otherwise net/http reads up to 256 KiB of the rest before it sends the answer, so that the
// connection can be reused: a slow client's refusal would wait for its body, and an
// unauthenticated one could keep the connection busy for as long as its body trickles in.
// JSON bodies (at most 1 MiB, read at once) keep net/http's behaviour: a client still writing
// one when the connection closes may meet a reset before it reads the answer.
func closeOnUnreadBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.Method != http.MethodPut || r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
			return next(c)
		}
		body := &eofReader{ReadCloser: r.Body}
		r.Body = body
		c.Response().Before(func() {
			if !body.eof {
				c.Response().Header().Set("Connection", "close")
			}
		})
		return next(c)
	}
}

// eofReader remembers whether its reader reached the end.
type eofReader struct {
	io.ReadCloser
	eof bool
}

func (r *eofReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if err == io.EOF {
		r.eof = true
	}
	return n, err
}
