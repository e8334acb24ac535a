package privilege

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMask(t *testing.T) {
	for _, tc := range []struct {
		caps []Cap
		want string
	}{
		{nil, "0000000000000000"},
		{[]Cap{unix.CAP_NET_ADMIN}, "0000000000001000"},
		{[]Cap{unix.CAP_NET_ADMIN, unix.CAP_NET_RAW}, "0000000000003000"},
		{[]Cap{40}, "0000010000000000"},
	} {
		if got := Mask(tc.caps); got != tc.want {
			t.Errorf("Mask(%v) = %s, want %s", tc.caps, got, tc.want)
		}
	}
}

func TestLookup(t *testing.T) {
	root, err := Lookup("root")
	if err != nil || root.UID != 0 || root.GID != 0 || root.Name != "root" {
		t.Fatalf("Lookup(root) = %+v, %v", root, err)
	}
	if byNumber, err := Lookup("0"); err != nil || byNumber != root {
		t.Fatalf("Lookup(0) = %+v, %v, want %+v", byNumber, err, root)
	}
	if _, err := Lookup("no-such-user-here"); err == nil || !strings.Contains(err.Error(), "no such user") {
		t.Fatalf("Lookup of a missing user: %v", err)
	}
}

// TestDropRefusesRoot: Drop never "drops" to root.
func TestDropRefusesRoot(t *testing.T) {
	if err := Drop(Identity{Name: "root"}, nil); err == nil || !strings.Contains(err.Error(), "not root") {
		t.Fatalf("Drop to root: %v", err)
	}
}

// TestDrop runs a binary (built without cgo, as vsgate is) that drops to
// nobody keeping CAP_NET_ADMIN, and checks what /proc says of it and
// that it cannot get root, a capability or a root-only file back; then
// that under the seccomp filter a call outside the list fails, calls in
// it work, and every thread is filtered.
func TestDrop(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: dropping privileges starts from root")
	}
	nobody, err := Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	exe := filepath.Join(dir, "dropper")
	build := exec.Command("go", "build", "-o", exe, "./testdata/dropper")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the dropper: %v\n%s", err, out)
	}
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("root only"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "nobody", secret)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	var out strings.Builder
	lines := bufio.NewScanner(stdout)
	for lines.Scan() && lines.Text() != "ready" {
		out.WriteString(lines.Text() + "\n")
	}
	for _, want := range []string{"dropped", "setuid 0: operation not permitted", "capset CAP_SYS_ADMIN: operation not permitted", "read root's file: true",
		"confined", "execve /bin/true: operation not permitted", "sysinfo: operation not permitted", "getpid: true", "a new thread reads /proc: true"} {
		if !strings.Contains(out.String(), want+"\n") {
			t.Errorf("dropper output lacks %q:\n%s", want, out.String())
		}
	}
	// Every thread, as /proc shows it.
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	ids := fmt.Sprintf("%d\t%[1]d\t%[1]d\t%[1]d", nobody.UID)
	gids := fmt.Sprintf("%d\t%[1]d\t%[1]d\t%[1]d", nobody.GID)
	read := 0
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", cmd.Process.Pid, task.Name()))
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			// The thread exited after the listing: the runtime lets
			// idle threads go.
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		read++
		fields := map[string]string{}
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok {
				fields[k] = strings.TrimSpace(v)
			}
		}
		for k, want := range map[string]string{"Uid": ids, "Gid": gids, "Groups": "",
			"CapInh": "0000000000001000", "CapPrm": "0000000000001000", "CapEff": "0000000000001000",
			"CapBnd": "0000000000000000", "CapAmb": "0000000000001000", "NoNewPrivs": "1", "Seccomp": "2"} {
			if fields[k] != want {
				t.Errorf("thread %s: /proc status %s %q, want %q", task.Name(), k, fields[k], want)
			}
		}
	}
	if read < 2 {
		t.Errorf("%d of the dropper's threads read: the test shows nothing about the others", read)
	}
}
