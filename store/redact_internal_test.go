package store

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// redact masks the password in every form an error might quote it, and keeps the error chain.
func TestRedactMasksEveryForm(t *testing.T) {
	cause := errors.New("cause")
	cases := map[string][]string{
		"postgres://tg:p%40ss%2Fw0rd@h:5432/db":              {"p%40ss%2Fw0rd", "p@ss/w0rd", "p%40ss%2Fw0rd"},
		"postgres://tg:a+b c@h/db":                           {"a+b c", "a%2Bb+c", "a+b%20c"},
		"postgres://tg@h/db?password=s%26cret&sslmode=x":     {"s%26cret", "s&cret"},
		"postgresql://tg:plain@h/db?password=other&x=1":      {"plain", "other"},
		"postgres://tg:raw%zz@h/db (url.Parse refuses this)": {"raw%zz"},
	}
	for dsn, quoted := range cases {
		for _, q := range quoted {
			err := redact(fmt.Errorf("connect to `%s` with %s: %w", dsn, q, cause), dsn)
			if strings.Contains(err.Error(), q) {
				t.Errorf("%s: %q is still in %q", dsn, q, err)
			}
			if !errors.Is(err, cause) {
				t.Errorf("%s: the chain is lost", dsn)
			}
		}
	}
	if err := redact(errors.New("no password here"), "postgres://tg@h/db"); err.Error() != "no password here" {
		t.Errorf("without a password the error changed: %v", err)
	}
}
