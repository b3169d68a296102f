package attribution

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	nethtml "golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

func TestAccepted(t *testing.T) {
	for _, s := range []string{
		"",
		"tilegate sample tiles",
		"© OpenStreetMap contributors",
		`&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors`,
		`<a href="https://openmaptiles.org/" target="_blank" rel="noopener" title="OpenMapTiles">© OpenMapTiles</a> <a href="http://www.openstreetmap.org/about/">© OSM</a>`,
		`<A HREF="HTTPS://example.com/">Example</A>`,
		`<b>Data</b>: <strong>x</strong>, <i>y</i>, <em>z</em><br><small>2026</small><br/>`,
		`<small><a href="https://example.com/a?b=1&amp;c=2">link</a></small>`,
		"a < b and c > d & e",
		"</br>",
		// A repeated attribute: browsers and the tokenizer keep the first, which is checked.
		`<a href="https://example.com/" href="javascript:alert(1)">x</a>`,
	} {
		if err := Check(s); err != nil {
			t.Errorf("Check(%q) = %v, want nil", s, err)
		}
		if got := Safe(s); got != s {
			t.Errorf("Safe(%q) = %q, want it unchanged", s, got)
		}
	}
}

func TestRefused(t *testing.T) {
	for _, s := range []string{
		`<img src=x onerror=alert(1)>`,
		`<script>alert(1)</script>`,
		`<svg onload=alert(1)>`,
		`<a href="javascript:alert(1)">x</a>`,
		`<a href="JaVaScRiPt:alert(1)">x</a>`,
		`<a href="jav&#x61;script:alert(1)">x</a>`,
		`<a href="java&#9;script:alert(1)">x</a>`,
		`<a href=" javascript:alert(1)">x</a>`,
		`<a href="data:text/html,<script>alert(1)</script>">x</a>`,
		`<a href="//evil.example/">x</a>`,
		`<a href="/relative">x</a>`,
		`<a href="https://user:pw@example.com/">x</a>`,
		`<a href="https:\\evil.example">x</a>`,
		`<a href="https://example.com/" onclick="alert(1)">x</a>`,
		`<a href="https://example.com/" style="position:fixed;inset:0">x</a>`,
		`<a>no href</a>`,
		`<a href="https://a.example/"><a href="https://b.example/">nested</a></a>`,
		`<b onmouseover="alert(1)">x</b>`,
		`<b>unclosed`,
		`<i>mismatched</b>`,
		`</b>`,
		`<a href="https://example.com/"/>`,
		`<!-- comment -->`,
		`<!doctype html>`,
		`<iframe src="https://example.com/"></iframe>`,
		`<style>*{display:none}</style>`,
		`<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>`,
		`<span>x</span>`,
		"nul\x00",
		`<xmp><img src=x onerror=alert(1)></xmp>`,
	} {
		err := Check(s)
		var e *Error
		if !errors.As(err, &e) || e.Reason == "" {
			t.Errorf("Check(%q) = %v, want an *Error with a reason", s, err)
			continue
		}
		if got := Safe(s); got == s || strings.ContainsAny(got, "<>") {
			t.Errorf("Safe(%q) = %q, want it escaped", s, got)
		}
	}
}

// safeDOM parses s as a browser's innerHTML would (a fragment in a <div>) and reports any
// element, attribute or link that a page could not show safely.
func safeDOM(s string) error {
	div := &nethtml.Node{Type: nethtml.ElementNode, Data: "div", DataAtom: atom.Div}
	nodes, err := nethtml.ParseFragment(strings.NewReader(s), div)
	if err != nil {
		return err
	}
	var walk func(n *nethtml.Node) error
	walk = func(n *nethtml.Node) error {
		switch n.Type {
		case nethtml.ElementNode:
			if !inline[n.Data] && !void[n.Data] || n.Namespace != "" {
				return errors.New("element " + n.Data)
			}
			for _, a := range n.Attr {
				if n.Data != "a" || !linkOK[a.Key] {
					return errors.New("attribute " + a.Key + " on " + n.Data)
				}
				if a.Key == "href" {
					u, err := url.Parse(a.Val)
					if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
						return errors.New("href " + a.Val)
					}
				}
			}
		case nethtml.TextNode:
		default:
			return errors.New("node type")
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if err := walk(c); err != nil {
				return err
			}
		}
		return nil
	}
	for _, n := range nodes {
		if err := walk(n); err != nil {
			return err
		}
	}
	return nil
}

func TestSafeBuildsOnlyAllowedNodes(t *testing.T) {
	for _, s := range []string{`<img src=x onerror=alert(1)>`, `<a href="https://x.example/">ok</a>`, `<b>x</b>`} {
		if err := safeDOM(Safe(s)); err != nil {
			t.Errorf("Safe(%q) builds %v", s, err)
		}
	}
}

// Whatever is stored, what Safe serves builds, in a browser's parser, only the allowed
// elements, attributes and http(s) links.
func FuzzSafe(f *testing.F) {
	for _, s := range []string{`<a href="https://x.example/">© x</a>`, `<img src=x onerror=alert(1)>`,
		`<b>x</b><br>`, `<a href="jav&#x61;script:1">x</a>`, `<math><style><img>`, "<a href='http://x'>a</a>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := Safe(s)
		if err := safeDOM(out); err != nil {
			t.Fatalf("Safe(%q) = %q builds %v", s, out, err)
		}
		if Check(s) == nil && out != s {
			t.Fatalf("an accepted text changed: %q", s)
		}
	})
}
