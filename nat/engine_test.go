package nat_test

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// TestNATHandshake walks a TCP connection through the VIP: the SYN goes to
// a real server, its replies come back from the VIP, states and connection
// counts follow IPVS, and the flow expires on the fake clock.
func TestNATHandshake(t *testing.T) {
	e := engine(t, nat.ModeNAT, 1024)
	w := e.NewWorker()

	b := tcp(client, vip, syn, 0)
	if v := one(w, b); v != nat.Forward {
		t.Fatalf("SYN verdict %v", v)
	}
	src, dst := endpoints(t, b)
	checksumsValid(t, b)
	if src != client || dst.Addr() != rips[0] || dst.Port() != 8080 {
		t.Fatalf("SYN translated to %v > %v, want %v > %v:8080", src, dst, client, rips[0])
	}
	rip := dst

	// The real server answers; the client must see the VIP.
	b = tcp(rip, client, synack, 0)
	if v := one(w, b); v != nat.Forward {
		t.Fatalf("SYN-ACK verdict %v", v)
	}
	if s, d := endpoints(t, b); s != vip || d != client {
		t.Fatalf("reply translated to %v > %v, want %v > %v", s, d, vip, client)
	}
	checksumsValid(t, b)

	b = tcp(client, vip, ack, 100)
	one(w, b)
	if _, d := endpoints(t, b); d != rip {
		t.Fatalf("data went to %v, want %v", d, rip)
	}
	st, ok := e.ServiceStats("tcp 198.18.0.10:80")
	if !ok || st.Conns != 1 || st.PacketsIn != 2 || st.PacketsOut != 1 {
		t.Fatalf("service stats %+v (found %v), want conns 1, packets in 2, out 1", st, ok)
	}
	if e.Flows() != 1 {
		t.Fatalf("%d flows, want 1", e.Flows())
	}

	// Established: survives 14 minutes, gone after 15.
	e.Advance(14 * time.Minute)
	if n := e.Expire(); n != 0 {
		t.Fatalf("established flow expired after 14 min")
	}
	one(w, tcp(client, vip, finack, 0))
	one(w, tcp(rip, client, finack, 0))
	// after FIN both ways: TIME_WAIT (2 min)
	e.Advance(14*time.Minute + 2*time.Minute + time.Second)
	if n := e.Expire(); n != 1 || e.Flows() != 0 {
		t.Fatalf("Expire removed %d, %d flows left; want 1, 0", n, e.Flows())
	}
	// A late ACK for the gone flow is dropped.
	if v := one(w, tcp(client, vip, ack, 0)); v != nat.Drop || e.Drops(nat.DropNoFlow) != 1 {
		t.Fatalf("ACK after expiry: verdict %v, no_flow drops %d", v, e.Drops(nat.DropNoFlow))
	}
}

// TestRoundRobinSpread: 30 new flows from different client ports spread
// 10/10/10 over the three backends.
func TestRoundRobinSpread(t *testing.T) {
	e := engine(t, nat.ModeNAT, 1024)
	w := e.NewWorker()
	count := map[netip.Addr]int{}
	for i := range 30 {
		c := netip.AddrPortFrom(client.Addr(), uint16(20000+i))
		b := tcp(c, vip, syn, 0)
		if v := one(w, b); v != nat.Forward {
			t.Fatal(v)
		}
		_, d := endpoints(t, b)
		count[d.Addr()]++
	}
	for _, r := range rips {
		if count[r] != 10 {
			t.Errorf("backend %v got %d flows, want 10 (%v)", r, count[r], count)
		}
	}
}

// TestFullNAT: the source becomes the pool address; replies are reversed on
// both addresses.
func TestFullNAT(t *testing.T) {
	e := engine(t, nat.ModeFullNAT, 1024)
	w := e.NewWorker()
	b := tcp(client, vip, syn, 0)
	one(w, b)
	s, d := endpoints(t, b)
	checksumsValid(t, b)
	if s.Addr() != lip || d.Addr() != rips[0] {
		t.Fatalf("FULLNAT SYN %v > %v, want %v:* > %v", s, d, lip, rips[0])
	}
	r := tcp(d, s, synack, 0)
	one(w, r)
	if rs, rd := endpoints(t, r); rs != vip || rd != client {
		t.Fatalf("FULLNAT reply %v > %v, want %v > %v", rs, rd, vip, client)
	}
	checksumsValid(t, r)
}

