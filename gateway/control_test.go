package gateway

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestControlRoundTrip: a request reaches the handler with its arguments
// and standard input, the answer comes back; the socket is 0600; a second
// server on a live socket is refused; Close removes the socket.
func TestControlRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "vsgate.sock")
	s, err := ListenControl(path, nil, func(ctx context.Context, r Request) Response {
		return Response{Output: strings.Join(r.Args, ",") + "|" + r.Stdin, Status: len(r.Args)}
	})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	resp, err := Call(context.Background(), path, Request{Args: []string{"-L", "-n"}, Stdin: "x"})
	if err != nil || resp.Output != "-L,-n|x" || resp.Status != 2 {
		t.Fatalf("response %+v, %v", resp, err)
	}
	if _, err := ListenControl(path, nil, nil); err == nil {
		t.Fatal("a second server took a live socket")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("socket left after Close: %v", err)
	}
	if _, err := Call(context.Background(), path, Request{}); err == nil {
		t.Fatal("call to a closed gateway succeeded")
	}
}

// TestControlPeers: the socket belongs to the gateway's user, but only
// root and the user that started the gateway may send requests; any other
// user that can reach the socket (nobody, say) is refused, as ipvsadm
// refuses a user who is not root.
func TestControlPeers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test connects as another user")
	}
	nobody := &Owner{UID: 65534, GID: 65534}
	// A tree nobody may walk (t.TempDir's is root's alone), with a copy
	// of this test binary nobody may run.
	top, err := os.MkdirTemp("", "vsgate-control-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	if err := os.Chmod(top, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	helper := filepath.Join(top, "helper")
	if err := os.WriteFile(helper, self, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(top, "run")
	path := filepath.Join(dir, "vsgate.sock")
	handled := 0
	s, err := ListenControl(path, nobody, func(ctx context.Context, r Request) Response {
		handled++
		return Response{Output: "ok"}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, p := range []string{dir, path} {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil || st.Uid != 65534 || st.Gid != 65534 {
			t.Fatalf("%s owned by %d:%d (%v), want the gateway's user 65534:65534", p, st.Uid, st.Gid, err)
		}
	}
	if resp, err := Call(context.Background(), path, Request{Args: []string{"-L"}}); err != nil || resp.Output != "ok" {
		t.Fatalf("root: %+v, %v", resp, err)
	}
	// A connection from uid 65534: a child process, so that this one
	// keeps its credentials.
	cmd := exec.Command(helper, "-test.run", "^TestControlPeerHelper$")
	cmd.Env = append(os.Environ(), "VSGATE_CONTROL_PEER="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper as nobody: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Permission denied (you must be root) status 2") {
		t.Fatalf("nobody was not refused:\n%s", out)
	}
	if handled != 1 {
		t.Fatalf("the handler ran %d times, want once (root's request only)", handled)
	}
}

// TestControlPeerHelper is TestControlPeers' other user: it sends one
// request and prints the answer.
func TestControlPeerHelper(t *testing.T) {
	path := os.Getenv("VSGATE_CONTROL_PEER")
	if path == "" {
		t.Skip("run by TestControlPeers only")
	}
	resp, err := Call(context.Background(), path, Request{Args: []string{"-L"}})
	fmt.Printf("%s status %d (%v)\n", resp.Error, resp.Status, err)
}
