package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestREADMECommands runs every shell command of README.md (issue #17 item 12), in the order a
// reader meets them, in one shell: its variables carry from one command to the next as in a
// terminal. The shell starts in a copy of the repository's root (its directories linked, its
// files copied, without data/ and bin/), so `make run &` starts the real server on a fresh SQLite
// database there and the files the commands write stay out of the checkout.
//
// A command fails the test when it exits non-zero, when it prints an error answer (an RFC 9457
// problem body), when the variable it sets is empty or "null" (jq's answer for a missing field),
// or when its output differs in shape from what the README shows: a comment listing keys
// (`# {"account_id","role":"admin",…}`: exactly those keys, those values), or a ```json block
// marked `<!-- README test: the shape of the output above -->` (the same keys and types, <…>
// keys standing for any). Blocks marked `<!-- README test skips this block: REASON -->` are
// skipped, and the test logs why.
//
// The README's addresses (8080, the admin listener's 9464, the static server's 8000) are moved
// to free ports, in the commands and in the defaults they rely on (make's ADDR, TILEGATE_ADDR,
// TILEGATE_URL, TILEGATE_ADMIN_ADDR): the machine may be running a tilegate of its own.
func TestREADMECommands(t *testing.T) {
	for _, tool := range []string{"bash", "make", "curl", "jq", "python3", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("the README's commands need %s (.ci/run installs it)", tool)
			}
			t.Skipf("the README's commands need %s: %v", tool, err)
		}
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	must(t, err)
	blocks := readmeBlocks(t, filepath.Join(root, "README.md"))

	ports := [3]int{freePort(t), freePort(t), freePort(t)} // API, static site, admin
	api := "127.0.0.1:" + strconv.Itoa(ports[0])
	moved := strings.NewReplacer(
		":8080", ":"+strconv.Itoa(ports[0]),
		":8000", ":"+strconv.Itoa(ports[1]), "http.server 8000", "http.server "+strconv.Itoa(ports[1]),
		":9464", ":"+strconv.Itoa(ports[2]),
	)

	work := repoCopy(t, root)
	out := t.TempDir()
	var script strings.Builder
	script.WriteString("set -o pipefail\n")
	var cmds []readmeCommand
	var lastBlockEnd = -1 // index in cmds of the last command of the last block run
	for _, b := range blocks {
		switch {
		case b.skip != "":
			t.Logf("README.md:%d: skipped: %s", b.line, b.skip)
			continue
		case b.shape:
			if lastBlockEnd < 0 {
				t.Fatalf("README.md:%d: an output shape with no command before it", b.line)
			}
			cmds[lastBlockEnd].shape = append(cmds[lastBlockEnd].shape, b.body)
			continue
		case !b.shell:
			continue
		}
		for _, c := range splitCommands(t, b) {
			c.text = moved.Replace(c.text)
			i := len(cmds)
			fmt.Fprintf(&script, "# README.md:%d\n{\n%s\n} >%q 2>%q\nrc=$?; echo $rc >%q; [ $rc -eq 0 ] || exit 90\n",
				c.line, c.text, filepath.Join(out, fmt.Sprint(i, ".out")), filepath.Join(out, fmt.Sprint(i, ".err")), filepath.Join(out, fmt.Sprint(i, ".rc")))
			if c.variable != "" {
				fmt.Fprintf(&script, "printf '%%s' \"$%s\" >%q\n", c.variable, filepath.Join(out, fmt.Sprint(i, ".var")))
			}
			if c.background {
				// The README says to wait for the server (or the static site) before going on.
				var probe string
				switch {
				case strings.Contains(c.text, "make run"):
					probe = "http://" + api + "/healthz"
				case strings.Contains(c.text, "http.server"):
					probe = "http://127.0.0.1:" + strconv.Itoa(ports[1]) + "/"
				default:
					t.Fatalf("README.md:%d: a background command this test does not know how to wait for: %s", c.line, c.text)
				}
				fmt.Fprintf(&script, "for _ in $(seq 1500); do curl -sf -o /dev/null %s && break; sleep 0.2; done\n"+
					"curl -sf -o /dev/null %s || { echo 'README.md:%d did not come up within 5 minutes' >%q; exit 91; }\n",
					probe, probe, c.line, filepath.Join(out, "wait.err"))
			}
			cmds = append(cmds, c)
		}
		lastBlockEnd = len(cmds) - 1
	}
	if len(cmds) < 25 {
		t.Fatalf("only %d commands found in README.md: is the parser broken?", len(cmds))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	sh := exec.CommandContext(ctx, "bash", "-c", script.String())
	sh.Dir = work
	sh.Env = environ("", "ADDR="+api, "TILEGATE_ADDR="+api, "TILEGATE_URL=http://"+api,
		"TILEGATE_ADMIN_ADDR=127.0.0.1:"+strconv.Itoa(ports[2]))
	// The shell and what it starts in the background (make, go run, the server, the static
	// site) share a process group, ended as a whole when the commands are done.
	sh.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	sh.Cancel = func() error { return syscall.Kill(-sh.Process.Pid, syscall.SIGKILL) }
	combined, runErr := sh.CombinedOutput()
	if sh.Process != nil {
		_ = syscall.Kill(-sh.Process.Pid, syscall.SIGTERM)
		time.Sleep(200 * time.Millisecond)
		_ = syscall.Kill(-sh.Process.Pid, syscall.SIGKILL)
	}
	read := func(i int, ext string) string {
		b, _ := os.ReadFile(filepath.Join(out, fmt.Sprint(i, ext)))
		return string(b)
	}

	ran, shapes, keyLists := 0, 0, 0
	for i, c := range cmds {
		rc := strings.TrimSpace(read(i, ".rc"))
		if rc == "" {
			break // not reached: the failure before says why
		}
		ran++
		stdout, stderr := read(i, ".out"), read(i, ".err")
		where := fmt.Sprintf("README.md:%d `%s`", c.line, firstLine(c.text))
		if rc != "0" {
			t.Errorf("%s exited %s\nstdout: %s\nstderr: %s", where, rc, tail(stdout), tail(stderr))
			continue
		}
		if problemBody(stdout) {
			t.Errorf("%s answered an error: %s", where, tail(stdout))
		}
		if c.variable != "" {
			if v := read(i, ".var"); v == "" || v == "null" {
				t.Errorf("%s set %s to %q\nstderr: %s", where, c.variable, v, tail(stderr))
			}
		}
		if c.keys != nil {
			keyLists++
			checkKeys(t, where, stdout, c.keys)
		}
		for _, want := range c.shape {
			shapes++
			var got, shown any
			if err := json.Unmarshal([]byte(stdout), &got); err != nil {
				t.Errorf("%s: output is not JSON (%v): %s", where, err, tail(stdout))
				continue
			}
			if err := json.Unmarshal([]byte(want), &shown); err != nil {
				t.Fatalf("%s: the README's output block is not JSON: %v", where, err)
			}
			if err := sameShape("$", got, shown); err != nil {
				t.Errorf("%s: output differs in shape from the README's: %v\noutput: %s", where, err, tail(stdout))
			}
		}
	}
	if ran < len(cmds) || runErr != nil && !t.Failed() {
		wait, _ := os.ReadFile(filepath.Join(out, "wait.err"))
		server := ""
		for i, c := range cmds {
			if c.background && strings.Contains(c.text, "make run") {
				server = tail(read(i, ".out") + read(i, ".err"))
			}
		}
		t.Errorf("%d of %d commands ran (%v) %s\nshell: %s\nserver log: %s", ran, len(cmds), runErr, wait, tail(string(combined)), server)
	}
	t.Logf("%d commands of README.md ran; %d outputs compared with a JSON block, %d with a list of keys", ran, shapes, keyLists)
	if shapes == 0 || keyLists == 0 {
		t.Errorf("no output was compared with what the README shows: are the markers gone?")
	}
}

// readmeBlock is a fenced block of the README.
type readmeBlock struct {
	line  int // of its first content line
	shell bool
	skip  string // the marker's reason
	shape bool   // a JSON output shape for the command before
	lines []string
	body  string
}

var (
	skipMarker  = regexp.MustCompile(`^<!-- README test skips this block: (.+) -->$`)
	shapeMarker = "<!-- README test: the shape of the output above -->"
)

func readmeBlocks(t *testing.T, path string) []readmeBlock {
	t.Helper()
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	var blocks []readmeBlock
	var cur *readmeBlock
	prev := "" // the last non-blank line outside a block
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if cur != nil {
			if line == "```" {
				cur.body = strings.Join(cur.lines, "\n")
				blocks = append(blocks, *cur)
				cur = nil
				continue
			}
			cur.lines = append(cur.lines, line)
			continue
		}
		if info, ok := strings.CutPrefix(line, "```"); ok {
			lang := strings.Fields(info + " x")[0]
			cur = &readmeBlock{line: n + 1, shell: lang == "sh" || lang == "bash" || lang == "console" || lang == "shell"}
			if m := skipMarker.FindStringSubmatch(prev); m != nil {
				cur.skip = m[1]
			}
			if prev == shapeMarker {
				if lang != "json" {
					t.Fatalf("README.md:%d: the output shape marker is on a %q block, want json", n, lang)
				}
				cur.shape = true
			}
			if lang == "console" {
				t.Fatalf("README.md:%d: console blocks mix commands and output: write sh and a json shape block", n)
			}
			continue
		}
		if strings.TrimSpace(line) != "" {
			prev = line
		}
	}
	must(t, sc.Err())
	if cur != nil {
		t.Fatalf("README.md: the block at line %d is not closed", cur.line)
	}
	return blocks
}

