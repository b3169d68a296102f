package main_test

import (
	"encoding/hex"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBrokenConfigurationRefused starts the real binary with each configuration an operator
// gets wrong (issue #17 item 8) and checks the refusal: exit status 1, one log line saying
// what is wrong and how to fix it, and nothing left behind (no database file).
func TestBrokenConfigurationRefused(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		args []string
		env  []string
		want string // in the error line
	}{
		{"misspelt postgres scheme", []string{"serve"}, []string{"DATABASE_URL=postgress://tg:pw@127.0.0.1/tg"},
			`scheme "postgress" is not supported: use postgres://…, postgresql://… or sqlite:PATH`},
		{"mysql", []string{"migrate"}, []string{"DATABASE_URL=mysql://tg:pw@127.0.0.1/tg"}, `scheme "mysql" is not supported`},
		{"mysql, admin", []string{"admin", "create-account", "--name", "x"}, []string{"DATABASE_URL=mysql://tg:pw@127.0.0.1/tg"}, `scheme "mysql" is not supported`},
		{"admin before any database", []string{"admin", "create-account", "--name", "x"}, []string{"DATABASE_URL="},
			"database does not exist: no SQLite file at "},
		{"all interfaces without a public URL", []string{"serve"}, []string{"TILEGATE_ADDR=:0"},
			"TILEGATE_PUBLIC_URL is required when listening on all interfaces (TILEGATE_ADDR :0)"},
		{"0.0.0.0 without a public URL", []string{"serve", "--addr", "0.0.0.0:0"}, nil, "TILEGATE_PUBLIC_URL is required"},
		{"[::] without a public URL", []string{"serve", "--addr", "[::]:0"}, nil, "TILEGATE_PUBLIC_URL is required"},
		{"public URL not a URL", []string{"serve"}, []string{"TILEGATE_PUBLIC_URL=tiles.example.com"},
			`TILEGATE_PUBLIC_URL "tiles.example.com" is not a base URL`},
		{"public URL with a query", []string{"serve"}, []string{"TILEGATE_PUBLIC_URL=https://tiles.example.com/?a=1"}, "is not a base URL"},
		{"all-zero signing key", []string{"serve"}, []string{"TILEGATE_SIGNING_KEYS=prod_2026:" + strings.Repeat("00", 32)},
			`TILEGATE_SIGNING_KEYS: tiletoken: signing key #1 ("prod_2026"): secret is not random: every byte is the same value; use 32 random bytes, e.g. openssl rand -hex 32`},
		{"patterned signing key after a good one", []string{"serve"},
			[]string{"TILEGATE_SIGNING_KEYS=new:" + randHex(32) + ",old:" + strings.Repeat("c0ffee", 11)},
			`signing key #2 ("old"): secret is not random: a pattern of 3 bytes repeated`},
		{"passphrase as signing key", []string{"serve", "--signing-keys", "k1:" + hex.EncodeToString([]byte("our tile signing key, keep it safe!"))}, nil,
			`signing key #1 ("k1"): secret is not random: every byte is printable text`},
		{"storage URL of another cloud", []string{"serve"}, []string{"TILEGATE_STORAGE_URL=gs://tiles"},
			`TILEGATE_STORAGE_URL: invalid storage URL: scheme "gs" (want a directory or s3://)`},
		{"storage URL with credentials", []string{"serve"}, []string{"TILEGATE_STORAGE_URL=s3://AKIDEXAMPLE:pw@tiles"},
			"credentials do not belong in the URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"},
		{"storage URL with a misspelt parameter", []string{"serve"}, []string{"TILEGATE_STORAGE_URL=s3://tiles?endpont=http://127.0.0.1:9000"},
			`unknown parameter "endpont"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cmd := runIn(t, dir, append(environ(""), tt.env...), tt.args...)
			if cmd.code != 1 {
				t.Fatalf("tilegate %s: exit %d, want 1\nstderr: %s", strings.Join(tt.args, " "), cmd.code, cmd.stderr)
			}
			var last struct{ Level, Msg, Err string }
			lines := strings.Split(strings.TrimSpace(cmd.stderr), "\n")
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Level != "ERROR" || !strings.Contains(last.Err, tt.want) {
				t.Errorf("last stderr line %q, want an ERROR whose err has %q", lines[len(lines)-1], tt.want)
			}
			if strings.Contains(cmd.stderr, ":pw@") || strings.Contains(cmd.stderr, "c0ffeec0ffee") || strings.Contains(cmd.stderr, "0000000000000000") {
				t.Errorf("a password or key was printed:\n%s", cmd.stderr)
			}
			entries, err := os.ReadDir(dir)
			must(t, err)
			if len(entries) != 0 {
				t.Errorf("a refused start left %v in its working directory", entries)
			}
		})
	}
}

// TestDatabaseLocationLogged: every database command logs the absolute location it uses,
// PostgreSQL's without the user or password; migrate creates the default SQLite file in the
// working directory and admin commands then find it there.
func TestDatabaseLocationLogged(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := environ("")
	location := func(r cliResult) string {
		for _, line := range strings.Split(r.stderr, "\n") {
			var rec struct{ Msg, Location string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "database" {
				return rec.Location
			}
		}
		t.Fatalf("tilegate %s logged no database location:\n%s", strings.Join(r.args, " "), r.stderr)
		return ""
	}
	want := "sqlite:" + filepath.Join(dir, "data", "tilegate.db")
	r := runIn(t, dir, env, "migrate")
	r.wantOK(t)
	if got := location(r); got != want {
		t.Errorf("migrate: location %q, want %q", got, want)
	}
	r = runIn(t, dir, env, "admin", "create-account", "--name", "here")
	r.wantOK(t)
	if got := location(r); got != want {
		t.Errorf("create-account: location %q, want %q", got, want)
	}
	// From another directory the same command refuses, naming the file it looked for.
	other := t.TempDir()
	r = runIn(t, other, env, "admin", "create-account", "--name", "there")
	if r.code != 1 || !strings.Contains(r.stderr, filepath.Join(other, "data", "tilegate.db")) {
		t.Errorf("create-account elsewhere: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(other, "data")); !os.IsNotExist(err) {
		t.Errorf("create-account elsewhere created %s/data (%v)", other, err)
	}

	dbURL, name := freshPostgres(t)
	u, err := url.Parse(dbURL)
	must(t, err)
	user := "postgres"
	if u.User != nil {
		user = u.User.Username()
	}
	u.User = url.UserPassword(user, "NotThePassword") // trust authentication ignores it
	r = runIn(t, dir, environ(u.String()), "migrate")
	r.wantOK(t)
	got := location(r)
	if !strings.HasPrefix(got, "postgres://") || !strings.HasSuffix(got, "/"+name) || strings.Contains(got, "@") || strings.Contains(r.stderr, "NotThePassword") {
		t.Errorf("postgres location %q, want postgres://host:port/%s without user or password", got, name)
	}
}

// runIn runs the binary in dir with exactly env.
func runIn(t *testing.T, dir string, env []string, args ...string) cliResult {
	t.Helper()
	return runCLIDir(t, dir, env, args...)
}
