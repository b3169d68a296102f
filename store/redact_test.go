package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tilegate/tilegate/store"
)

// store.Open never puts the database password in an error, whatever fails (issue #7 item 13).
func TestOpenNeverQuotesThePassword(t *testing.T) {
	const pw = "Pa55word"
	cases := map[string]string{
		"invalid %-escape":          "postgres://tg:" + pw + "%zz@127.0.0.1:5432/db",
		"escape cut short":          "postgres://tg:" + pw + "%2@127.0.0.1:5432/db",
		"bad host":                  "postgres://tg:" + pw + "@[::1/db",
		"control character":         "postgres://tg:" + pw + "\x7f@127.0.0.1:5432/db",
		"driver refuses a setting":  "postgres://tg:" + pw + "@127.0.0.1:5432/db?sslmode=bogus",
		"@ in the password":         "postgres://tg:" + pw + "@x@127.0.0.1:5432/db?sslmode=bogus",
		"colon in the password":     "postgres://tg:a:" + pw + "@127.0.0.1:5432/db?sslmode=bogus",
		"password in the query":     "postgres://tg@127.0.0.1:5432/db?sslmode=bogus&password=" + pw,
		"escaped password":          "postgres://tg:%50a55word@127.0.0.1:5432/db?sslmode=bogus",
		"encoded query password":    "postgres://tg@127.0.0.1:5432/db?password=%50a55word&sslmode=bogus",
		"bad port":                  "postgres://tg:" + pw + "@127.0.0.1:99999/db",
		"nothing listens":           "postgres://tg:" + pw + "@127.0.0.1:1/db?connect_timeout=2",
		"server refuses (bad user)": "postgres://no_such_user_tilegate:" + pw + "@127.0.0.1:5432/db?connect_timeout=2",
	}
	for name, dbURL := range cases {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st, err := store.Open(ctx, dbURL, store.Options{})
			if err == nil {
				_ = st.Close()
				t.Fatal("opened")
			}
			if strings.Contains(err.Error(), pw) || strings.Contains(err.Error(), "%50a55word") {
				t.Errorf("the error quotes the password: %v", err)
			}
		})
	}
	_, err := store.Open(context.Background(), cases["invalid %-escape"], store.Options{})
	if !errors.Is(err, store.ErrDatabaseURL) || !strings.Contains(err.Error(), "%-escape") {
		t.Errorf("a URL that does not parse: %v, want ErrDatabaseURL naming the %%-escape", err)
	}
}
