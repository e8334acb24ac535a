package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vsgate/vsgate/internal/netlab/labtest"
)

// TestDemo runs every demo step against vsgate on TUN (TUNSteps) in netlab and
// asserts each one. It builds the vsgate binary first (without cgo, as
// make build does, so it drops its capabilities).
//
// The gateway runs with offloads (device.offloads: true), the default of
// the demo; TestBulkOffloads runs the bulk steps without them.
func TestDemo(t *testing.T) {
	runSteps(t, Options{}, TUNSteps())
}

// TestDemoAFPacket runs every demo step against vsgate in AF_PACKET mode
// on netlab's "l2" topology: the gateway's kernel forwards nothing, and
// vsgate answers ARP/ND for the VIPs and the servers' gateway itself.
func TestDemoAFPacket(t *testing.T) {
	runSteps(t, Options{AFPacket: true}, AFPacketSteps())
}

// TestDemoAFXDP runs every demo step against vsgate with its frames
// through AF_XDP (device.type: afxdp) on the "l2" topology.
func TestDemoAFXDP(t *testing.T) {
	runSteps(t, Options{AFPacket: true, XDP: true}, AFXDPSteps())
}

// TestL7Netstack runs the L7 steps with the L7 services on gVisor's
// netstack (l7.stack: netstack): TestDemo runs them on the kernel's TCP.
func TestL7Netstack(t *testing.T) {
	runSteps(t, Options{Netstack: true}, L7Steps())
}

// TestHandbook replays the virtual-server handbook: its ipmasqadm and
// ipchains lines typed into vsgate adm as written, its test of method 2,
// its telnet case, the -d masquerade with a real server that has no route
// back, its ProxyPass lines, and names from the namespaces' hosts files
// in both families.
func TestHandbook(t *testing.T) {
	runSteps(t, Options{Handbook: true}, HandbookSteps())
}

// TestBulkOffloads runs the bulk steps (TCP over IPv4 and IPv6, UDP) with
// offloads off: TestDemo runs them with offloads on.
func TestBulkOffloads(t *testing.T) {
	runSteps(t, Options{NoOffloads: true}, BulkSteps())
}

// runSteps builds vsgate, starts the demo with opts and runs steps.
func runSteps(t *testing.T, opts Options, steps []Step) {
	if testing.Short() {
		t.Skip("end-to-end: not in -short")
	}
	exe := buildVsgate(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	labtest.Require(t)
	e, err := StartWith(ctx, exe, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	for _, r := range RunSteps(ctx, e, steps, nil) {
		if r.Err != nil {
			t.Errorf("%s: %v\n%s", r.Step, r.Err, r.Detail)
		} else {
			t.Logf("ok   %s (%v): %s", r.Step, r.Took.Round(time.Millisecond), r.Detail)
		}
	}
	if t.Failed() {
		t.Logf("vsgate log:\n%s", e.Log())
	}
}

// TestECMPFailover runs the scale-out demo (ECMPSteps): vsgate on
// gateways behind FRR routers, killed, restarted, stopped and joined under
// long-lived connections and a request stream, with no connection broken.
func TestECMPFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: not in -short")
	}
	exe := buildVsgate(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	labtest.Require(t)
	e, err := StartECMP(ctx, exe, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	RunECMPSteps(ctx, e, ECMPSteps(), func(r Result) {
		if r.Err != nil {
			t.Errorf("%s: %v\n%s", r.Step, r.Err, r.Detail)
		} else {
			t.Logf("ok   %s (%v): %s", r.Step, r.Took.Round(time.Millisecond), r.Detail)
		}
	})
	if t.Failed() {
		for i := range 3 {
			t.Logf("gateway %d's log:\n%s", i+1, e.GatewayLog(i))
		}
	}
}

// buildVsgate builds the vsgate binary without cgo, as make build does
// (so it drops its capabilities), into the test's directory.
func buildVsgate(t *testing.T) string {
	exe := filepath.Join(t.TempDir(), "vsgate")
	build := exec.Command("go", "build", "-o", exe, "github.com/vsgate/vsgate/cmd/vsgate")
	build.Env = append(build.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building vsgate: %v\n%s", err, out)
	}
	return exe
}

// TestDirectRouting runs DirectRouting: vsgate in AF_PACKET mode sends
// the client's packets unchanged to the real servers' MACs, and their
// answers do not cross the gateway.
func TestDirectRouting(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: not in -short")
	}
	exe := buildVsgate(t)
	labtest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := DirectRouting(ctx, exe)
	if err != nil {
		t.Fatalf("%v\n%s", err, d)
	}
	t.Log(d)
}