// readmeCommand is one complete shell command of a block.
type readmeCommand struct {
	line       int
	text       string
	variable   string   // the variable it sets, when it is an assignment alone
	background bool     // it ends in &
	keys       []string // a comment's `{"a","b":"v"}`: the JSON object's keys (and values) printed
	shape      []string // JSON blocks showing its output
}

var (
	assignment = regexp.MustCompile(`(?s)^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(?:\$\(.*\)|"[^"]*"|'[^']*'|[^\s"'$]+)\s*(?:#.*)?$`)
	background = regexp.MustCompile(`[^&]&\s*(?:#.*)?$`)
	keyComment = regexp.MustCompile(`#\s*(\{"[a-z_]+"(?::"[^"]*")?(?:,"[a-z_]+"(?::"[^"]*")?)*\})`)
	keyItem    = regexp.MustCompile(`"([a-z_]+)"(?::"([^"]*)")?`)
)

// splitCommands cuts a block into complete commands: lines are added to a command until bash
// parses it (a quote or $( … ) left open goes on) and it does not end in a backslash.
func splitCommands(t *testing.T, b readmeBlock) []readmeCommand {
	t.Helper()
	var out []readmeCommand
	var acc []string
	start := 0
	for i, line := range b.lines {
		if len(acc) == 0 {
			trimmed := strings.TrimSpace(line)
			if trimmed == "" || strings.HasPrefix(trimmed, "#") {
				continue
			}
			start = b.line + i
		}
		acc = append(acc, line)
		text := strings.Join(acc, "\n")
		if strings.HasSuffix(strings.TrimRight(line, " "), "\\") || exec.Command("bash", "-n", "-c", text).Run() != nil {
			continue
		}
		c := readmeCommand{line: start, text: text, background: background.MatchString(acc[len(acc)-1])}
		if m := assignment.FindStringSubmatch(text); m != nil {
			c.variable = m[1]
		}
		if m := keyComment.FindStringSubmatch(acc[len(acc)-1]); m != nil {
			c.keys = []string{}
			for _, kv := range keyItem.FindAllStringSubmatch(m[1], -1) {
				c.keys = append(c.keys, kv[1]+"="+kv[2])
			}
		}
		out = append(out, c)
		acc = nil
	}
	if acc != nil {
		t.Fatalf("README.md:%d: a command that never ends: %s", start, strings.Join(acc, "\n"))
	}
	return out
}

