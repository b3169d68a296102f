package store

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrDatabaseURL: DATABASE_URL is not a URL tilegate can connect with. The URL itself is never
// part of the error: it holds the password.
var ErrDatabaseURL = errors.New("invalid DATABASE_URL")

// urlParseError says why url.Parse refused a DATABASE_URL without quoting it: *url.Error embeds
// the whole input, and an EscapeError quotes the bad escape, which can be part of the password.
func urlParseError(err error) error {
	var esc url.EscapeError
	if errors.As(err, &esc) {
		return fmt.Errorf("%w: it holds an invalid %%-escape (a %% in the user name or password is written %%25)", ErrDatabaseURL)
	}
	return fmt.Errorf("%w: it is not a valid URL (special characters in the user name or password must be %%-encoded)", ErrDatabaseURL)
}

// redactedError is an error whose text has the database credentials masked. errors.Is and
// errors.As still see the original (IsUnavailable classifies it), but nothing that prints it does.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redact masks every form of the password of dsn (as written, decoded, re-encoded; in the user
// information or the password query parameter) in err's text. The PostgreSQL driver redacts
// the connection strings it quotes, but only on a best-effort basis; this is the guarantee.
func redact(err error, dsn string) error {
	if err == nil {
		return nil
	}
	secrets := credentials(dsn)
	if len(secrets) == 0 {
		return err
	}
	msg := err.Error()
	for _, s := range secrets {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	return &redactedError{msg: msg, err: err}
}

// credentials lists the texts of dsn that reveal its password, longest first (so a raw form is
// masked whole before a decoded form inside it).
func credentials(dsn string) []string {
	var out []string
	add := func(s string) {
		if s == "" {
			return
		}
		for _, form := range []string{s, url.PathEscape(s), url.QueryEscape(s), url.UserPassword("", s).String()[1:]} {
			if form != "" {
				out = append(out, form)
			}
		}
	}
	if _, rest, ok := strings.Cut(dsn, "://"); ok {
		authority, _, _ := strings.Cut(rest, "/")
		authority, _, _ = strings.Cut(authority, "?")
		if at := strings.LastIndexByte(authority, '@'); at >= 0 {
			if _, raw, ok := strings.Cut(authority[:at], ":"); ok {
				add(raw)
			}
		}
	}
	if u, err := url.Parse(dsn); err == nil {
		if pw, ok := u.User.Password(); ok {
			add(pw)
		}
		for _, pw := range u.Query()["password"] {
			add(pw)
		}
		if _, raw, ok := strings.Cut(u.RawQuery, "password="); ok {
			raw, _, _ = strings.Cut(raw, "&")
			add(raw)
		}
	}
	// Longest first; drop duplicates.
	seen := map[string]bool{}
	uniq := out[:0]
	for _, s := range out {
		if !seen[s] {
			seen[s] = true
			uniq = append(uniq, s)
		}
	}
	sortByLengthDesc(uniq)
	return uniq
}

func sortByLengthDesc(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && len(s[j]) > len(s[j-1]); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
