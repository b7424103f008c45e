package main

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var shellFence = regexp.MustCompile("(?s)```(?:sh|console|bash)\n(.*?)```")

// commandsNeedingNoServer are the pvlb commands the docs' shell examples
// may show that this test runs: the others need servers.
var commandsNeedingNoServer = map[string]bool{"validate": true, "simulate": true, "plugins": true, "version": true, "completion": true, "help": true}

// TestDocCommands runs every pvlb command the README and the docs show in
// a shell example, where it needs no server, from the repository's root:
// each must succeed (an example of a mistake, under examples/invalid, must
// fail with exit 1), so that no doc shows a command that does not work.
func TestDocCommands(t *testing.T) {
	docs, _ := filepath.Glob("../../docs/*.md")
	providers, _ := filepath.Glob("../../docs/providers/*.md")
	docs = append(append(docs, providers...), "../../README.md")
	type example struct{ doc, line string }
	var examples []example
	for _, doc := range docs {
		text, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range shellFence.FindAllStringSubmatch(string(text), -1) {
			for _, line := range joinContinuations(m[1]) {
				examples = append(examples, example{filepath.Base(doc), line})
			}
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, ex := range examples {
		args, ok := pvlbCommand(ex.line)
		if !ok || len(args) == 0 || !commandsNeedingNoServer[args[0]] || !configExists(root, args) {
			continue
		}
		ran++
		// A report goes to a scratch directory, not the repository.
		for i, arg := range args {
			if arg == "--report" && i+1 < len(args) {
				args[i+1] = filepath.Join(t.TempDir(), filepath.Base(args[i+1]))
			}
		}
		// The built pvlb, as a reader runs it: bundled plugins start from
		// its own executable.
		cmd := exec.Command(pvlbBinary, args...)
		cmd.Dir = root
		var stderr strings.Builder
		cmd.Stderr = &stderr
		status := 0
		if err := cmd.Run(); err != nil {
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatal(err)
			}
			status = ee.ExitCode()
		}
		want := 0
		if strings.Contains(ex.line, "examples/invalid/") {
			want = 1
		}
		if status != want {
			t.Errorf("%s: %s\nexit %d, want %d\n%s", ex.doc, ex.line, status, want, stderr.String())
		}
	}
	if ran < 8 {
		t.Fatalf("ran only %d commands from the docs", ran)
	}
	t.Logf("ran %d commands from the docs", ran)
}

// joinContinuations returns a block's lines with backslash continuations
// joined and a console prompt ("$ ") removed.
func joinContinuations(block string) []string {
	var out []string
	var cur strings.Builder
	sc := bufio.NewScanner(strings.NewReader(block))
	for sc.Scan() {
		line := sc.Text()
		if cur.Len() == 0 {
			line = strings.TrimPrefix(strings.TrimSpace(line), "$ ")
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		out = append(out, cur.String())
		cur.Reset()
	}
	return out
}

// pvlbCommand splits a shell line that runs pvlb (pvlb, ./pvlb or go run
// ./cmd/pvlb) into pvlb's arguments, without its trailing comment.
func pvlbCommand(line string) ([]string, bool) {
	words := shellWords(line)
	switch {
	case len(words) > 0 && (words[0] == "pvlb" || words[0] == "./pvlb"):
		return words[1:], true
	case len(words) > 2 && words[0] == "go" && words[1] == "run" && words[2] == "./cmd/pvlb":
		return words[3:], true
	}
	return nil, false
}

// shellWords splits like a shell: quotes group, # starts a comment.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == '#' && !inWord:
			return words
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// configExists reports whether every -c the command names exists here: a
// doc may show a command on the reader's own files.
func configExists(root string, args []string) bool {
	for i, a := range args {
		if (a == "-c" || a == "--config") && i+1 < len(args) {
			if _, err := os.Stat(filepath.Join(root, args[i+1])); err != nil {
				return false
			}
		}
	}
	return true
}

// TestPluginGuideWorksAsWritten follows docs/writing-plugins.md beside this
// checkout: its first shell steps, the example's main.go copied in, go
// build onto a plugin path; pvlb then lists the plugin and validates a
// configuration that uses it.
func TestPluginGuideWorksAsWritten(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module outside the repository")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	guide, err := os.ReadFile(filepath.Join(root, "docs", "writing-plugins.md"))
	if err != nil {
		t.Fatal(err)
	}
	steps := shellFence.FindStringSubmatch(string(guide))
	if steps == nil || !strings.Contains(steps[1], "go mod init") {
		t.Fatalf("the guide's first shell block is not the module's set-up: %v", steps)
	}
	work := t.TempDir()
	if err := os.Symlink(root, filepath.Join(work, "pvlb")); err != nil { // the guide's ../pvlb
		t.Fatal(err)
	}
	plugins := filepath.Join(work, "plugins")
	script := steps[1] + "cp " + filepath.Join(root, "examples/plugins/file/main.go") + " .\n" +
		"go mod tidy\ngo build -o " + filepath.Join(plugins, "pvlb-discovery-file") + " .\n"
	sh := exec.Command("bash", "-euc", script)
	sh.Dir = work
	sh.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("following the guide: %v\n%s", err, out)
	}
	cfg := filepath.Join(work, "pvlb.hcl")
	endpoints := filepath.Join(work, "endpoints.json")
	if err := os.WriteFile(endpoints, []byte(`{"peervault": [{"id": "server1", "address": "127.0.0.1", "port": 50051}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte("discovery \"file\" \"local\" {\n  path = \""+endpoints+"\"\n}\nservice \"peervault\" { discovery = discovery.file.local }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"plugins"}, {"validate", "-c", cfg}} {
		cmd := exec.Command(pvlbBinary, args...)
		cmd.Env = append(os.Environ(), "PVLB_PLUGIN_PATH="+plugins)
		out, err := cmd.CombinedOutput()
		if err != nil || (args[0] == "plugins" && !strings.Contains(string(out), "pvlb-discovery-file")) {
			t.Fatalf("pvlb %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