// TestMasquerade: outbound from the server subnet gets the masquerade
// address, keeping its port; the reply comes back; unsolicited inbound to
// the masquerade address is dropped.
func TestMasquerade(t *testing.T) {
	e := engine(t, nat.ModeNAT, 1024)
	w := e.NewWorker()
	inside := netip.AddrPortFrom(rips[1], 33000)
	b := udp(inside, outside, 10)
	one(w, b)
	s, d := endpoints(t, b)
	if s != netip.AddrPortFrom(masqTo, 33000) || d != outside {
		t.Fatalf("masqueraded %v > %v, want %v:33000 > %v", s, d, masqTo, outside)
	}
	checksumsValid(t, b)
	r := udp(outside, s, 10)
	one(w, r)
	if rs, rd := endpoints(t, r); rs != outside || rd != inside {
		t.Fatalf("reply %v > %v, want %v > %v", rs, rd, outside, inside)
	}
	// A second inside host with the same port gets another port.
	b2 := udp(netip.AddrPortFrom(rips[2], 33000), outside, 10)
	one(w, b2)
	if s2, _ := endpoints(t, b2); s2.Addr() != masqTo || s2.Port() == 33000 {
		t.Fatalf("second host masqueraded to %v, want %v with another port", s2, masqTo)
	}
	if v := one(w, udp(outside, netip.AddrPortFrom(masqTo, 9999), 1)); v != nat.Drop || e.Drops(nat.DropMasqUnsolicited) != 1 {
		t.Fatalf("unsolicited: verdict %v drops %d", v, e.Drops(nat.DropMasqUnsolicited))
	}
}

// TestIPv6 runs a v6 flow to a v6 backend and back.
func TestIPv6(t *testing.T) {
	e := engine(t, nat.ModeNAT, 1024)
	w := e.NewWorker()
	b := tcp(client6, vip6, syn, 0)
	one(w, b)
	_, d := endpoints(t, b)
	checksumsValid(t, b)
	if d.Addr() != rip6 {
		t.Fatalf("v6 SYN went to %v", d)
	}
	r := tcp(d, client6, synack, 0)
	one(w, r)
	if s, _ := endpoints(t, r); s != vip6 {
		t.Fatalf("v6 reply from %v, want %v", s, vip6)
	}
	checksumsValid(t, r)
}

// TestUnmatched: an inside host's packets for no service pass unchanged
// by default, except to a VIP's other ports (they would loop back into the
// device): dropped; so is anything routed on whose source is no inside
// address.
func TestUnmatched(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	// rip6: a real server no masquerade rule covers.
	b := tcp(netip.AddrPortFrom(rip6, 5000), netip.MustParseAddrPort("[2001:db8::99]:80"), syn, 0)
	orig := append([]byte(nil), b...)
	if v := one(w, b); v != nat.Pass || string(b) != string(orig) {
		t.Fatalf("unmatched: verdict %v, changed %v", v, string(b) != string(orig))
	}
	if v := one(w, tcp(client, netip.MustParseAddrPort("198.18.0.99:80"), syn, 0)); v != nat.Drop || e.Drops(nat.DropSourceNotInside) != 1 {
		t.Fatalf("from the outside to the outside: verdict %v", v)
	}
	if v := one(w, tcp(client, netip.AddrPortFrom(vip.Addr(), 22), syn, 0)); v != nat.Drop || e.Drops(nat.DropUnmatched) != 1 {
		t.Fatalf("VIP:22 with no service: verdict %v", v)
	}
}

// TestTableFull: with the table full of established flows a SYN is dropped;
// half-open flows are evicted to admit new ones, and counted.
func TestTableFull(t *testing.T) {
	e := engine(t, nat.ModeNAT, 8)
	w := e.NewWorker()
	for i := 0; e.Flows() < e.Capacity() && i < 1000; i++ {
		c := netip.AddrPortFrom(client.Addr(), uint16(10000+i))
		b := tcp(c, vip, syn, 0)
		if one(w, b) != nat.Forward {
			continue
		}
		_, d := endpoints(t, b)
		one(w, tcp(d, c, synack, 0))
		one(w, tcp(c, vip, ack, 0))
	}
	if e.Flows() != e.Capacity() {
		t.Fatalf("filled %d of %d", e.Flows(), e.Capacity())
	}
	before := e.Drops(nat.DropTableFull)
	if v := one(w, tcp(netip.AddrPortFrom(client.Addr(), 65000), vip, syn, 0)); v != nat.Drop || e.Drops(nat.DropTableFull) != before+1 {
		t.Fatalf("SYN into a table of established flows: %v", v)
	}
	if e.Evictions() != 0 {
		t.Fatalf("an established flow was evicted")
	}
}

