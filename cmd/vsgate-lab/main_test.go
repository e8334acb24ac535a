package main

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vsgate/vsgate/internal/netlab/labtest"

	"github.com/vsgate/vsgate/internal/netlab"
)

// TestMain lets the test binary act as the vsgate binary in child
// processes (VSGATE_TEST_MAIN=1), so the CLI tests need no go build.
func TestMain(m *testing.M) {
	if os.Getenv("VSGATE_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, 2},
		{[]string{"help"}, 0},
		{[]string{"nope"}, 2},
		{[]string{"run"}, 2}, // the gateway's, not this binary's
		{[]string{"up", "nosuchtopo"}, 2},
		{[]string{"up", "basic", "ecmp"}, 2},
		{[]string{"up", "-n", "0", "clients"}, 2},
		{[]string{"exec"}, 2},
		{[]string{"clean", "a", "b"}, 2},
		{[]string{"demo", "nosuchpass"}, 2},
		{[]string{"demo", "-h"}, 0},
		{[]string{"bench", "-nosuchflag"}, 2},
	} {
		var out, errb bytes.Buffer
		if got := run(tc.args, &out, &errb); got != tc.want {
			t.Errorf("vsgate-lab %v = %d, want %d\n%s%s", tc.args, got, tc.want, out.String(), errb.String())
		}
	}
}

func TestParseInterleaved(t *testing.T) {
	for _, args := range [][]string{
		{"-kernel", "clients", "-n", "5"},
		{"clients", "-n", "5", "-kernel"},
	} {
		fs := newUpFlags()
		pos, err := parseInterleaved(fs.fs, args)
		if err != nil || len(pos) != 1 || pos[0] != "clients" || *fs.n != 5 || !*fs.kernel {
			t.Errorf("%v: pos %v n %d kernel %v err %v", args, pos, *fs.n, *fs.kernel, err)
		}
	}
}

// labUpChild starts "vsgate-lab up" (this test binary) with a fresh prefix
// and waits until it is ready. Cleanup kills it (by its PID) if it still
// runs and removes what it left.
func labUpChild(t *testing.T, extra ...string) (string, *exec.Cmd, chan error) {
	t.Helper()
	labtest.Require(t)
	labtest.Tool(t, "ip", "iproute2")
	prefix, err := netlab.NewPrefix()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], append([]string{"up", "-prefix", prefix}, extra...)...)
	cmd.Env = append(os.Environ(), "VSGATE_TEST_MAIN=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ok := false
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "stop:") && !ok {
				ok = true
				ready <- true
			}
		}
		if !ok {
			ready <- false
		}
		_, _ = io.Copy(io.Discard, stdout)
		done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
		_, _ = netlab.Clean(prefix)
		_ = os.Remove(statePath(prefix))
	})
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("lab up exited early: %s", stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("lab up not ready after 30s: %s", stderr.String())
	}
	return prefix, cmd, done
}

// waitExit waits for the child to exit and wants status 0.
func waitExit(t *testing.T, done chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("lab up exited with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("lab up did not exit")
	}
}

// assertGone wants no namespace, state file or lock of the run.
func assertGone(t *testing.T, prefix string) {
	t.Helper()
	if left := netlab.Leftovers(prefix); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	if links, err := netlab.LeftoverLinks(prefix); err != nil || len(links) > 0 {
		t.Errorf("root-namespace links: %v %v", links, err)
	}
	for _, f := range []string{statePath(prefix), netlab.RunDir + "/" + prefix + ".lock"} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s left behind", f)
		}
	}
}

// TestLabUpExecCtrlC: lab up, lab exec in a backend, Ctrl-C, nothing left.
func TestLabUpExecCtrlC(t *testing.T) {
	prefix, cmd, done := labUpChild(t)
	if _, err := os.Stat(statePath(prefix)); err != nil {
		t.Errorf("state file: %v", err)
	}
	var out, errb bytes.Buffer
	if rc := run([]string{"exec", "-prefix", prefix, "b1", "--", "ip", "-o", "addr"}, &out, &errb); rc != 0 {
		t.Fatalf("lab exec = %d: %s", rc, errb.String())
	}
	if !strings.Contains(out.String(), "198.18.2.11/24") || !strings.Contains(out.String(), "2001:db8:2::11/64") {
		t.Errorf("lab exec b1 -- ip -o addr:\n%s", out.String())
	}
	out.Reset()
	if rc := run([]string{"exec", "-prefix", prefix, "nohost", "--", "true"}, &out, &errb); rc != 1 {
		t.Errorf("lab exec to an unknown host = %d, want 1", rc)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	waitExit(t, done)
	assertGone(t, prefix)
}

// TestLabDown: lab up, then lab down PREFIX from another process.
func TestLabDown(t *testing.T) {
	prefix, _, done := labUpChild(t, "-servers=false", "ecmp")
	var out, errb bytes.Buffer
	if rc := run([]string{"down", prefix}, &out, &errb); rc != 0 {
		t.Fatalf("lab down = %d: %s%s", rc, out.String(), errb.String())
	}
	waitExit(t, done)
	assertGone(t, prefix)
}

// TestLabCleanAfterCrash: lab up is killed (SIGKILL, no cleanup); lab clean
// finds its leftovers by prefix and removes them.
func TestLabCleanAfterCrash(t *testing.T) {
	prefix, cmd, done := labUpChild(t)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done
	if len(netlab.Leftovers(prefix)) == 0 {
		t.Fatal("a killed lab up left nothing: the test proves nothing")
	}
	var out, errb bytes.Buffer
	if rc := run([]string{"clean", prefix}, &out, &errb); rc != 0 {
		t.Fatalf("lab clean = %d: %s", rc, errb.String())
	}
	assertGone(t, prefix)
}
