package gateway

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestControlRoundTrip: a request reaches the handler with its arguments
// and standard input, the answer comes back; the socket is 0600; a second
// server on a live socket is refused; Close removes the socket.
func TestControlRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "vsgate.sock")
	s, err := ListenControl(path, func(ctx context.Context, r Request) Response {
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
	if _, err := ListenControl(path, nil); err == nil {
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
