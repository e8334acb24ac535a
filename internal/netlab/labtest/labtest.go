// Package labtest is what tests that build netlab labs or run system tools
// share: the one rule for when such a test may skip (not as root). It is for tests only; it imports
// testing, which the vsgate binary must not link.
package labtest

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/vsgate/vsgate/internal/netlab"
)

// Require skips tb when the process is not root (labs need network
// namespaces), and fails it when it is root and a lab still cannot be
// built: as root, a lab that cannot be built is a broken machine or a
// bug, never a reason to pass by skipping.
func Require(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: netlab builds network namespaces")
	}
	if err := netlab.Check(); err != nil {
		tb.Fatalf("running as root, yet no lab can be built: %v", err)
	}
}

// Tool makes sure the command name (from the Debian package pkg) is there:
// it skips tb without it when the process is not root, and fails it as
// root, where make test installs every tool the tests use (.ci/deps): as
// root a missing tool is a setup to mend, never a reason to pass by
// skipping.
func Tool(tb testing.TB, name, pkg string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Geteuid() == 0 {
		tb.Fatalf("%s not found, running as root: make test (or make deps) installs the Debian package %s", name, pkg)
	}
	tb.Skipf("%s not found (the Debian package %s; make deps as root installs it)", name, pkg)
	return ""
}

// Pair builds the lab of two hosts, "a" and "b", on one veth pair (the
// interfaces' suffixes "a" and "b"), with the addresses given and host
// a's sysctls, and removes it when the test ends; without root it skips
// the test.
func Pair(tb testing.TB, name string, aAddrs, bAddrs []netip.Prefix, aSysctls ...netlab.Sysctl) *netlab.Lab {
	tb.Helper()
	return PairQueues(tb, name, 1, aAddrs, bAddrs, aSysctls...)
}

// PairQueues is Pair with queues receive and transmit queues on each end
// of the veth pair.
func PairQueues(tb testing.TB, name string, queues int, aAddrs, bAddrs []netip.Prefix, aSysctls ...netlab.Sysctl) *netlab.Lab {
	tb.Helper()
	topo := &netlab.Topology{
		Name:  name,
		Hosts: []netlab.HostSpec{{Name: "a", Sysctls: aSysctls}, {Name: "b"}},
		Links: []netlab.LinkSpec{{
			A:      netlab.Endpoint{Host: "a", Name: "a", Addrs: aAddrs},
			B:      netlab.Endpoint{Host: "b", Name: "b", Addrs: bAddrs},
			Queues: queues,
		}},
	}
	return Build(tb, topo)
}

// Build builds the lab of topo for tb and removes it when the test ends;
// without root it skips the test (Require).
func Build(tb testing.TB, topo *netlab.Topology) *netlab.Lab {
	tb.Helper()
	Require(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lab, err := netlab.Build(ctx, topo, netlab.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := lab.Close(); err != nil {
			tb.Error(err)
		}
	})
	return lab
}

// Arrival is one frame of flow Flow, read by socket Socket: what the
// tests of fanout and of queue steering collect.
type Arrival struct{ Flow, Socket int }

// FlowsTogether takes n arrivals from got, within 10 s, and fails tb if
// a flow reached two sockets, or if one of the sockets got no frame (the
// flows did not spread).
func FlowsTogether(tb testing.TB, got <-chan Arrival, n, sockets int) {
	tb.Helper()
	socketOf := map[int]int{}
	perSocket := make([]int, sockets)
	timeout := time.After(10 * time.Second)
	for range n {
		select {
		case a := <-got:
			if s, seen := socketOf[a.Flow]; seen && s != a.Socket {
				tb.Fatalf("flow %d reached sockets %d and %d", a.Flow, s, a.Socket)
			}
			socketOf[a.Flow] = a.Socket
			perSocket[a.Socket]++
		case <-timeout:
			tb.Fatalf("only frames of %d flows arrived: %v per socket", len(socketOf), perSocket)
		}
	}
	for s, k := range perSocket {
		if k == 0 {
			tb.Errorf("socket %d got none of %d flows' frames: %v per socket", s, len(socketOf), perSocket)
		}
	}
}
