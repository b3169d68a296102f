package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime/debug"
	"time"
)

// buildInfo is what `tilegate version` reports: the module version and the VCS stamp the Go
// toolchain records in the binary (go build in a git checkout; -buildvcs=false or a build
// outside one leaves them empty).
type buildInfo struct {
	Version  string `json:"version"`
	Revision string `json:"revision,omitempty"`
	Time     string `json:"time,omitempty"`
	Modified bool   `json:"modified"`
	Go       string `json:"go"`
}

func readBuildInfo() buildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return buildInfo{Version: "unknown"}
	}
	out := buildInfo{Version: bi.Main.Version, Go: bi.GoVersion}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			out.Revision = s.Value
		case "vcs.time":
			out.Time = s.Value
		case "vcs.modified":
			out.Modified = s.Value == "true"
		}
	}
	return out
}

// String is the one line `tilegate version` prints: tilegate (devel) 3f2c1a9… 2026-12-03T17:39:04Z (modified) go1.26.8
func (b buildInfo) String() string {
	s := "tilegate " + b.Version
	if b.Revision != "" {
		s += " " + b.Revision
	}
	if b.Time != "" {
		s += " " + b.Time
	}
	if b.Modified {
		s += " (modified)"
	}
	return s + " " + b.Go
}

type versionCmd struct {
	JSON bool `name:"json" help:"Print a JSON object instead of one line."`
}

func (c *versionCmd) Run() error {
	b := readBuildInfo()
	if c.JSON {
		return printJSON(b)
	}
	_, err := fmt.Println(b)
	return err
}

type healthcheckCmd struct {
	Addr    string        `env:"TILEGATE_ADDR" default:"127.0.0.1:8080" help:"The server's listen address (an all-interfaces one is asked on loopback)."`
	Timeout time.Duration `default:"3s" help:"How long to wait for the answer."`
}

// Run asks /readyz (not /healthz: a server that cannot reach its database or storage should be
// restarted or taken out of rotation). It exists because distroless and scratch images have no
// curl or wget for a HEALTHCHECK.
func (c *healthcheckCmd) Run() error {
	u := "http://" + loopbackFor(c.Addr) + "/readyz"
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck %s: %w", u, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck %s: %s", u, res.Status)
	}
	fmt.Fprintln(os.Stdout, "ready")
	return nil
}

// loopbackFor turns a listen address into one to connect to: all interfaces (":8080",
// "0.0.0.0:8080", "[::]:8080") are asked on the matching loopback address.
func loopbackFor(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip, perr := netip.ParseAddr(host); host == "" || perr == nil && ip.IsUnspecified() {
		if perr == nil && ip.Is6() {
			host = "::1"
		} else {
			host = "127.0.0.1"
		}
	}
	return net.JoinHostPort(host, port)
}
