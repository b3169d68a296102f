// Package attribution decides which attribution texts tilegate serves as HTML.
//
// MapLibre GL JS (and Leaflet, OpenLayers) put a source's attribution into the page with
// innerHTML, on whichever site embeds the map: TileJSON 3.0 leaves it to the producer to serve
// only safe HTML. tilegate therefore accepts an attribution only when it is text with a few
// inline tags, and links to http(s) URLs; everything else is refused at the write, never
// "cleaned" (a silently altered licence notice is as bad as a missing one). Rows written before
// the rule are served escaped as text (Safe), so no stored markup reaches a browser as HTML.
package attribution

import (
	"errors"
	"fmt"
	"html"
	"io"
	"net/url"
	"strings"

	nethtml "golang.org/x/net/html"
)

// Tags lists the elements an attribution may contain. Only "a" takes attributes.
var Tags = []string{"a", "b", "strong", "i", "em", "small", "br"}

// LinkAttributes lists the attributes an <a> may carry; href is required.
var LinkAttributes = []string{"href", "title", "target", "rel"}

var (
	inline = map[string]bool{"a": true, "b": true, "strong": true, "i": true, "em": true, "small": true}
	void   = map[string]bool{"br": true}
	linkOK = map[string]bool{"href": true, "title": true, "target": true, "rel": true}
)

// Error is why an attribution is refused: Reason is a sentence for the writer.
type Error struct{ Reason string }

func (e *Error) Error() string { return "attribution: " + e.Reason }

func refuse(format string, args ...any) error { return &Error{Reason: fmt.Sprintf(format, args...)} }

// Check returns nil when s may be served as HTML, an *Error saying what to change otherwise.
//
// It reads s as a browser does (the HTML tokenizer of golang.org/x/net/html, which follows the
// WHATWG tokenization rules), so what is checked is what a browser would build: entities in
// attribute values are decoded before the URL is checked, tag and attribute names are folded.
func Check(s string) error {
	if strings.ContainsRune(s, 0) {
		return refuse("must not contain a NUL character")
	}
	z := nethtml.NewTokenizer(strings.NewReader(s))
	var open []string
	for {
		tt := z.Next()
		switch tt {
		case nethtml.ErrorToken:
			if !errors.Is(z.Err(), io.EOF) {
				return refuse("is not readable as HTML: %v", z.Err())
			}
			if len(open) > 0 {
				return refuse("<%s> is not closed", open[len(open)-1])
			}
			return nil
		case nethtml.TextToken:
			// Any text: the tokenizer has already read every "<" that starts a tag.
		case nethtml.StartTagToken, nethtml.SelfClosingTagToken:
			t := z.Token()
			if err := checkTag(t, tt == nethtml.SelfClosingTagToken, open); err != nil {
				return err
			}
			if !void[t.Data] {
				open = append(open, t.Data)
			}
		case nethtml.EndTagToken:
			t := z.Token()
			if void[t.Data] {
				continue // </br> is read by browsers as <br>
			}
			if len(open) == 0 || open[len(open)-1] != t.Data {
				return refuse("</%s> closes no open <%s>", t.Data, t.Data)
			}
			open = open[:len(open)-1]
		case nethtml.CommentToken:
			return refuse("must not contain HTML comments")
		case nethtml.DoctypeToken:
			return refuse("must not contain a doctype")
		default:
			return refuse("must not contain %v", tt)
		}
	}
}

func checkTag(t nethtml.Token, selfClosing bool, open []string) error {
	if !inline[t.Data] && !void[t.Data] {
		return refuse("<%s> is not allowed: only text, links (<a href=\"https://…\">) and %s", t.Data, strings.Join(Tags[1:], ", "))
	}
	if selfClosing && !void[t.Data] {
		return refuse("<%s/> is not a closed element in HTML: write <%s>…</%s>", t.Data, t.Data, t.Data)
	}
	if t.Data != "a" {
		if len(t.Attr) > 0 {
			return refuse("<%s> takes no attributes (%s)", t.Data, t.Attr[0].Key)
		}
		return nil
	}
	for _, o := range open {
		if o == "a" {
			return refuse("a link must not contain another link")
		}
	}
	seen := map[string]bool{}
	for _, a := range t.Attr {
		if a.Namespace != "" || !linkOK[a.Key] {
			return refuse("<a> may carry only %s, not %s", strings.Join(LinkAttributes, ", "), a.Key)
		}
		if seen[a.Key] {
			return refuse("<a> carries %s twice", a.Key)
		}
		seen[a.Key] = true
		if a.Key == "href" {
			if err := checkHref(a.Val); err != nil {
				return err
			}
		}
	}
	if !seen["href"] {
		return refuse("<a> needs an href")
	}
	return nil
}

// checkHref allows absolute http and https URLs with a host and nothing a browser would strip
// or rewrite before reading the scheme (whitespace, control characters, backslashes).
func checkHref(v string) error {
	for _, r := range v {
		if r <= ' ' || r == 0x7f || r == '\\' {
			return refuse("a link's href must be a plain http or https URL (no spaces, control characters or backslashes)")
		}
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return refuse("a link's href must be an absolute http or https URL without credentials, not %q", v)
	}
	return nil
}

// Safe returns s as it may be served in HTML: s itself when Check accepts it, otherwise s
// escaped as text (for rows stored before the rule: the markup shows, nothing runs).
func Safe(s string) string {
	if Check(s) == nil {
		return s
	}
	return html.EscapeString(strings.ReplaceAll(s, "\x00", "\uFFFD"))
}
