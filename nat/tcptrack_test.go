package nat_test

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// flowState is the state of the only flow from c, or "" if none.
func flowState(e *nat.Engine, c netip.AddrPort) string {
	for f := range e.AllFlows() {
		if f.OrigSrc == c {
			return f.State
		}
	}
	return ""
}

// corrupt breaks b's TCP checksum.
func corrupt(b []byte) []byte {
	var p packet.Parsed
	packet.Parse(b, &p)
	b[p.L4Off+16] ^= 0x55
	return b
}

// TestSpoofedHandshake: a SYN and an ACK from a spoofed source do not make
// an established flow, whatever the ACK: one with a bad checksum is
// dropped and counted; one before the real server's SYN-ACK leaves the
// flow half-open; one after it that acknowledges what the real server
// never sent is out of the window. Only the real handshake establishes.
func TestSpoofedHandshake(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	one(w, tcp(client, vip, syn, 0))
	if v := one(w, corrupt(tcp(client, vip, ack, 0))); v != nat.Drop || e.Drops(nat.DropBadChecksum) != 1 {
		t.Fatalf("bad-checksum ACK: verdict %v, bad_checksum %d", v, e.Drops(nat.DropBadChecksum))
	}
	one(w, tcp(client, vip, ack, 0))
	if st := flowState(e, client); st != "SYN_RECV" {
		t.Fatalf("SYN and ACK without the real server's SYN-ACK: %s, want SYN_RECV", st)
	}
	b := tcp(client, vip, syn, 0)
	one(w, b)
	_, rip := endpoints(t, b)
	one(w, tcpSeq(rip, client, synack, 0, 5000, 2))
	if st := flowState(e, client); st != "SYNACK" {
		t.Fatalf("after the SYN-ACK: %s, want SYNACK", st)
	}
	// A blind ACK: the real server's sequence number is unknown to the
	// attacker; this one acknowledges 1,000,000 bytes it never sent.
	if v := one(w, tcpSeq(client, vip, ack, 0, 2, 1_000_000)); v != nat.Drop || e.Drops(nat.DropTCPOutOfWindow) != 1 {
		t.Fatalf("blind ACK: verdict %v, tcp_out_of_window %d", v, e.Drops(nat.DropTCPOutOfWindow))
	}
	if st := flowState(e, client); st != "SYNACK" {
		t.Fatalf("after a blind ACK: %s, want SYNACK", st)
	}
	// A SYN-ACK that does not answer the SYN is refused too.
	if v := one(w, tcpSeq(rip, client, synack, 0, 7000, 99)); v != nat.Drop {
		t.Fatalf("a SYN-ACK acknowledging 99 for a SYN of 1: verdict %v", v)
	}
	if v := one(w, tcpSeq(client, vip, ack, 0, 2, 5001)); v != nat.Forward {
		t.Fatalf("the real ACK: verdict %v", v)
	}
	if st := flowState(e, client); st != "ESTABLISHED" {
		t.Fatalf("after the real handshake: %s, want ESTABLISHED", st)
	}
}

// established opens a flow through the whole handshake (client ISN 1,
// server ISN 5000) and returns the real server.
func established(t *testing.T, w *nat.Worker, c netip.AddrPort) netip.AddrPort {
	t.Helper()
	b := tcp(c, vip, syn, 0)
	if one(w, b) != nat.Forward {
		t.Fatal("SYN not forwarded")
	}
	_, rip := endpoints(t, b)
	if one(w, tcpSeq(rip, c, synack, 0, 5000, 2)) != nat.Forward || one(w, tcpSeq(c, vip, ack, 100, 2, 5001)) != nat.Forward {
		t.Fatal("handshake not forwarded")
	}
	// The server acknowledges the 100 bytes.
	if one(w, tcpSeq(rip, c, ack, 0, 5001, 102)) != nat.Forward {
		t.Fatal("server ACK not forwarded")
	}
	return rip
}

