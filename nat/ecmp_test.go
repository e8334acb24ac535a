package nat_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/layers"

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
// the answer is dropped as before (real_server_no_flow), as is a RST and
// an answer from a backend that serves two VIPs (its VIP cannot be told).
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
		{"a SYN-ACK, not sloppy", false, false, tcpSeq(rip, client, synack, 0, 5000, 2)},
		{"a RST", true, false, tcpSeq(rip, client, rst, 0, 5001, 0)},
	} {
		e := ecmpEngine(t, tc.sloppy, tc.shared)
		if v := one(e.NewWorker(), tc.pkt); v != nat.Drop || e.Drops(nat.DropRealServerNoFlow) != 1 || e.Flows() != 0 {
			t.Errorf("%s: verdict %v, real_server_no_flow %d, %d flows; want dropped as before", tc.name, v, e.Drops(nat.DropRealServerNoFlow), e.Flows())
		}
	}
}

// TestAsymmetricHandshake: behind ECMP on both sides the two directions
// of a connection may cross different gateways: A sees the client's SYN,
// ACK and data, B the real server's SYN-ACK and data. Each translates its
// half; then A is lost and the client's segments reach B, which already
// tracks the flow from the server's side and sends them to the same real
// server. With window scaling offered by both ends (B saw only the
// server's option).
func TestAsymmetricHandshake(t *testing.T) {
	a, b := ecmpEngine(t, true, false), ecmpEngine(t, true, false)
	wa, wb := a.NewWorker(), b.NewWorker()
	synPkt := tcpOpts(client, vip, syn, 1, 0, 7)
	if v := one(wa, synPkt); v != nat.Forward {
		t.Fatalf("SYN at A: verdict %v", v)
	}
	_, rip := endpoints(t, synPkt)
	synAck := tcpOpts(rip, client, synack, 5000, 2, 7)
	if v := one(wb, synAck); v != nat.Forward {
		t.Fatalf("SYN-ACK at B: verdict %v, real_server_no_flow %d", v, b.Drops(nat.DropRealServerNoFlow))
	}
	if s, d := endpoints(t, synAck); s != vip || d != client {
		t.Fatalf("the SYN-ACK left B %v -> %v, want %v -> %v", s, d, vip, client)
	}
	for i := range 3 {
		if v := one(wa, tcpSeq(client, vip, ack, 100, 2+uint32(i)*100, 5001)); v != nat.Forward {
			t.Fatalf("the client's segment %d at A, which never saw the SYN-ACK: verdict %v, out of window %d", i, v, a.Drops(nat.DropTCPOutOfWindow))
		}
	}
	for i := range 3 { // the server's data, scaled window
		if v := one(wb, tcpSeq(rip, client, ack, 1000, 5001+uint32(i)*1000, 102)); v != nat.Forward {
			t.Fatalf("the server's data %d at B: verdict %v, out of window %d", i, v, b.Drops(nat.DropTCPOutOfWindow))
		}
	}
	// A is gone: the client's next segments reach B, with the small raw
	// window a scaled one is (502 << 7).
	next := tcpWin(client, vip, ack, 100, 302, 8001, 502)
	if v := one(wb, next); v != nat.Forward {
		t.Fatalf("the client's segment at B after A is lost: verdict %v", v)
	}
	if _, d := endpoints(t, next); d != rip {
		t.Fatalf("the client's segment went to %v at B, want %v", d, rip)
	}
	if st := flowState(b, client); st != "ESTABLISHED" {
		t.Errorf("B's flow is %q once it has seen both sides, want ESTABLISHED", st)
	}
	// The client's window is scaled (shift 7) but B never saw the SYN
	// that said so: the server's data from further back than the
	// unscaled window, and the client's acknowledgement of it, still go.
	for _, pkt := range [][]byte{tcpSeq(rip, client, ack, 1000, 5001, 402), tcpWin(client, vip, ack, 0, 402, 8001, 502)} {
		if v := one(wb, pkt); v != nat.Forward {
			t.Fatalf("a segment at B after the failover: verdict %v, out of window %d", v, b.Drops(nat.DropTCPOutOfWindow))
		}
	}
	if n := b.Drops(nat.DropTCPOutOfWindow) + a.Drops(nat.DropTCPOutOfWindow); n != 0 {
		t.Errorf("%d segments dropped out of the window", n)
	}
	for _, e := range []*nat.Engine{a, b} {
		if err := e.CheckInvariants(); err != nil {
			t.Fatal(err)
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

// tcpWin is tcpSeq with the raw window given.
func tcpWin(src, dst netip.AddrPort, flags uint8, payload int, seq, ackNum uint32, win uint16) []byte {
	t := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: seq, Ack: ackNum, Window: win,
		SYN: flags&syn != 0, ACK: flags&ack != 0, FIN: flags&packet.TCPFlagFIN != 0, RST: flags&rst != 0}
	return build(src.Addr(), dst.Addr(), layers.IPProtocolTCP, t, payload)
}

// TestStaleFlowOnReuse: behind ECMP a gateway that saw one direction of a
// connection never sees it end, and a gateway the routers send a flow to
// anew may hold an older connection's state for its ports. A new
// connection on those ports replaces it: the client's SYN at a gateway
// whose flow is stuck half-closed makes a new flow (its segments then go
// through, not out of the old window); the real server's SYN-ACK at a
// gateway whose flow is an older connection's is taken up anew. A SYN on
// a connection this gateway tracks whole (established, both sides seen)
// still changes nothing, as conntrack ignores it.
func TestStaleFlowOnReuse(t *testing.T) {
	// Gateway B saw only the real server's side of the old connection:
	// SYN-ACK, data, FIN (stuck in FIN_WAIT: the client's FIN went
	// through A).
	b := ecmpEngine(t, true, false)
	wb := b.NewWorker()
	a := ecmpEngine(t, true, false)
	synPkt := tcp(client, vip, syn, 0)
	one(a.NewWorker(), synPkt)
	_, rip := endpoints(t, synPkt)
	for _, pkt := range [][]byte{tcpSeq(rip, client, synack, 0, 5000, 2), tcpSeq(rip, client, ack, 100, 5001, 2), tcpSeq(rip, client, finack, 0, 5101, 2)} {
		if v := one(wb, pkt); v != nat.Forward {
			t.Fatalf("the old connection's server segment at B: %v", v)
		}
	}
	if st := flowState(b, client); st != "FIN_WAIT" {
		t.Fatalf("B's old flow is %q, want FIN_WAIT", st)
	}
	// The new connection's SYN-ACK (another ISN, acknowledging a new
	// client ISN) at B: taken up anew, and its data goes through.
	if v := one(wb, tcpSeq(rip, client, synack, 0, 900000, 70001)); v != nat.Forward {
		t.Fatalf("the new connection's SYN-ACK at B: %v", v)
	}
	if st := flowState(b, client); st != "SYNACK" {
		t.Errorf("B's flow after the new SYN-ACK is %q, want SYNACK (taken up anew)", st)
	}
	// Now the routers send the client's side to B too (a gateway left).
	for i, pkt := range [][]byte{tcpWin(client, vip, ack, 100, 70001, 900001, 502), tcpSeq(rip, client, ack, 1000, 900001, 70101), tcpWin(client, vip, ack, 0, 70101, 901001, 502)} {
		if v := one(wb, pkt); v != nat.Forward {
			t.Fatalf("segment %d of the new connection at B: %v, out of window %d", i, v, b.Drops(nat.DropTCPOutOfWindow))
		}
	}

	// Gateway C saw the client's side of the old connection stuck
	// half-open; the new connection's SYN (another ISN) makes a new flow.
	c := ecmpEngine(t, true, false)
	wc := c.NewWorker()
	one(wc, tcpSeq(client, vip, syn, 0, 1, 0))
	one(wc, tcpSeq(client, vip, ack, 100, 2, 5001))
	if v := one(wc, tcpSeq(client, vip, syn, 0, 80000, 0)); v != nat.Forward {
		t.Fatalf("the new SYN at C: %v", v)
	}
	if v := one(wc, tcpWin(client, vip, ack, 100, 80001, 600001, 502)); v != nat.Forward {
		t.Fatalf("the new connection's data at C: %v, out of window %d", v, c.Drops(nat.DropTCPOutOfWindow))
	}

	// A connection tracked whole: a SYN with another ISN changes nothing.
	d := ecmpEngine(t, true, false)
	wd := d.NewWorker()
	established(t, wd, client)
	flowsBefore := d.Flows()
	one(wd, tcpSeq(client, vip, syn, 0, 123456, 0))
	if st := flowState(d, client); st != "ESTABLISHED" || d.Flows() != flowsBefore {
		t.Errorf("a SYN on a connection tracked whole: state %q, %d flows (was %d)", st, d.Flows(), flowsBefore)
	}
	if v := one(wd, tcpSeq(client, vip, ack, 10, 102, 5001)); v != nat.Forward {
		t.Errorf("the tracked connection's next segment after the SYN: %v", v)
	}
	for _, e := range []*nat.Engine{a, b, c, d} {
		if err := e.CheckInvariants(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFlowCameBack: gateway A tracks a connection whole; the routers send
// it through other gateways while it moves on by more than a window each
// way, then back to A. On a sloppy service A takes it up again from the
// first segment ahead of its stale window (no drop, no stall) and tracks
// it from there: a blind RST closes nothing, the exact one does, and a
// segment ahead with a bad checksum or a RST ahead is not taken. Without
// sloppy the stale window holds (conntrack's behaviour): out of window.
func TestFlowCameBack(t *testing.T) {
	const moved = 300000 // bytes each way meanwhile: more than a window
	for _, sloppy := range []bool{true, false} {
		a := ecmpEngine(t, sloppy, false)
		w := a.NewWorker()
		rip := established(t, w, client)
		// The client sent up to 102 and the server up to 5001 through A.
		cseq, sseq := uint32(102+moved), uint32(5001+moved)
		if v := one(w, corrupt(tcpSeq(client, vip, ack, 100, cseq, sseq))); v != nat.Drop {
			t.Fatalf("sloppy %v: a segment ahead with a bad checksum: %v", sloppy, v)
		}
		if v := one(w, tcpSeq(client, vip, rst, 0, cseq, 0)); v != nat.Drop || flowState(a, client) != "ESTABLISHED" {
			t.Fatalf("sloppy %v: a RST ahead: %v, flow %q", sloppy, v, flowState(a, client))
		}
		outBefore := a.Drops(nat.DropTCPOutOfWindow)
		v := one(w, tcpSeq(client, vip, ack, 100, cseq, sseq))
		if !sloppy {
			if v != nat.Drop || a.Drops(nat.DropTCPOutOfWindow) == 0 {
				t.Fatalf("not sloppy: the segment ahead: %v, out of window %d; want dropped", v, a.Drops(nat.DropTCPOutOfWindow))
			}
			continue
		}
		if v != nat.Forward {
			t.Fatalf("the client's segment back at A: %v, out of window %d", v, a.Drops(nat.DropTCPOutOfWindow))
		}
		if v := one(w, tcpSeq(rip, client, ack, 1000, sseq, cseq+100)); v != nat.Forward {
			t.Fatalf("the server's segment back at A: %v, out of window %d", v, a.Drops(nat.DropTCPOutOfWindow))
		}
		if n := a.Drops(nat.DropTCPOutOfWindow); n != outBefore {
			t.Fatalf("out of window %d after the flow came back, was %d", n, outBefore)
		}
		if n := a.Drops(nat.DropBadChecksum); n != 1 {
			t.Fatalf("bad checksum %d, want 1 (the corrupt segment ahead)", n)
		}
		one(w, tcpSeq(client, vip, rst, 0, cseq+5, 0))
		if st := flowState(a, client); st != "ESTABLISHED" {
			t.Fatalf("a blind RST after the flow came back: %q", st)
		}
		if v := one(w, tcpSeq(client, vip, rst, 0, cseq+100, 0)); v != nat.Forward || flowState(a, client) != "CLOSE" {
			t.Fatalf("the exact RST: %v, flow %q; want forwarded, CLOSE", v, flowState(a, client))
		}
		if err := a.CheckInvariants(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDirectRouting: a DR service's packets go on unchanged, with the
// real server to send them to (Route, Via); the client's ACK establishes
// the flow without a SYN-ACK (IPVS's input-only table); the real
// server's port must be the VIP's.
func TestDirectRouting(t *testing.T) {
	bs := []nat.Backend{{Addr: rips[0], Port: vip.Port(), Weight: 1}, {Addr: rips[1], Port: vip.Port(), Weight: 1}}
	e, err := nat.New(nat.Config{Capacity: 64, Services: []nat.Service{{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: vip.Port(), Mode: nat.ModeDR, Scheduler: "rr", Backends: bs}}})
	if err != nil {
		t.Fatal(err)
	}
	w := e.NewWorker()
	pkts := [][]byte{tcp(client, vip, syn, 0), tcp(netip.AddrPortFrom(client.Addr(), 40001), vip, syn, 0)}
	orig := [][]byte{append([]byte(nil), pkts[0]...), append([]byte(nil), pkts[1]...)}
	v := make([]nat.Verdict, 2)
	w.Process(pkts, v)
	for i := range pkts {
		if v[i] != nat.Route {
			t.Fatalf("SYN %d: verdict %v, want route", i, v[i])
		}
		if !bytes.Equal(pkts[i], orig[i]) {
			t.Errorf("SYN %d was changed", i)
		}
	}
	if w.Via(0) == w.Via(1) || (w.Via(0) != rips[0] && w.Via(0) != rips[1]) {
		t.Errorf("vias %v %v: want both real servers (rr)", w.Via(0), w.Via(1))
	}
	first := w.Via(0)
	if v := one(w, tcp(client, vip, ack, 0)); v != nat.Route || w.Via(0) != first {
		t.Fatalf("the client's ACK: %v via %v, want route via %v", v, w.Via(0), first)
	}
	if st := flowState(e, client); st != "ESTABLISHED" {
		t.Errorf("after the client's ACK the flow is %q, want ESTABLISHED (input only)", st)
	}
	if v := one(w, tcpSeq(client, vip, ack, 100, 2, 777777)); v != nat.Route {
		t.Errorf("the client's data (acknowledging what only the real server knows): %v", v)
	}
	if err := e.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
	bs[0].Port = 8080
	if _, err := nat.New(nat.Config{Capacity: 64, Services: []nat.Service{{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: vip.Port(), Mode: nat.ModeDR, Scheduler: "rr", Backends: bs}}}); err == nil {
		t.Error("a DR real server on another port than the VIP's: accepted")
	}
}
