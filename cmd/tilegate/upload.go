package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/google/uuid"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/tilegate/tilegate/gen"
)

type datasetsCmd struct {
	Upload uploadCmd `cmd:"" help:"Upload a dataset's MBTiles file through a running server's API; prints the updated dataset."`
}

// apiFlags point a command at a running tilegate.
type apiFlags struct {
	URL   string `name:"url" env:"TILEGATE_URL" default:"http://127.0.0.1:8080" help:"Base URL of the tilegate API."`
	Token string `name:"token" env:"TILEGATE_TOKEN" required:"" help:"Service token of an editor or admin."`
}

type uploadCmd struct {
	apiFlags
	Dataset string `required:"" help:"Dataset id."`
	File    string `arg:"" type:"existingfile" help:"The MBTiles file."`
}

func (c *uploadCmd) Run() error {
	id, err := uuid.Parse(c.Dataset)
	if err != nil {
		return fmt.Errorf("--dataset: %w", err)
	}
	f, err := os.Open(c.File)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	size := info.Size()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	client, err := gen.NewClientWithResponses(strings.TrimRight(c.URL, "/"),
		gen.WithRequestEditorFn(func(_ context.Context, r *http.Request) error {
			r.Header.Set("Authorization", "Bearer "+c.Token)
			// The body is a plain reader; a known length lets the server refuse an oversized
			// file before it is sent.
			r.ContentLength = size
			return nil
		}))
	if err != nil {
		return err
	}
	var body io.Reader = f
	var bar *progressbar.ProgressBar
	if term.IsTerminal(int(os.Stderr.Fd())) {
		bar = progressbar.DefaultBytes(size, "uploading "+filepath.Base(c.File))
		r := progressbar.NewReader(f, bar)
		body = &r
	}
	res, err := client.UploadTilesWithBodyWithResponse(ctx, id, "application/octet-stream", body)
	if bar != nil {
		_ = bar.Exit()
	}
	if err != nil {
		return fmt.Errorf("upload to %s: %w", redactedURL(c.URL), err)
	}
	if res.JSON200 == nil {
		return fmt.Errorf("upload refused: %s", serverError(res.StatusCode(), res.Body))
	}
	return printJSON(json.RawMessage(res.Body))
}

// serverError renders an error answer: {"detail": "…"}, or FastAPI's list of {loc, msg}.
func serverError(status int, body []byte) string {
	prefix := fmt.Sprintf("HTTP %d %s", status, http.StatusText(status))
	var plain struct{ Detail string }
	if json.Unmarshal(body, &plain) == nil && plain.Detail != "" {
		return prefix + ": " + plain.Detail
	}
	var list struct {
		Detail []struct {
			Loc []any
			Msg string
		}
	}
	if json.Unmarshal(body, &list) == nil && len(list.Detail) > 0 {
		var parts []string
		for _, d := range list.Detail {
			loc := make([]string, len(d.Loc))
			for i, l := range d.Loc {
				loc[i] = fmt.Sprint(l)
			}
			parts = append(parts, strings.Join(loc, ".")+": "+d.Msg)
		}
		return prefix + ": " + strings.Join(parts, "; ")
	}
	if len(body) > 0 {
		return prefix + ": " + strings.TrimSpace(string(body))
	}
	return prefix
}

// redactedURL is TILEGATE_URL fit for a message: a password in it is masked, and a URL that does
// not parse is not repeated at all (its text may be a password).
func redactedURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "TILEGATE_URL"
	}
	return u.Redacted()
}
