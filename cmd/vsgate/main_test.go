package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestUsage: the gateway binary's commands, and none of the test bench's
// (cmd/vsgate-lab has those).
func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, 2},
		{[]string{"help"}, 0},
		{[]string{"nope"}, 2},
		{[]string{"run"}, 2}, // no -c
		{[]string{"check"}, 2},
		{[]string{"lab", "up"}, 2},
		{[]string{"demo"}, 2},
		{[]string{"bench"}, 2},
	} {
		var out, errb bytes.Buffer
		if got := run(tc.args, &out, &errb); got != tc.want {
			t.Errorf("vsgate %v = %d, want %d\n%s%s", tc.args, got, tc.want, out.String(), errb.String())
		}
	}
}

// TestVersion: --version and version print one line with the version,
// the commit and the Go version the binary was built with.
func TestVersion(t *testing.T) {
	for _, arg := range []string{"--version", "version"} {
		var out, errb bytes.Buffer
		if got := run([]string{arg}, &out, &errb); got != 0 {
			t.Fatalf("vsgate %s = %d: %s", arg, got, errb.String())
		}
		line := out.String()
		if !strings.HasPrefix(line, "vsgate ") || !strings.Contains(line, " commit ") || !strings.Contains(line, runtime.Version()) || strings.Count(line, "\n") != 1 {
			t.Fatalf("vsgate %s: %q", arg, line)
		}
	}
}

// TestCompletion sources the bash completion in bash and asks it what
// follows: the commands, a scheduler after -s, the forwarding switches,
// the daemon's states.
func TestCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	var script, errb bytes.Buffer
	if got := run([]string{"completion", "bash"}, &script, &errb); got != 0 {
		t.Fatalf("vsgate completion bash = %d: %s", got, errb.String())
	}
	file := filepath.Join(t.TempDir(), "vsgate.bash")
	if err := os.WriteFile(file, script.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		words string // the line so far; the last word is being completed
		want  []string
	}{
		{"vsgate ", []string{"run", "check", "adm", "completion", "version", "help", "--version"}},
		{"vsgate adm -A -t 198.18.0.10:80 -s lb", []string{"lblc", "lblcr"}},
		{"vsgate adm -a -t 198.18.0.10:80 -r 198.18.2.11 -", []string{"-m", "--fullnat", "-g", "-w", "-x", "-y"}},
		{"vsgate adm --start-daemon ", []string{"master", "backup"}},
		{"vsgate adm ipt", []string{"iptables"}},
		{"vsgate help ", []string{"config"}},
	} {
		words := strings.Split(tc.words, " ")
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = fmt.Sprintf("%q", w)
		}
		probe := fmt.Sprintf(`source %s; COMP_WORDS=(%s); COMP_CWORD=%d; _vsgate; printf '%%s\n' "${COMPREPLY[@]}"`, file, strings.Join(quoted, " "), len(words)-1)
		out, err := exec.Command(bash, "-c", probe).CombinedOutput()
		if err != nil {
			t.Fatalf("%q: %v\n%s", tc.words, err, out)
		}
		got := strings.Fields(string(out))
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("%q completes to %v, which lacks %q", tc.words, got, w)
			}
		}
	}
}

// TestHelpConfig: vsgate help config prints the configuration's keys.
func TestHelpConfig(t *testing.T) {
	var out, errb bytes.Buffer
	if got := run([]string{"help", "config"}, &out, &errb); got != 0 || !strings.Contains(out.String(), "u_threshold:") || !strings.Contains(out.String(), "marks:") {
		t.Fatalf("vsgate help config = %d:\n%s%s", got, out.String(), errb.String())
	}
	if got := run([]string{"help", "nope"}, &out, &errb); got != 2 || !strings.Contains(errb.String(), "topics: config") {
		t.Fatalf("vsgate help nope = %d: %s", got, errb.String())
	}
}
