package nat_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// syncEngines are two gateways with one configuration: a FULLNAT service
// on vip with persistence, and a NAT service on vip6, over three real
// servers each, rr (so that a flow's real server cannot be recomputed:
// only the sync can tell it), sloppy. The FULLNAT pool is shared, each
// gateway with its own port range.
func syncEngines(t *testing.T) (a, b *nat.Engine) {
	t.Helper()
	mk := func(ports [2]uint16) *nat.Engine {
		var bs, bs6 []nat.Backend
		for _, r := range rips {
			bs = append(bs, nat.Backend{Addr: r, Port: 8080, Weight: 1})
		}
		bs6 = []nat.Backend{{Addr: rip6, Port: 80, Weight: 1}, {Addr: netip.MustParseAddr("2001:db8:2::12"), Port: 80, Weight: 1}}
		e, err := nat.New(nat.Config{Capacity: 256, ShardBits: 2, FullNATPool: []netip.Addr{lip}, FullNATPorts: ports,
			Services: []nat.Service{
				{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: vip.Port(), Mode: nat.ModeFullNAT, Scheduler: "rr", Sloppy: true,
					Persistence: 5 * time.Minute, Backends: bs, SynProxy: nat.SynProxyOff},
				{Proto: packet.ProtoTCP, VIP: vip6.Addr(), Port: vip6.Port(), Scheduler: "rr", Sloppy: true, Backends: bs6, SynProxy: nat.SynProxyOff},
			}})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	return mk([2]uint16{10000, 19999}), mk([2]uint16{20000, 29999})
}

// TestSyncFlows: what gateway A made (FULLNAT flows with their source
// ports, a NAT flow, a persistence template) reaches B through
// DrainSync and ImportFlow; B then translates the real server's answers
// to A's FULLNAT address and port, sends the clients' next segments to
// the same real servers, and sends the client's new connection where
// its template says. Records are sent once; a state change is noted
// again; a second import changes nothing; both tables keep their
// invariants.
func TestSyncFlows(t *testing.T) {
	a, b := syncEngines(t)
	a.SetSync(true)
	wa, wb := a.NewWorker(), b.NewWorker()
	clients := []netip.AddrPort{client, netip.MustParseAddrPort("198.18.0.3:40001"), netip.MustParseAddrPort("198.18.0.4:40002")}
	replies := map[netip.AddrPort][2]netip.AddrPort{} // client -> real server, FULLNAT source
	for _, c := range clients {
		pkt := tcp(c, vip, syn, 0)
		if v := one(wa, pkt); v != nat.Forward {
			t.Fatalf("SYN from %v at A: %v", c, v)
		}
		s, d := endpoints(t, pkt)
		replies[c] = [2]netip.AddrPort{d, s}
	}
	syn6 := tcp(client6, vip6, syn, 0)
	if v := one(wa, syn6); v != nat.Forward {
		t.Fatalf("SYN over IPv6 at A: %v", v)
	}
	_, rs6 := endpoints(t, syn6)

	var recs []nat.SyncFlow
	a.DrainSync(func(f nat.SyncFlow) { recs = append(recs, f) })
	if len(recs) != 4 {
		t.Fatalf("A noted %d flows, want 4: %+v", len(recs), recs)
	}
	a.DrainSync(func(f nat.SyncFlow) { t.Errorf("noted twice: %+v", f) })
	for _, r := range recs {
		if made, err := wb.ImportFlow(r); !made || err != nil {
			t.Fatalf("B importing %+v: made %t, %v", r, made, err)
		}
		if made, err := wb.ImportFlow(r); made || err != nil {
			t.Fatalf("B importing %+v again: made %t, %v", r, made, err)
		}
	}
	if n := b.SyncStats().Imported; n != 4 {
		t.Errorf("B counts %d imported flows, want 4", n)
	}

	for _, c := range clients {
		rs, fn := replies[c][0], replies[c][1]
		if fn.Addr() != lip || fn.Port() < 10000 || fn.Port() > 19999 {
			t.Fatalf("A's FULLNAT source %v: want %v with a port of A's range", fn, lip)
		}
		// The real server's SYN-ACK to A's FULLNAT address and port,
		// at B.
		ans := tcp(rs, fn, synack, 0)
		if v := one(wb, ans); v != nat.Forward {
			t.Fatalf("the SYN-ACK of %v at B: %v (drops: no flow %d)", c, v, b.Drops(nat.DropNoFlow))
		}
		if s, d := endpoints(t, ans); s != vip || d != c {
			t.Fatalf("B sent the answer %v -> %v, want %v -> %v", s, d, vip, c)
		}
		next := tcp(c, vip, ack, 10)
		if v := one(wb, next); v != nat.Forward {
			t.Fatalf("the client's next segment at B: %v", v)
		}
		if s, d := endpoints(t, next); d != rs || s != fn {
			t.Fatalf("B sent %v's segment %v -> %v, want A's %v -> %v", c, s, d, fn, rs)
		}
	}
	ans6 := tcp(rs6, client6, synack, 0)
	if v := one(wb, ans6); v != nat.Forward {
		t.Fatalf("the IPv6 SYN-ACK at B: %v", v)
	}

	// The template: the second client's new connection at B goes to the
	// real server its first one has (A's rr gave it the second), though
	// B's rr, which has picked nothing yet, would pick the first.
	c2 := clients[1]
	if replies[c2][0] == replies[clients[0]][0] {
		t.Fatalf("rr at A gave the first two clients one real server")
	}
	again := tcp(netip.AddrPortFrom(c2.Addr(), 40100), vip, syn, 0)
	if v := one(wb, again); v != nat.Forward {
		t.Fatalf("a new connection at B: %v", v)
	}
	if _, d := endpoints(t, again); d != replies[c2][0] {
		t.Errorf("the client's new connection at B went to %v, its template's real server is %v", d, replies[c2][0])
	}

	// A state change at A is noted again.
	rs, fn := replies[client][0], replies[client][1]
	one(wa, tcp(rs, fn, synack, 0))
	one(wa, tcp(client, vip, ack, 0))
	var changed []nat.SyncFlow
	a.DrainSync(func(f nat.SyncFlow) { changed = append(changed, f) })
	if len(changed) != 2 || changed[len(changed)-1].State != 1 {
		t.Errorf("after the handshake A noted %+v, want two state changes ending ESTABLISHED (1)", changed)
	}
	var all int
	a.SyncAll(func(nat.SyncFlow) { all++ })
	if all != 4 {
		t.Errorf("SyncAll listed %d flows, want 4", all)
	}
	for _, e := range []*nat.Engine{a, b} {
		if err := e.CheckInvariants(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSyncOff: with the sync off nothing is noted; with it on, every new
// flow is.
func TestSyncOff(t *testing.T) {
	a, _ := syncEngines(t)
	w := a.NewWorker()
	one(w, tcp(client, vip, syn, 0))
	a.DrainSync(func(f nat.SyncFlow) { t.Errorf("noted with the sync off: %+v", f) })
	a.SetSync(true)
	for i := range 5000 {
		one(w, tcp(netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 1000), vip, syn, 0))
		if a.Flows() >= 250 {
			break
		}
	}
	n := 0
	a.DrainSync(func(nat.SyncFlow) { n++ })
	if n == 0 || n != a.Flows()-1 {
		t.Errorf("drained %d notes for %d new flows", n, a.Flows()-1)
	}
}

// TestImportRefused: records that name no service or real server of this
// gateway, or that cannot be, are refused and make nothing.
func TestImportRefused(t *testing.T) {
	_, b := syncEngines(t)
	w := b.NewWorker()
	good := nat.SyncFlow{Proto: packet.ProtoTCP, State: 1, OrigSrc: client, OrigDst: vip,
		ReplySrc: netip.AddrPortFrom(rips[0], 8080), ReplyDst: netip.AddrPortFrom(lip, 10000)}
	for name, mut := range map[string]func(*nat.SyncFlow){
		"another VIP":         func(f *nat.SyncFlow) { f.OrigDst = netip.MustParseAddrPort("198.18.0.99:80") },
		"another real server": func(f *nat.SyncFlow) { f.ReplySrc = netip.MustParseAddrPort("198.18.2.99:8080") },
		"state 0":             func(f *nat.SyncFlow) { f.State = 0 },
		"state 99":            func(f *nat.SyncFlow) { f.State = 99 },
		"UDP with TCP state":  func(f *nat.SyncFlow) { f.Proto = packet.ProtoUDP },
		"ICMP":                func(f *nat.SyncFlow) { f.Proto = 1 },
		"mixed families":      func(f *nat.SyncFlow) { f.OrigSrc = client6 },
		"no reply":            func(f *nat.SyncFlow) { f.ReplyDst = netip.AddrPort{} },
	} {
		f := good
		mut(&f)
		if made, err := w.ImportFlow(f); made || err == nil {
			t.Errorf("%s: made %t, err %v", name, made, err)
		}
	}
	if b.Flows() != 0 {
		t.Fatalf("refused records made %d flows", b.Flows())
	}
	if made, err := w.ImportFlow(good); !made || err != nil {
		t.Fatalf("the good record: %t, %v", made, err)
	}
}

// FuzzImportFlow feeds records made of arbitrary bytes to ImportFlow (a
// peer's datagram passed the MAC, but a peer may be wrong or another
// version): nothing panics, and the table keeps its invariants, with
// real packets of the imported flows translated after.
func FuzzImportFlow(f *testing.F) {
	f.Add([]byte{6, 1, 198, 18, 0, 2, 0x9c, 0x40, 198, 18, 0, 10, 0, 80, 198, 18, 2, 11, 0x1f, 0x90, 198, 18, 0, 30, 0x27, 0x10})
	f.Add([]byte{17, 11, 198, 18, 0, 2, 0, 53, 198, 18, 0, 10, 0, 80, 198, 18, 2, 12, 0x1f, 0x90, 198, 18, 0, 2, 0, 53})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, e := syncEngines(t)
		w := e.NewWorker()
		for len(b) >= 26 {
			ap := func(o int) netip.AddrPort {
				return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[o:o+4])), uint16(b[o+4])<<8|uint16(b[o+5]))
			}
			sf := nat.SyncFlow{Proto: b[0], State: b[1], OrigSrc: ap(2), OrigDst: ap(8), ReplySrc: ap(14), ReplyDst: ap(20)}
			_, _ = w.ImportFlow(sf)
			if sf.Proto == packet.ProtoTCP {
				one(w, tcp(sf.OrigSrc, sf.OrigDst, ack, 10))
				one(w, tcp(sf.ReplySrc, sf.ReplyDst, ack, 10))
			}
			b = b[26:]
		}
		if err := e.CheckInvariants(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestSyncPortZero: a flow of a port-0 service (every port, see
// nat.Service.Port) reaches the other gateway, which finds its service
// and its port-0 backend and translates the real server's answer.
func TestSyncPortZero(t *testing.T) {
	mk := func() *nat.Engine {
		e, err := nat.New(nat.Config{Capacity: 256, Services: []nat.Service{{Proto: packet.ProtoTCP, VIP: vip.Addr(), Scheduler: "rr",
			Persistence: time.Minute, Backends: []nat.Backend{{Addr: rips[0], Weight: 1}, {Addr: rips[1], Weight: 1}}, SynProxy: nat.SynProxyOff}}})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	a, b := mk(), mk()
	a.SetSync(true)
	to := netip.AddrPortFrom(vip.Addr(), 443)
	pkt := tcp(client, to, syn, 0)
	if v := one(a.NewWorker(), pkt); v != nat.Forward {
		t.Fatalf("SYN at A: %v", v)
	}
	_, real := endpoints(t, pkt)
	var recs []nat.SyncFlow
	a.DrainSync(func(f nat.SyncFlow) { recs = append(recs, f) })
	wb := b.NewWorker()
	if len(recs) != 1 {
		t.Fatalf("A noted %d flows, want 1", len(recs))
	}
	if made, err := wb.ImportFlow(recs[0]); !made || err != nil {
		t.Fatalf("B importing %+v: made %t, %v", recs[0], made, err)
	}
	ans := tcpSeq(real, client, synack, 0, 1, 1)
	if v := one(wb, ans); v != nat.Forward {
		t.Fatalf("the real server's answer at B: %v", v)
	}
	if s, _ := endpoints(t, ans); s != to {
		t.Fatalf("B sent the answer from %v, want %v", s, to)
	}
}