// TestServerAckDoesNotEstablish: after a (spoofed) client's SYN and the
// real server's SYN-ACK, a pure ACK from the real server — which it sends
// to a half-open connection's out-of-window segment — does not establish
// the flow; the client's ACK of the SYN-ACK does.
func TestServerAckDoesNotEstablish(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	b := tcp(client, vip, syn, 0)
	if one(w, b) != nat.Forward {
		t.Fatal("SYN not forwarded")
	}
	_, rip := endpoints(t, b)
	if one(w, tcpSeq(rip, client, synack, 0, 5000, 2)) != nat.Forward {
		t.Fatal("SYN-ACK not forwarded")
	}
	if v := one(w, tcpSeq(rip, client, ack, 0, 5001, 2)); v != nat.Forward {
		t.Fatalf("the server's ACK: %v", v)
	}
	if st := flowState(e, client); st != "SYNACK" {
		t.Fatalf("after the server's pure ACK the flow is %s, want SYNACK", st)
	}
	if one(w, tcpSeq(client, vip, ack, 0, 2, 5001)) != nat.Forward || flowState(e, client) != "ESTABLISHED" {
		t.Fatalf("the client's ACK: flow %s, want ESTABLISHED", flowState(e, client))
	}
}

// TestBlindRST: RSTs with guessed sequence numbers close nothing: one out
// of the window is dropped; one inside the window but not exact (ahead of
// or behind what the receiver expects) goes on to the endpoint (which
// answers with its challenge ACK, RFC 5961 §3.2, or ignores it) and leaves
// the flow established; the exact one closes it.
func TestBlindRST(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	rip := established(t, w, client)
	// From the client's side (to the VIP): the server expects 102.
	for _, tc := range []struct {
		seq    uint32
		want   nat.Verdict
		reason nat.DropReason
	}{
		{3_000_000_000, nat.Drop, nat.DropTCPOutOfWindow},
		{50, nat.Forward, 0},
		{102 + 3000, nat.Forward, 0},
	} {
		before := e.Drops(tc.reason)
		if v := one(w, tcpSeq(client, vip, rst, 0, tc.seq, 0)); v != tc.want || tc.want == nat.Drop && e.Drops(tc.reason) != before+1 {
			t.Errorf("RST seq %d: verdict %v, %v %d", tc.seq, v, tc.reason, e.Drops(tc.reason))
		}
		if st := flowState(e, client); st != "ESTABLISHED" {
			t.Fatalf("RST seq %d moved the flow to %s", tc.seq, st)
		}
	}
	// A random flood of RSTs at the flow: none closes it.
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		seq := r.Uint32()
		if seq == 102 || seq == 5001 {
			continue
		}
		one(w, tcpSeq(client, vip, rst, 0, seq, 0))
		one(w, tcpSeq(rip, client, rst, 0, seq, 0))
	}
	if st := flowState(e, client); st != "ESTABLISHED" {
		t.Fatalf("10,000 random RSTs each way moved the flow to %s", st)
	}
	if v := one(w, tcpSeq(client, vip, rst, 0, 102, 0)); v != nat.Forward {
		t.Fatalf("exact RST: verdict %v", v)
	}
	if st := flowState(e, client); st != "CLOSE" {
		t.Fatalf("the exact RST left the flow %s, want CLOSE", st)
	}
}

// TestFINOutOfWindow: a FIN far outside the window is dropped and changes
// nothing; one in it moves the state.
func TestFINOutOfWindow(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	established(t, w, client)
	if v := one(w, tcpSeq(client, vip, finack, 0, 2_000_000_000, 5001)); v != nat.Drop {
		t.Fatalf("blind FIN: verdict %v", v)
	}
	if st := flowState(e, client); st != "ESTABLISHED" {
		t.Fatalf("blind FIN moved the flow to %s", st)
	}
	if v := one(w, tcpSeq(client, vip, finack, 0, 102, 5001)); v != nat.Forward {
		t.Fatalf("real FIN: verdict %v", v)
	}
	if st := flowState(e, client); st != "CLOSE_WAIT" {
		t.Fatalf("real FIN: %s, want CLOSE_WAIT", st)
	}
}

// TestTCPLiberal: with the window check off (globally or per service) a
// segment out of the window passes; state changes still need the flags.
func TestTCPLiberal(t *testing.T) {
	for _, global := range []bool{true, false} {
		cfg := nat.Config{Capacity: 64, TCPLiberal: global, Services: []nat.Service{{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: vip.Port(),
			Scheduler: "rr", TCPLiberal: !global, Backends: []nat.Backend{{Addr: rips[0], Port: 8080, Weight: 1}}}}}
		e, err := nat.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		w := e.NewWorker()
		established(t, w, client)
		if v := one(w, tcpSeq(client, vip, ack, 10, 3_000_000_000, 5001)); v != nat.Forward {
			t.Errorf("liberal (global %v): a segment out of the window: verdict %v", global, v)
		}
	}
}