// TestEvictHalfOpen: with the table full of half-open flows, a new SYN
// evicts the stalest one (counted), and the backend's inactive count stays
// equal to the number of flows.
func TestEvictHalfOpen(t *testing.T) {
	e := engine(t, nat.ModeNAT, 8)
	w := e.NewWorker()
	for i := range e.Capacity() {
		e.Advance(time.Duration(i) * time.Second) // the first SYN is the stalest
		if v := one(w, tcp(netip.AddrPortFrom(client.Addr(), uint16(10000+i)), vip, syn, 0)); v != nat.Forward {
			t.Fatalf("SYN %d: %v", i, v)
		}
	}
	if v := one(w, tcp(netip.AddrPortFrom(client.Addr(), 20000), vip, syn, 0)); v != nat.Forward {
		t.Fatalf("SYN into a table of half-open flows: %v (table_full drops %d)", v, e.Drops(nat.DropTableFull))
	}
	if e.Evictions() != 1 || e.Flows() != e.Capacity() {
		t.Fatalf("evictions %d flows %d, want 1 and %d", e.Evictions(), e.Flows(), e.Capacity())
	}
	// The evicted flow was the first: its ACK now finds no flow.
	if v := one(w, tcp(netip.AddrPortFrom(client.Addr(), 10000), vip, ack, 0)); v != nat.Drop {
		t.Fatalf("ACK of the evicted flow: %v", v)
	}
	active, inactive := e.BackendConns(netip.AddrPortFrom(vip.Addr(), vip.Port()), packet.ProtoTCP)
	if active != 0 || inactive != int64(e.Capacity()) {
		t.Fatalf("backend counts active %d inactive %d, want 0 and %d", active, inactive, e.Capacity())
	}
}

// TestDrainAndRemove: a backend set to weight 0 keeps its established
// flows and gets no new ones; a removed backend's flows drain (keep
// working until they end) while the others are untouched.
func TestDrainAndRemove(t *testing.T) {
	var bs []nat.Backend
	for _, r := range rips {
		bs = append(bs, nat.Backend{Addr: r, Port: 8080, Weight: 1})
	}
	cfg := nat.Config{Capacity: 256, Services: []nat.Service{{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: vip.Port(), Scheduler: "wrr", Backends: bs}}}
	e, err := nat.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := e.NewWorker()
	conns := map[netip.AddrPort]netip.AddrPort{} // client -> backend
	for i := range 6 {
		c := netip.AddrPortFrom(client.Addr(), uint16(3000+i))
		b := tcp(c, vip, syn, 0)
		one(w, b)
		_, d := endpoints(t, b)
		one(w, tcp(d, c, synack, 0))
		conns[c] = d
	}
	// Drain rips[0], remove rips[1].
	cfg.Services[0].Backends = []nat.Backend{{Addr: rips[0], Port: 8080, Weight: 0}, {Addr: rips[2], Port: 8080, Weight: 1}}
	if err := e.Update(cfg); err != nil {
		t.Fatal(err)
	}
	for c, d := range conns {
		b := tcp(c, vip, ack, 10)
		if v := one(w, b); v != nat.Forward {
			t.Fatalf("established %v -> %v after update: %v", c, d, v)
		}
		if _, got := endpoints(t, b); got != d {
			t.Fatalf("established %v moved from %v to %v", c, d, got)
		}
		r := tcp(d, c, ack, 10)
		one(w, r)
		if s, _ := endpoints(t, r); s != vip {
			t.Fatalf("reply of %v from %v", c, s)
		}
	}
	for i := range 10 {
		b := tcp(netip.AddrPortFrom(client.Addr(), uint16(5000+i)), vip, syn, 0)
		one(w, b)
		if _, d := endpoints(t, b); d.Addr() != rips[2] {
			t.Fatalf("new flow %d went to %v; only %v takes new flows", i, d, rips[2])
		}
	}
	if err := e.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
}