// checkKeys: stdout is one JSON object with exactly the keys listed, and the values given.
func checkKeys(t *testing.T, where, stdout string, keys []string) {
	t.Helper()
	var obj map[string]any
	if err := json.Unmarshal([]byte(stdout), &obj); err != nil {
		t.Errorf("%s: output is not a JSON object (%v): %s", where, err, tail(stdout))
		return
	}
	var names []string
	for _, kv := range keys {
		name, value, _ := strings.Cut(kv, "=")
		names = append(names, name)
		if _, ok := obj[name]; !ok {
			t.Errorf("%s: output has no %q: %s", where, name, tail(stdout))
		} else if value != "" && obj[name] != value {
			t.Errorf("%s: %s is %v, the README shows %q", where, name, obj[name], value)
		}
	}
	for name := range obj {
		if !slices.Contains(names, name) {
			t.Errorf("%s: output has %q, which the README does not show", where, name)
		}
	}
}

// sameShape compares a command's JSON output with the README's: objects have the same keys (a
// key written <…> stands for any key, and each value under such keys has the shape of one of
// the README's values under such keys), arrays' elements the shape of the README's first,
// scalars the same JSON type.
func sameShape(path string, got, shown any) error {
	switch s := shown.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %T, the README shows an object", path, got)
		}
		var wild []any
		for k, v := range s {
			if strings.HasPrefix(k, "<") && strings.HasSuffix(k, ">") {
				wild = append(wild, v)
				continue
			}
			gv, ok := g[k]
			if !ok {
				return fmt.Errorf("%s: no %q", path, k)
			}
			if err := sameShape(path+"."+k, gv, v); err != nil {
				return err
			}
		}
		matched := make([]bool, len(wild))
		for k, gv := range g {
			if _, named := s[k]; named {
				continue
			}
			if len(wild) == 0 {
				return fmt.Errorf("%s: %q, which the README does not show", path, k)
			}
			var errs []string
			ok := false
			for i, w := range wild {
				err := sameShape(path+"."+k, gv, w)
				if err == nil {
					matched[i], ok = true, true
					break
				}
				errs = append(errs, err.Error())
			}
			if !ok {
				return fmt.Errorf("%s: %q matches none of the README's entries: %s", path, k, strings.Join(errs, "; "))
			}
		}
		for i, m := range matched {
			if !m {
				return fmt.Errorf("%s: nothing of the shape the README shows as %v", path, wild[i])
			}
		}
		return nil
	case []any:
		g, ok := got.([]any)
		if !ok {
			return fmt.Errorf("%s: %T, the README shows an array", path, got)
		}
		if len(s) == 0 {
			return nil
		}
		for i, gv := range g {
			if err := sameShape(fmt.Sprintf("%s[%d]", path, i), gv, s[0]); err != nil {
				return err
			}
		}
		return nil
	default:
		if fmt.Sprintf("%T", got) != fmt.Sprintf("%T", shown) {
			return fmt.Errorf("%s: %T %v, the README shows %T %v", path, got, got, shown, shown)
		}
		return nil
	}
}

// problemBody reports whether out is an error answer (RFC 9457: a status of 400 or more and a title).
func problemBody(out string) bool {
	var p struct {
		Status int    `json:"status"`
		Title  string `json:"title"`
	}
	return json.Unmarshal([]byte(out), &p) == nil && p.Status >= 400 && p.Title != ""
}

// repoCopy is a directory that reads as the repository's root: its directories linked, its
// files copied (go:embed takes no symlinked file), without .git, data/, bin/ or what First
// steps writes.
func repoCopy(t *testing.T, root string) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(root)
	must(t, err)
	for _, e := range entries {
		switch e.Name() {
		case ".git", "data", "bin", "account.json", "viewer.json", "demo.mbtiles":
			continue
		}
		src, dst := filepath.Join(root, e.Name()), filepath.Join(dir, e.Name())
		if e.IsDir() {
			must(t, os.Symlink(src, dst))
			continue
		}
		b, err := os.ReadFile(src)
		must(t, err)
		info, err := e.Info()
		must(t, err)
		must(t, os.WriteFile(dst, b, info.Mode().Perm()))
	}
	return dir
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}

func tail(s string) string {
	if len(s) > 3000 {
		return "…" + s[len(s)-3000:]
	}
	return s
}
