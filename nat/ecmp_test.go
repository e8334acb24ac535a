package nat_test

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// ecmpEngine is one of several gateways behind ECMP with the same
// configuration: a sloppy NAT service on vip (mh over two real servers),
// and, when shared, a second service whose backends are the same.
func ecmpEngine(t *testing.T, sloppy, shared bool) *nat.Engine {
	t.Helper()
	bs := []nat.Backend{{Addr: rips[0], Port: 8080, Weight: 1}, {Addr: rips[1], Port: 8080, Weight: 1}}
	svcs := []nat.Service{{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: vip.Port(), Scheduler: "mh", Sloppy: sloppy, Backends: bs, SynProxy: nat.SynProxyOff},
		{Proto: packet.ProtoUDP, VIP: vip.Addr(), Port: 53, Scheduler: "mh", Sloppy: sloppy, Backends: []nat.Backend{{Addr: rips[0], Port: 53, Weight: 1}}}}
	if shared {
		svcs = append(svcs, nat.Service{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: 8080, Scheduler: "mh", Sloppy: sloppy, Backends: bs, SynProxy: nat.SynProxyOff})
	}
	e, err := nat.New(nat.Config{Capacity: 64, ShardBits: 2, Services: svcs})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestAdoptReply: a connection opened through gateway A whose real
// server's answer reaches gateway B (ECMP, or A's restart): B translates
// the answer from the VIP and tracks the flow from then on, both ways,
// when the service is sloppy and the backend serves it alone. Otherwise
// the answer is dropped as before (real_server_no_flow), as is an answer
// that is not mid-stream (a SYN-ACK) and one from a backend that serves
// two VIPs (its VIP cannot be told).
func TestAdoptReply(t *testing.T) {
	a := ecmpEngine(t, true, false)
	rip := established(t, a.NewWorker(), client)

	b := ecmpEngine(t, true, false)
	wb := b.NewWorker()
	answer := tcpSeq(rip, client, ack, 100, 5001, 102)
	if v := one(wb, answer); v != nat.Forward {
		t.Fatalf("the real server's answer at the other gateway: verdict %v, real_server_no_flow %d", v, b.Drops(nat.DropRealServerNoFlow))
	}
	if s, d := endpoints(t, answer); s != vip || d != client {
		t.Fatalf("the answer left %v -> %v, want %v -> %v", s, d, vip, client)
	}
	if st := flowState(b, client); st != "ESTABLISHED" {
		t.Fatalf("the adopted flow is %q, want ESTABLISHED", st)
	}
	// The client's next segment, now at B, goes to the same real server.
	next := tcpSeq(client, vip, ack, 10, 102, 5101)
	if v := one(wb, next); v != nat.Forward {
		t.Fatalf("the client's next segment at the other gateway: verdict %v", v)
	}
	if _, d := endpoints(t, next); d != rip {
		t.Fatalf("the client's segment went to %v, want the flow's %v", d, rip)
	}
	if err := b.CheckInvariants(); err != nil {
		t.Fatal(err)
	}

	// UDP: the answer of a sloppy UDP service's only backend.
	udpAnswer := udp(netip.AddrPortFrom(rips[0], 53), client, 20)
	if v := one(wb, udpAnswer); v != nat.Forward {
		t.Fatalf("a UDP answer: verdict %v", v)
	}
	if s, _ := endpoints(t, udpAnswer); s != netip.AddrPortFrom(vip.Addr(), 53) {
		t.Fatalf("the UDP answer left from %v", s)
	}

	for _, tc := range []struct {
		name           string
		sloppy, shared bool
		pkt            []byte
	}{
		{"not sloppy", false, false, tcpSeq(rip, client, ack, 100, 5001, 102)},
		{"a backend of two services", true, true, tcpSeq(rip, client, ack, 100, 5001, 102)},
		{"a SYN-ACK", true, false, tcpSeq(rip, client, synack, 0, 5000, 2)},
		{"a RST", true, false, tcpSeq(rip, client, rst, 0, 5001, 0)},
	} {
		e := ecmpEngine(t, tc.sloppy, tc.shared)
		if v := one(e.NewWorker(), tc.pkt); v != nat.Drop || e.Drops(nat.DropRealServerNoFlow) != 1 || e.Flows() != 0 {
			t.Errorf("%s: verdict %v, real_server_no_flow %d, %d flows; want dropped as before", tc.name, v, e.Drops(nat.DropRealServerNoFlow), e.Flows())
		}
	}
}

// mhPicks sends 2,000 SYNs from distinct clients through a fresh engine
// with a Maglev service over ten real servers and returns where each went.
func mhPicks(t testing.TB) []string {
	var bs []nat.Backend
	for i := range 10 {
		bs = append(bs, nat.Backend{Addr: netip.AddrFrom4([4]byte{198, 18, 2, byte(11 + i)}), Port: 80, Weight: 1})
	}
	e, err := nat.New(nat.Config{Capacity: 4096, Services: []nat.Service{{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: vip.Port(),
		Scheduler: "mh", Sloppy: true, Backends: bs, SynProxy: nat.SynProxyOff}}})
	if err != nil {
		t.Fatal(err)
	}
	w := e.NewWorker()
	var out []string
	for _, b := range benchFlows(2000, 19) {
		one(w, b)
		_, d := endpoints(t, b)
		out = append(out, d.String())
	}
	return out
}

// TestMaglevAcrossProcesses: every gateway with the same configuration
// picks the same real server for a flow — here another process (this test
// binary run again), whose hash seeds and memory layout are its own.
func TestMaglevAcrossProcesses(t *testing.T) {
	if os.Getenv("VSGATE_MH_PICKS") == "1" {
		fmt.Println(strings.Join(mhPicks(t), "\n"))
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestMaglevAcrossProcesses$")
	cmd.Env = append(os.Environ(), "VSGATE_MH_PICKS=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the other process: %v", err)
	}
	theirs := strings.Split(strings.TrimSpace(string(out)), "\n")
	theirs = slices.DeleteFunc(theirs, func(l string) bool { return !strings.HasPrefix(l, "198.18.2.") }) // the child's PASS line
	ours := mhPicks(t)
	if !slices.Equal(ours, theirs) {
		t.Fatalf("%d picks here, %d there; they differ", len(ours), len(theirs))
	}
	if spread := len(slices.Compact(slices.Sorted(slices.Values(ours)))); spread != 10 {
		t.Fatalf("the flows went to %d real servers, want all 10", spread)
	}
}