// TestResetRemoved: with ResetRemoved, a removed backend's established
// flow is ended at the client's next segment, which is answered with a
// reset from the VIP; without it (TestDrainAndRemove) the flow drains.
func TestResetRemoved(t *testing.T) {
	cfg := nat.Config{Capacity: 64, ResetRemoved: true, Services: []nat.Service{{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: vip.Port(),
		Scheduler: "rr", Backends: []nat.Backend{{Addr: rips[0], Port: 8080, Weight: 1}, {Addr: rips[1], Port: 8080, Weight: 1}}}}}
	e, err := nat.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := e.NewWorker()
	b := tcp(client, vip, syn, 0)
	one(w, b)
	_, d := endpoints(t, b)
	one(w, tcp(d, client, synack, 0))
	cfg.Services[0].Backends = []nat.Backend{{Addr: rips[2], Port: 8080, Weight: 1}}
	if err := e.Update(cfg); err != nil {
		t.Fatal(err)
	}
	pkts := [][]byte{tcp(client, vip, ack, 100)}
	v := make([]nat.Verdict, 1)
	w.Process(pkts, v)
	if v[0] != nat.Reply || len(pkts[0]) != 40 {
		t.Fatalf("verdict %v, %d bytes; want a 40-byte reset", v[0], len(pkts[0]))
	}
	s, dst := endpoints(t, pkts[0])
	checksumsValid(t, pkts[0])
	var p packet.Parsed
	packet.Parse(pkts[0], &p)
	if s != vip || dst != client || p.TCPFlags != packet.TCPFlagRST {
		t.Fatalf("reset %v > %v flags %#x", s, dst, p.TCPFlags)
	}
	if e.Flows() != 0 || e.Resets() != 1 {
		t.Fatalf("flows %d resets %d", e.Flows(), e.Resets())
	}
	if a, i := e.BackendConns(vip, packet.ProtoTCP); a != 0 || i != 0 {
		t.Fatalf("counts %d/%d after the reset", a, i)
	}
	// The backend's late answer is dropped: the flow is gone.
	if v := one(w, tcp(d, client, ack, 0)); v == nat.Forward {
		t.Fatalf("late reply forwarded")
	}
}

// TestProcessMeta: a GSO super-packet is translated once, whole, and
// counted as the segments it stands for, in both directions; a plain
// packet in the same batch counts one.
func TestProcessMeta(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	rip := handshake(t, w, 0)
	data := tcp(client, vip, ack, 14480)              // ten 1448-byte segments' worth
	plain := tcpSeq(client, vip, ack, 10, 1+14480, 1) // after the super-packet's data
	reply := tcp(rip, client, ack, 2896)
	v := make([]nat.Verdict, 3)
	w.ProcessMeta([][]byte{data, plain, reply}, []nat.Meta{{Segs: 10}, {Segs: 1}, {Segs: 2}}, v)
	if v[0] != nat.Forward || v[1] != nat.Forward || v[2] != nat.Forward {
		t.Fatalf("verdicts %v", v)
	}
	if _, d := endpoints(t, data); d != rip {
		t.Fatalf("super-packet went to %v, want %v", d, rip)
	}
	if s, _ := endpoints(t, reply); s != vip {
		t.Fatalf("reply super-packet from %v, want %v", s, vip)
	}
	st, _ := e.ServiceStats("tcp 198.18.0.10:80")
	// In: SYN 1 + 10 + 1; out: SYN-ACK 1 + 2.
	if st.PacketsIn != 12 || st.PacketsOut != 3 {
		t.Fatalf("service stats %+v, want 12 packets in, 3 out", st)
	}
	if want := uint64(len(tcp(client, vip, syn, 0)) + len(data) + len(plain)); st.BytesIn != want {
		t.Fatalf("bytes in %d, want %d (the super-packet's bytes as read)", st.BytesIn, want)
	}
}