// TestChecksumVouched: a segment whose checksum the device vouched for
// (virtio-net DATA_VALID or NEEDS_CSUM) is not checked again; without the
// device's word a bad one is dropped.
func TestChecksumVouched(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	v := make([]nat.Verdict, 1)
	w.ProcessMeta([][]byte{corrupt(tcp(client, vip, syn, 0))}, []nat.Meta{{ChecksumOK: true}}, v)
	if v[0] != nat.Forward {
		t.Fatalf("a vouched-for SYN: verdict %v", v[0])
	}
	c2 := netip.AddrPortFrom(client.Addr(), 40001)
	if got := one(w, corrupt(tcp(c2, vip, syn, 0))); got != nat.Drop || e.Drops(nat.DropBadChecksum) != 1 {
		t.Fatalf("a bad SYN: verdict %v, bad_checksum %d", got, e.Drops(nat.DropBadChecksum))
	}
	if flowState(e, c2) != "" {
		t.Fatal("a SYN with a bad checksum made a flow")
	}
}

// TestWindowScale: with window scaling agreed in the SYNs, a segment as
// far ahead as the scaled window allows is in it; unscaled it would not
// be.
func TestWindowScale(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	b := tcpOpts(client, vip, syn, 1, 0, 7)
	one(w, b)
	_, rip := endpoints(t, b)
	one(w, tcpOpts(rip, client, synack, 5000, 2, 7))
	one(w, tcpSeq(client, vip, ack, 0, 2, 5001)) // window 65535 << 7 from here on
	// 4 MB ahead of the server's ISN: inside 65535<<7 (8 MB), far
	// outside an unscaled 64 KB.
	if v := one(w, tcpSeq(rip, client, ack, 10, 5001+4_000_000, 2)); v != nat.Forward {
		t.Fatalf("a segment within the scaled window: verdict %v", v)
	}
}

