package main_test

import (
	"strings"
	"testing"
)

// No credential of DATABASE_URL is ever printed, whatever fails: a URL that does not parse, one
// the PostgreSQL driver refuses, a server that does not answer (issue #7 item 13).
func TestDatabaseURLCredentialsNeverPrinted(t *testing.T) {
	const secret = "SecretPw"
	cases := map[string]string{
		"invalid %-escape in the password": "postgres://tg:Sup3r%zz" + secret + "@127.0.0.1:5432/db",
		"escape cut short":                 "postgres://tg:Sup3r" + secret + "%2@127.0.0.1:5432/db",
		"bad host":                         "postgres://tg:Sup3r" + secret + "@[::1/db",
		"control character":                "postgres://tg:Sup3r" + secret + "\x7f@127.0.0.1:5432/db",
		"driver refuses a setting":         "postgres://tg:Sup3r" + secret + "@127.0.0.1:5432/db?sslmode=bogus",
		"password in the query":            "postgres://tg@127.0.0.1:5432/db?password=Sup3r" + secret + "&sslmode=bogus",
		"escaped password, refused":        "postgresql://tg:Sup3r%25" + secret + "@127.0.0.1:5432/db?sslmode=bogus",
		"nothing listens":                  "postgres://tg:Sup3r" + secret + "@127.0.0.1:1/db?connect_timeout=2",
	}
	for name, dbURL := range cases {
		t.Run(name, func(t *testing.T) {
			for _, cmd := range [][]string{{"migrate"}, {"admin", "create-account", "--name", "x"}} {
				r := runCLI(t, dbURL, cmd...)
				if r.code == 0 {
					t.Fatalf("tilegate %s succeeded on %q", strings.Join(cmd, " "), dbURL)
				}
				out := r.stdout + r.stderr
				if strings.Contains(out, secret) {
					t.Errorf("tilegate %s printed the password:\n%s", strings.Join(cmd, " "), out)
				}
				if !strings.Contains(out, "database") && !strings.Contains(out, "DATABASE_URL") {
					t.Errorf("tilegate %s does not say what failed:\n%s", strings.Join(cmd, " "), out)
				}
			}
		})
	}
	// --database-url takes the same path.
	r := runCLIEnv(t, environ(""), "migrate", "--database-url", cases["invalid %-escape in the password"])
	if r.code == 0 || strings.Contains(r.stdout+r.stderr, secret) {
		t.Errorf("--database-url: exit %d, output:\n%s%s", r.code, r.stdout, r.stderr)
	}
}