// TestClockWrap: flows keep their deadlines in 32 bits of clock ticks.
// Across the wrap (2^32 ticks, 136 years at the default second) a flow
// still expires on time, and eviction still picks the stalest flow.
func TestClockWrap(t *testing.T) {
	e := engine(t, nat.ModeNAT, 8)
	w := e.NewWorker()
	// SYNs (SYN_RECV: 60 s) at ticks 2^32-64 .. 2^32-57: the first four
	// deadlines fall before the wrap, the last four after it.
	start := time.Duration(1<<32-64) * time.Second
	for i := range e.Capacity() {
		e.Advance(start + time.Duration(i)*time.Second)
		if v := one(w, tcp(netip.AddrPortFrom(client.Addr(), uint16(10000+i)), vip, syn, 0)); v != nat.Forward {
			t.Fatalf("SYN %d: %v", i, v)
		}
	}
	if v := one(w, tcp(netip.AddrPortFrom(client.Addr(), 20000), vip, syn, 0)); v != nat.Forward || e.Evictions() != 1 {
		t.Fatalf("SYN into a full table: %v, %d evictions", v, e.Evictions())
	}
	if v := one(w, tcp(netip.AddrPortFrom(client.Addr(), 10000), vip, ack, 0)); v != nat.Drop {
		t.Fatalf("ACK of the stalest flow (made before the wrap): %v, want it evicted", v)
	}
	if v := one(w, tcp(netip.AddrPortFrom(client.Addr(), 10001), vip, ack, 0)); v != nat.Forward {
		t.Fatalf("ACK of the second stalest flow: %v, want it kept", v)
	}

	// A UDP flow made 2 s before the wrap lives its 300 s across it; one
	// whose deadline falls just before the wrap expires after it.
	e2 := engine(t, nat.ModeNAT, 8)
	w2 := e2.NewWorker()
	e2.Advance(time.Duration(1<<32-301) * time.Second)
	if v := one(w2, udp(netip.AddrPortFrom(client.Addr(), 1), netip.AddrPortFrom(vip.Addr(), 53), 10)); v != nat.Forward {
		t.Fatalf("UDP: %v", v)
	}
	e2.Advance(time.Duration(1<<32-2) * time.Second)
	if v := one(w2, udp(client, netip.AddrPortFrom(vip.Addr(), 53), 10)); v != nat.Forward {
		t.Fatalf("UDP: %v", v)
	}
	if n := e2.Expire(); n != 0 {
		t.Fatalf("Expire removed %d flows before any deadline", n)
	}
	e2.Advance(time.Duration(1<<32+10) * time.Second)
	if n := e2.Expire(); n != 1 || e2.Flows() != 1 {
		t.Fatalf("past the first deadline (before the wrap) Expire removed %d, %d flows left; want 1, 1", n, e2.Flows())
	}
	e2.Advance(time.Duration(1<<32-2+299) * time.Second)
	if n := e2.Expire(); n != 0 {
		t.Fatalf("UDP flow expired after 299 s (across the wrap)")
	}
	e2.Advance(time.Duration(1<<32-2+300) * time.Second)
	if n := e2.Expire(); n != 1 || e2.Flows() != 0 {
		t.Fatalf("after 300 s Expire removed %d, %d flows left; want 1, 0", n, e2.Flows())
	}
}

// TestTimeoutTooLong: a timeout of 2^31 clock ticks or more would break
// the 32-bit deadlines; the configuration is refused with the fix.
func TestTimeoutTooLong(t *testing.T) {
	_, err := nat.New(nat.Config{Tick: time.Millisecond, Timeouts: nat.Timeouts{TCPEstablished: 30 * 24 * time.Hour}})
	if !errors.Is(err, nat.ErrConfig) || !strings.Contains(err.Error(), "ESTABLISHED") {
		t.Fatalf("30-day timeout at a 1 ms tick: %v, want a config error naming the timeout", err)
	}
	if _, err := nat.New(nat.Config{Tick: time.Second, Timeouts: nat.Timeouts{TCPEstablished: 30 * 24 * time.Hour}}); err != nil {
		t.Fatalf("30-day timeout at a 1 s tick: %v", err)
	}
	// The bound exactly: 2^31-1 ticks is the longest.
	if _, err := nat.New(nat.Config{Tick: time.Millisecond, Timeouts: nat.Timeouts{UDP: (1<<31 - 1) * time.Millisecond}}); err != nil {
		t.Fatalf("2^31-1 ticks: %v", err)
	}
	if _, err := nat.New(nat.Config{Tick: time.Millisecond, Timeouts: nat.Timeouts{UDP: (1 << 31) * time.Millisecond}}); !errors.Is(err, nat.ErrConfig) {
		t.Fatalf("2^31 ticks: %v, want a config error", err)
	}
}