// FuzzTCPTrack drives one flow with segments whose flags, sequence and
// acknowledgement numbers come from the input, in both directions, after
// a real handshake. Properties: no panic; every verdict is forward or
// drop; the flow's state moves only along the state table (it stays one
// of IPVS's TCP states, and never back from CLOSE to ESTABLISHED without
// a new SYN).
func FuzzTCPTrack(f *testing.F) {
	f.Add([]byte{0x10, 0, 0, 0, 102, 0, 0, 0x13, 0x89, 0x04, 0, 0, 0, 102})
	f.Add([]byte{0x11, 0, 0, 0, 102, 0, 0, 0x13, 0x89, 0x91, 0, 0, 0x13, 0x89})
	f.Fuzz(func(t *testing.T, in []byte) {
		e := engine(t, nat.ModeNAT, 16)
		w := e.NewWorker()
		rip := established(t, w, client)
		prev := "ESTABLISHED"
		for len(in) >= 7 {
			flags := in[0] & (syn | ack | rst | packet.TCPFlagFIN)
			seq := uint32(in[1])<<24 | uint32(in[2])<<16 | uint32(in[3])<<8 | uint32(in[4])
			ackNum := uint32(in[5])<<8 | uint32(in[6])
			var b []byte
			if in[0]&0x80 != 0 {
				b = tcpSeq(rip, client, flags, int(in[0]>>5&3), seq, ackNum)
			} else {
				b = tcpSeq(client, vip, flags, int(in[0]>>5&3), seq, ackNum)
			}
			in = in[7:]
			if v := one(w, b); v != nat.Forward && v != nat.Drop && v != nat.Reply {
				t.Fatalf("verdict %v", v)
			}
			st := flowState(e, client)
			switch st {
			case "", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "SYNACK", "FIN_WAIT", "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "NONE":
			default:
				t.Fatalf("state %q", st)
			}
			if (prev == "CLOSE" || prev == "TIME_WAIT") && st == "ESTABLISHED" && flags&syn == 0 {
				t.Fatalf("%s to ESTABLISHED without a SYN (flags %x)", prev, flags)
			}
			prev = st
		}
		if err := e.CheckInvariants(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestSYNOnLiveFlow: a SYN at an established flow (blind, or a late
// duplicate) is forwarded without moving the window: the connection goes
// on; on a closed flow (TIME_WAIT) it starts a new connection.
func TestSYNOnLiveFlow(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	rip := established(t, w, client)
	one(w, tcpSeq(client, vip, syn, 0, 2_000_000_000, 0))
	if v := one(w, tcpSeq(client, vip, ack, 10, 102, 5001)); v != nat.Forward {
		t.Fatalf("data after a blind SYN: %v", v)
	}
	if v := one(w, tcpSeq(rip, client, ack, 0, 5001, 112)); v != nat.Forward {
		t.Fatalf("the server's ACK after a blind SYN: %v", v)
	}
	if st := flowState(e, client); st != "ESTABLISHED" {
		t.Fatalf("state %s", st)
	}
}

// TestSYNData: a SYN-ACK that acknowledges only the SYN of a SYN that
// carried data (TCP Fast Open, the data ignored) is the SYN's answer.
func TestSYNData(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	b := tcp(client, vip, syn, 10)
	one(w, b)
	_, rip := endpoints(t, b)
	if v := one(w, tcpSeq(rip, client, synack, 0, 5000, 2)); v != nat.Forward {
		t.Fatalf("SYN-ACK acknowledging the SYN but not its data: %v", v)
	}
}

// TestAdoptedScale: a flow taken up mid-stream (sloppy) has no known
// window scale; segments beyond its unscaled window are not dropped.
func TestAdoptedScale(t *testing.T) {
	e, err := nat.New(nat.Config{Capacity: 16, Services: []nat.Service{{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: vip.Port(),
		Scheduler: "rr", Sloppy: true, Backends: []nat.Backend{{Addr: rips[0], Port: 8080, Weight: 1}}}}})
	if err != nil {
		t.Fatal(err)
	}
	w := e.NewWorker()
	b := tcpSeq(client, vip, ack, 0, 1000, 9000)
	if one(w, b) != nat.Forward {
		t.Fatal("adoption refused")
	}
	_, rip := endpoints(t, b)
	for i := range 5 {
		if v := one(w, tcpSeq(rip, client, ack, 1400, 9000+uint32(i)*1400, 1000)); v != nat.Forward {
			t.Fatalf("server segment %d of an adopted flow: %v", i, v)
		}
	}
}

// TestSynReopensClosedFlow: a client that opens a new connection on the
// ports of a flow in CLOSE (or TIME_WAIT) gets a new flow, scheduled
// afresh (IPVS's conn_reuse_mode 1, conntrack's kill of the old entry),
// not the old flow's real server; a SYN on a live flow changes nothing.
func TestSynReopensClosedFlow(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	first := established(t, w, client)
	b := tcpSeq(client, vip, syn, 0, 7000, 0)
	if v := one(w, b); v != nat.Forward {
		t.Fatalf("SYN on a live flow: verdict %v", v)
	}
	if _, d := endpoints(t, b); d != first {
		t.Fatalf("SYN on a live flow went to %v, want the flow's %v", d, first)
	}
	if v := one(w, tcpSeq(client, vip, rst, 0, 102, 0)); v != nat.Forward || flowState(e, client) != "CLOSE" {
		t.Fatalf("exact RST: verdict %v, flow %s", v, flowState(e, client))
	}
	b = tcpSeq(client, vip, syn, 0, 9000, 0)
	if v := one(w, b); v != nat.Forward {
		t.Fatalf("SYN on the closed flow's ports: verdict %v", v)
	}
	if _, d := endpoints(t, b); d == first {
		t.Fatalf("the new connection went to the old flow's %v: not scheduled afresh", d)
	}
	if st := flowState(e, client); st != "SYN_RECV" && st != "SYN_SENT" {
		t.Fatalf("the new flow is %s, want a new handshake's state", st)
	}
	if n := e.Flows(); n != 1 {
		t.Fatalf("%d flows, want the new one only", n)
	}
}

// TestNATPortClash: in NAT mode a client port's flow through one VIP and
// a new connection from the same port through another VIP to the same
// real server would share a reply tuple, which the real server could not
// tell apart. While the old flow is live the new one gets another client
// port (the client's address kept), and the real server's answers find
// their way back to the client's own port. A closed old flow (CLOSE after
// an exact RST; TIME_WAIT likewise) moves the port too: the real server
// may still hold that connection in TIME_WAIT, where the new SYN would
// meet PAWS and get a bare ACK instead of a SYN-ACK.
func TestNATPortClash(t *testing.T) {
	rip := netip.AddrPortFrom(rips[0], 80)
	other := netip.MustParseAddrPort("198.18.0.11:80")
	var svcs []nat.Service
	for _, v := range []netip.AddrPort{vip, other} {
		svcs = append(svcs, nat.Service{Proto: packet.ProtoTCP, VIP: v.Addr(), Port: v.Port(), Scheduler: "rr",
			Backends: []nat.Backend{{Addr: rip.Addr(), Port: rip.Port(), Weight: 1}}, SynProxy: nat.SynProxyOff})
	}
	e, err := nat.New(nat.Config{Capacity: 64, ShardBits: 2, Services: svcs})
	if err != nil {
		t.Fatal(err)
	}
	w := e.NewWorker()
	established(t, w, client)
	b := tcpSeq(client, other, syn, 0, 9000, 0)
	if v := one(w, b); v != nat.Forward {
		t.Fatalf("SYN through %v while the flow through %v is live: verdict %v", other, vip, v)
	}
	moved, d := endpoints(t, b)
	if d != rip || moved.Addr() != client.Addr() || moved.Port() == client.Port() {
		t.Fatalf("the clashing SYN went %v -> %v; want from %v with another port, to %v", moved, d, client.Addr(), rip)
	}
	synAck := tcpSeq(rip, moved, synack, 0, 7000, 9001)
	if v := one(w, synAck); v != nat.Forward {
		t.Fatalf("SYN-ACK to the moved port: verdict %v", v)
	}
	if s, d := endpoints(t, synAck); s != other || d != client {
		t.Fatalf("the SYN-ACK left %v -> %v, want %v -> %v", s, d, other, client)
	}
	// On a fresh engine: once the flow through vip is closed, a new
	// connection through other on the same port still gets another port,
	// and the closed flow stays.
	e2, err := nat.New(nat.Config{Capacity: 64, ShardBits: 2, Services: svcs})
	if err != nil {
		t.Fatal(err)
	}
	w = e2.NewWorker()
	established(t, w, client)
	if v := one(w, tcpSeq(client, vip, rst, 0, 102, 0)); v != nat.Forward || flowState(e2, client) != "CLOSE" {
		t.Fatalf("exact RST: verdict %v, flow %s", v, flowState(e2, client))
	}
	b = tcpSeq(client, other, syn, 0, 9000, 0)
	if v := one(w, b); v != nat.Forward {
		t.Fatalf("SYN through %v once the flow through %v is closed: verdict %v", other, vip, v)
	}
	moved, d = endpoints(t, b)
	if d != rip || moved.Addr() != client.Addr() || moved.Port() == client.Port() {
		t.Fatalf("the SYN went %v -> %v; want from %v with another port, to %v (the closed flow's tuple not taken over)", moved, d, client.Addr(), rip)
	}
	synAck = tcpSeq(rip, moved, synack, 0, 7000, 9001)
	if v := one(w, synAck); v != nat.Forward {
		t.Fatalf("SYN-ACK to the moved port: verdict %v", v)
	}
	if s, d := endpoints(t, synAck); s != other || d != client {
		t.Fatalf("the SYN-ACK left %v -> %v, want %v -> %v", s, d, other, client)
	}
	if n := len(slices.Collect(e2.AllFlows())); n != 2 || flowState(e2, client) == "" {
		t.Fatalf("%d flows, want the closed one and the new one", n)
	}
}

// TestHandshakeACKExact: the ACK that would complete a handshake must
// acknowledge the SYN-ACK exactly; a guess a little off (inside the
// ~64 KiB conntrack would allow) is dropped and establishes nothing.
func TestHandshakeACKExact(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	b := tcp(client, vip, syn, 0)
	one(w, b)
	_, rip := endpoints(t, b)
	if one(w, tcpSeq(rip, client, synack, 0, 5000, 2)) != nat.Forward {
		t.Fatal("SYN-ACK not forwarded")
	}
	for _, guess := range []uint32{5000, 5002, 5001 + 1000, 5001 - 1000} {
		if v := one(w, tcpSeq(client, vip, ack, 0, 2, guess)); v != nat.Drop {
			t.Errorf("handshake ACK %d (want 5001): verdict %v", guess, v)
		}
		if st := flowState(e, client); st != "SYNACK" {
			t.Fatalf("handshake ACK %d moved the flow to %s", guess, st)
		}
	}
	if v := one(w, tcpSeq(client, vip, ack, 0, 2, 5001)); v != nat.Forward || flowState(e, client) != "ESTABLISHED" {
		t.Fatalf("the exact ACK: verdict %v, flow %s", v, flowState(e, client))
	}
}

// TestSloppyNeedsACK: a sloppy service adopts a segment from mid-stream,
// which carries ACK; a flagless probe (or PSH alone, FIN alone) is no such
// segment and is dropped as no_flow, not adopted (it used to index the
// state table with -1 and crash the gateway).
func TestSloppyNeedsACK(t *testing.T) {
	e, err := nat.New(nat.Config{Services: []nat.Service{{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: 80,
		Scheduler: "mh", Sloppy: true, Backends: []nat.Backend{{Addr: rips[0], Port: 80, Weight: 1}}}}})
	if err != nil {
		t.Fatal(err)
	}
	w := e.NewWorker()
	for i, flags := range []uint8{0, packet.TCPFlagFIN, rst | ack} {
		if v := one(w, tcp(netip.AddrPortFrom(client.Addr(), uint16(2000+i)), vip, flags, 0)); v != nat.Drop {
			t.Fatalf("flags %#x: %v, want drop", flags, v)
		}
	}
	if e.Drops(nat.DropNoFlow) != 3 || e.Flows() != 0 {
		t.Fatalf("no_flow drops %d, flows %d; want 3, 0", e.Drops(nat.DropNoFlow), e.Flows())
	}
	if v := one(w, tcp(client, vip, ack, 10)); v != nat.Forward || e.Flows() != 1 {
		t.Fatalf("mid-stream ACK: %v, %d flows; want it adopted", v, e.Flows())
	}
}

// TestFullNATClosedPortNotReclaimed: a FULLNAT flow's pool port is
// vsgate's choice, and the real server may still hold the old connection
// on it in TIME_WAIT (where a new SYN meets PAWS and gets a bare ACK): a
// new connection from another client port does not take over a closed
// flow's pool port, as the kernel's NAT avoids a tuple any conntrack
// still holds. It gets another port, or none while the range has no free
// one.
func TestFullNATClosedPortNotReclaimed(t *testing.T) {
	for _, span := range []uint16{1, 2} {
		e, err := nat.New(nat.Config{Capacity: 64, ShardBits: 2,
			Services: []nat.Service{{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: vip.Port(), Mode: nat.ModeFullNAT, Scheduler: "rr",
				Backends: []nat.Backend{{Addr: rips[0], Port: 8080, Weight: 1}}, SynProxy: nat.SynProxyOff}},
			FullNATPool: []netip.Addr{lip}, FullNATPorts: [2]uint16{40000, 40000 + span - 1}})
		if err != nil {
			t.Fatal(err)
		}
		w := e.NewWorker()
		b := tcp(client, vip, syn, 0)
		if one(w, b) != nat.Forward {
			t.Fatal("SYN not forwarded")
		}
		pooled, rip := endpoints(t, b)
		if one(w, tcpSeq(rip, pooled, synack, 0, 5000, 2)) != nat.Forward || one(w, tcpSeq(client, vip, ack, 0, 2, 5001)) != nat.Forward {
			t.Fatal("handshake not forwarded")
		}
		if v := one(w, tcpSeq(client, vip, rst, 0, 2, 0)); v != nat.Forward || flowState(e, client) != "CLOSE" {
			t.Fatalf("exact RST: verdict %v, flow %s", v, flowState(e, client))
		}
		next := netip.AddrPortFrom(client.Addr(), client.Port()+1)
		b = tcp(next, vip, syn, 0)
		v := one(w, b)
		switch span {
		case 1:
			if v == nat.Forward {
				s, _ := endpoints(t, b)
				t.Fatalf("range of one port: the new SYN took over the closed flow's %v", s)
			}
			if e.Drops(nat.DropPortsExhausted) != 1 || flowState(e, client) != "CLOSE" {
				t.Fatalf("range of one port: ports_exhausted %d, the closed flow %q", e.Drops(nat.DropPortsExhausted), flowState(e, client))
			}
		case 2:
			if v != nat.Forward {
				t.Fatalf("range of two ports: the new SYN: verdict %v", v)
			}
			if s, _ := endpoints(t, b); s == pooled {
				t.Fatalf("range of two ports: the new SYN took over the closed flow's %v", s)
			}
		}
	}
}