// TestRoundTripProperty: for random flows, translating the client's packet
// in, then the server's answer out, gives the client exactly the packet it
// would get from the address it sent to, with valid checksums: TCP and
// UDP, IPv4 and IPv6, through NAT, FULLNAT and the masquerade.
func TestRoundTripProperty(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mode   nat.Mode
		dst    netip.AddrPort
		udp    bool
		client func(r *rand.Rand) netip.Addr
	}{
		{"nat/tcp", nat.ModeNAT, vip, false, randIn(198, 18, 1)},
		{"nat/udp", nat.ModeNAT, netip.AddrPortFrom(vip.Addr(), 53), true, randIn(198, 18, 1)},
		{"nat/tcp6", nat.ModeNAT, vip6, false, randIn6},
		{"fullnat/tcp", nat.ModeFullNAT, vip, false, randIn(198, 18, 1)},
		{"fullnat/udp", nat.ModeFullNAT, netip.AddrPortFrom(vip.Addr(), 53), true, randIn(198, 18, 1)},
		{"fullnat/tcp6", nat.ModeFullNAT, vip6, false, randIn6},
		{"masquerade/tcp", nat.ModeNAT, far, false, randIn(198, 18, 2)},
		{"masquerade/udp", nat.ModeNAT, far, true, randIn(198, 18, 2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := engine(t, tc.mode, 1<<12)
			w := e.NewWorker()
			r := rand.New(rand.NewPCG(42, uint64(len(tc.name))))
			mk := func(src, dst netip.AddrPort, first bool, n int) []byte {
				switch {
				case tc.udp:
					return udp(src, dst, n)
				case first:
					return tcp(src, dst, syn, n)
				}
				return tcp(src, dst, synack, n)
			}
			done := 0
			for range 1000 {
				c := netip.AddrPortFrom(tc.client(r), uint16(1024+r.IntN(60000)))
				n0 := r.IntN(100)
				if !tc.udp {
					n0 = 0 // the SYN-ACK mk makes answers a SYN without data
				}
				in := mk(c, tc.dst, true, n0)
				if one(w, in) != nat.Forward {
					continue // the same random client twice, or a real server's port
				}
				s, d := endpoints(t, in)
				checksumsValid(t, in)
				n := r.IntN(1200)
				out := mk(d, s, false, n)
				if v := one(w, out); v != nat.Forward {
					t.Fatalf("reply verdict %v", v)
				}
				if want := mk(tc.dst, c, false, n); string(out) != string(want) {
					t.Fatalf("client got\n%x\nwant\n%x", out, want)
				}
				done++
			}
			if done < 900 {
				t.Fatalf("only %d of 1000 random flows went through", done)
			}
		})
	}
}

// randIn returns a generator of random addresses a.b.c.x.
func randIn(a, b, c byte) func(r *rand.Rand) netip.Addr {
	return func(r *rand.Rand) netip.Addr { return netip.AddrFrom4([4]byte{a, b, c, byte(r.IntN(256))}) }
}

// randIn6 is a random address in 2001:db8:1::/64.
func randIn6(r *rand.Rand) netip.Addr {
	a := netip.MustParseAddr("2001:db8:1::").As16()
	for i := 8; i < 16; i++ {
		a[i] = byte(r.IntN(256))
	}
	return netip.AddrFrom16(a)
}

// TestNoAllocs: an established flow's packet, and a new flow once the
// table is warm, allocate nothing.
func TestNoAllocs(t *testing.T) {
	e := engine(t, nat.ModeNAT, 1<<12)
	w := e.NewWorker()
	b := tcp(client, vip, syn, 0)
	one(w, b)
	_, rip := endpoints(t, b)
	pkts := [][]byte{tcp(client, vip, ack, 10), tcp(rip, client, ack, 10)}
	verdicts := make([]nat.Verdict, 2)
	if n := testing.AllocsPerRun(1000, func() {
		// alternate directions: each translation undoes the other's view
		w.Process(pkts[:1], verdicts)
		w.Process(pkts[1:], verdicts)
	}); n != 0 {
		t.Errorf("established: %v allocs per packet pair", n)
	}
	port := uint16(1000)
	syns := make([][]byte, 600)
	for i := range syns {
		syns[i] = tcp(netip.AddrPortFrom(client.Addr(), port+uint16(i)), vip, syn, 0)
	}
	i := 0
	if n := testing.AllocsPerRun(500, func() {
		w.Process(syns[i:i+1], verdicts)
		i++
	}); n != 0 {
		t.Errorf("new flow: %v allocs", n)
	}
}

// FuzzEngine feeds random packet sequences (a byte string cut into
// packets) to the engine: no panic, and every verdict is a known one.
func FuzzEngine(f *testing.F) {
	f.Add(tcp(client, vip, syn, 0), tcp(netip.MustParseAddrPort("198.18.2.11:8080"), client, synack, 0))
	f.Add(udp(netip.AddrPortFrom(rips[0], 4000), outside, 3), udp(outside, netip.AddrPortFrom(masqTo, 4000), 3))
	f.Add([]byte{0x45, 0, 0, 20}, []byte{0x60})
	f.Add(tcp(client, vip, syn, 0), tcp(netip.AddrPortFrom(rips[0], 8080), netip.AddrPortFrom(insideTo, 20000), synack, 0))
	f.Add(tcp(client, netip.AddrPortFrom(vip.Addr(), 443), syn, 0), udp(netip.AddrPortFrom(rips[0], 5353), client, 3))
	f.Add(tcp(client, netip.MustParseAddrPort("198.18.0.18:80"), syn, 0), udp(client, netip.MustParseAddrPort("198.18.0.17:80"), 3))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		for _, e := range []*nat.Engine{engine(t, nat.ModeNAT, 16), intoEngine(t, false), ipvsModelEngine(t)} {
			// Process translates in place: each engine gets the input as given.
			fuzzPair(t, e, append([]byte(nil), a...), append([]byte(nil), b...))
		}
	})
}

// ipvsModelEngine has the rest of IPVS's model: a persistent port-0
// service (every port of the VIP) over port-0 backends with connection
// thresholds, scheduled by lblcr, a one-packet UDP service, and a
// firewall-mark service with its marks.
func ipvsModelEngine(t *testing.T) *nat.Engine {
	var any, ops []nat.Backend
	for _, r := range rips {
		any = append(any, nat.Backend{Addr: r, Weight: 1, Upper: 2, Lower: 1})
		ops = append(ops, nat.Backend{Addr: r, Port: 5353, Weight: 1})
	}
	e, err := nat.New(nat.Config{Capacity: 16, Services: []nat.Service{
		{Proto: packet.ProtoTCP, VIP: vip.Addr(), Scheduler: "lblcr", Persistence: time.Minute, Backends: any, SynProxy: nat.SynProxyOff},
		{Proto: packet.ProtoUDP, VIP: vip.Addr(), Port: 53, Scheduler: "ovf", OnePacket: true, Backends: ops},
		{Fwmark: 7, VIP: netip.IPv4Unspecified(), Scheduler: "rr", Backends: any, SynProxy: nat.SynProxyOff},
	}, Marks: []nat.Mark{{Mark: 7, Dst: netip.MustParsePrefix("198.18.0.16/30"), Proto: packet.ProtoTCP}, {Mark: 8, Dst: netip.MustParsePrefix("198.18.0.17/32")}}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// fuzzPair is one FuzzEngine run on e.
func fuzzPair(t *testing.T, e *nat.Engine, a, b []byte) {
	w := e.NewWorker()
	v := make([]nat.Verdict, 3)
	w.Process([][]byte{a, b, append([]byte(nil), a...)}, v)
	for _, x := range v {
		if x > nat.Held {
			t.Fatalf("verdict %d", x)
		}
	}
	if err := e.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
	e.Advance(time.Hour)
	e.Expire()
	if e.Flows() != 0 {
		t.Fatalf("%d flows survive an hour", e.Flows())
	}
	if err := e.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
}

// TestBadPortRanges: an empty or inverted port range is refused, for
// masquerade rules and the FULLNAT pool (one made the engine divide by
// zero on the first flow, the other handed out ports outside it).
func TestBadPortRanges(t *testing.T) {
	for _, r := range [][2]uint16{{1, 0}, {60000, 1000}, {0, 100}} {
		_, err := nat.New(nat.Config{Masquerade: []nat.Masquerade{{From: netip.MustParsePrefix("198.18.2.0/24"), To: masqTo, Ports: r}}})
		if !errors.Is(err, nat.ErrConfig) {
			t.Errorf("masquerade ports %v: %v, want a config error", r, err)
		}
		_, err = nat.New(nat.Config{FullNATPool: []netip.Addr{lip}, FullNATPorts: r})
		if !errors.Is(err, nat.ErrConfig) {
			t.Errorf("FULLNAT ports %v: %v, want a config error", r, err)
		}
	}
}

// TestUpdateAllOrNothing: an Update whose second service has a bad backend
// list (listed twice) changes nothing, not even the first service, whose
// scheduler the live snapshot shares: new flows still go where they did.
func TestUpdateAllOrNothing(t *testing.T) {
	cfg := nat.Config{Capacity: 64, Services: []nat.Service{
		{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: 80, Scheduler: "rr", Backends: []nat.Backend{{Addr: rips[0], Port: 8080, Weight: 1}}},
		{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: 81, Scheduler: "rr", Backends: []nat.Backend{{Addr: rips[0], Port: 8080, Weight: 1}}},
	}}
	e, err := nat.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	bad := cfg
	bad.Services = []nat.Service{cfg.Services[0], cfg.Services[1]}
	bad.Services[0].Backends = []nat.Backend{{Addr: rips[1], Port: 8080, Weight: 1}}
	bad.Services[1].Backends = []nat.Backend{{Addr: rips[2], Port: 8080, Weight: 1}, {Addr: rips[2], Port: 8080, Weight: 1}}
	if err := e.Update(bad); !errors.Is(err, nat.ErrConfig) {
		t.Fatalf("Update with a backend listed twice: %v", err)
	}
	w := e.NewWorker()
	for i := range 3 {
		if d := connect(t, w, netip.AddrPortFrom(client.Addr(), uint16(3000+i))); d != rips[0] {
			t.Fatalf("after the refused Update a new flow went to %v, want %v", d, rips[0])
		}
	}
	if got := e.Config().Services[0].Backends[0].Addr; got != rips[0] {
		t.Fatalf("Config() lists %v after the refused Update", got)
	}
}

// TestRealServerNoFlow: a real server's packet that no flow knows (its
// flow expired) is dropped and counted, not masqueraded out of the server
// subnet: the client would get it from the wrong address, and the stray
// masquerade flow would hold the tuple its retries need.
func TestRealServerNoFlow(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	dns := netip.AddrPortFrom(vip.Addr(), 53)
	b := udp(client, dns, 8)
	one(w, b)
	_, rip := endpoints(t, b)
	e.Advance(301 * time.Second)
	if n := e.Expire(); n != 1 {
		t.Fatalf("Expire removed %d flows, want the UDP flow", n)
	}
	if v := one(w, udp(rip, client, 8)); v != nat.Drop || e.Drops(nat.DropRealServerNoFlow) != 1 || e.Flows() != 0 {
		t.Fatalf("late answer: %v, real_server_no_flow drops %d, %d flows; want drop, 1, 0", v, e.Drops(nat.DropRealServerNoFlow), e.Flows())
	}
	if v := one(w, udp(client, dns, 8)); v != nat.Forward {
		t.Fatalf("the client's retry: %v, want a new flow", v)
	}
	// The same host from another port is an inside host like any other:
	// masqueraded.
	if v := one(w, udp(netip.AddrPortFrom(rip.Addr(), 5353), netip.MustParseAddrPort("198.19.7.7:53"), 8)); v != nat.Forward {
		t.Fatalf("the real server's own query: %v, want it masqueraded", v)
	}
}

// TestDropUnmatchedAndL7: with DropUnmatched a packet that matches no
// flow, service or rule is dropped and counted instead of passed; a packet
// for an L7 service is handed to the proxy unchanged (ToL7), its
// fragments after it too, and the engine keeps no flow for it.
func TestDropUnmatchedAndL7(t *testing.T) {
	web := netip.AddrPortFrom(vip.Addr(), 8443)
	e, err := nat.New(nat.Config{Capacity: 64, DropUnmatched: true, Services: []nat.Service{
		{Proto: packet.ProtoTCP, VIP: web.Addr(), Port: web.Port(), Mode: nat.ModeL7, Scheduler: "rr",
			Backends: []nat.Backend{{Addr: rips[0], Port: 8080, Weight: 1}}},
		{Proto: packet.ProtoUDP, VIP: web.Addr(), Port: web.Port(), Mode: nat.ModeL7, Scheduler: "rr",
			Backends: []nat.Backend{{Addr: rips[0], Port: 8080, Weight: 1}}}}})
	if err != nil {
		t.Fatal(err)
	}
	w := e.NewWorker()
	if v := one(w, tcp(netip.AddrPortFrom(rips[0], 5000), far, syn, 0)); v != nat.Drop || e.Drops(nat.DropUnmatched) != 1 {
		t.Fatalf("unmatched with DropUnmatched: %v, unmatched drops %d; want drop, 1", v, e.Drops(nat.DropUnmatched))
	}
	b := tcp(client, web, syn, 0)
	orig := string(b)
	if v := one(w, b); v != nat.ToL7 || string(b) != orig || e.Flows() != 0 {
		t.Fatalf("SYN to the L7 service: %v (changed %v), %d flows; want to_l7, unchanged, 0", v, string(b) != orig, e.Flows())
	}
	_, v := through(w, fragments(client, web, 3000, 1480, 31))
	if len(v) != 3 {
		t.Fatalf("%d fragments of a datagram to the L7 service left, want 3", len(v))
	}
	for i, x := range v {
		if x != nat.ToL7 {
			t.Fatalf("fragment %d of a datagram to the L7 service: %v, want to_l7", i, x)
		}
	}
}
