package nat_test

import (
	"net/netip"
	"testing"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// insideTo is the address inbound (ipchains -d) masquerade rules give flows
// going into the server subnet: one the real servers reach on their link.
var insideTo = netip.MustParseAddr("198.18.2.254")

// intoEngine is engine's NAT configuration plus an inbound masquerade rule
// for the server subnet (ipchains -A forward -j MASQ -d 198.18.2.0/24) and
// a service whose real server lies outside it.
func intoEngine(t *testing.T, dropUnmatched bool) *nat.Engine {
	t.Helper()
	var bs []nat.Backend
	for _, r := range rips {
		bs = append(bs, nat.Backend{Addr: r, Port: 8080, Weight: 1})
	}
	e, err := nat.New(nat.Config{
		Capacity: 1024, ShardBits: 2, DropUnmatched: dropUnmatched, SourceFlows: 1 << 20, SourceHalfOpen: 1 << 20,
		Services: []nat.Service{
			{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: vip.Port(), Scheduler: "rr", Backends: bs},
			{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: 81, Scheduler: "rr",
				Backends: []nat.Backend{{Addr: far.Addr(), Port: far.Port(), Weight: 1}}},
			{Proto: packet.ProtoTCP, VIP: vip.Addr(), Port: 8080, Mode: nat.ModeFullNAT, Scheduler: "rr", Backends: bs},
		},
		Masquerade: []nat.Masquerade{
			{From: netip.MustParsePrefix("198.18.2.0/24"), To: masqTo},
			{Into: netip.MustParsePrefix("198.18.2.0/24"), To: insideTo, Ports: [2]uint16{20000, 20999}},
		},
		FullNATPool: []netip.Addr{lip},
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestMasqueradeInto: a NAT service's flow to a real server inside an
// inbound rule's subnet leaves with the rule's address and a port of its
// range, and its replies get the VIP and the client back; a real server
// outside the subnet sees the client; a FULLNAT service keeps its pool.
func TestMasqueradeInto(t *testing.T) {
	e := intoEngine(t, true)
	w := e.NewWorker()
	b := tcp(client, vip, syn, 0)
	if v := one(w, b); v != nat.Forward {
		t.Fatalf("SYN: verdict %v", v)
	}
	s, d := endpoints(t, b)
	checksumsValid(t, b)
	if s.Addr() != insideTo || s.Port() < 20000 || s.Port() > 20999 || d.Addr() != rips[0] {
		t.Fatalf("SYN left as %v > %v, want %v:20000-20999 > %v:8080", s, d, insideTo, rips[0])
	}
	r := tcp(d, s, synack, 0)
	if v := one(w, r); v != nat.Forward {
		t.Fatalf("SYN-ACK: verdict %v", v)
	}
	if rs, rd := endpoints(t, r); rs != vip || rd != client {
		t.Fatalf("reply %v > %v, want %v > %v", rs, rd, vip, client)
	}
	checksumsValid(t, r)

	// Outside the subnet: plain NAT, the real server sees the client.
	b = tcp(client, netip.AddrPortFrom(vip.Addr(), 81), syn, 0)
	one(w, b)
	if s, d := endpoints(t, b); s != client || d != far {
		t.Fatalf("NAT to a server outside the subnet: %v > %v, want %v > %v", s, d, client, far)
	}
	// FULLNAT keeps its own source.
	b = tcp(client, netip.AddrPortFrom(vip.Addr(), 8080), syn, 0)
	one(w, b)
	if s, _ := endpoints(t, b); s.Addr() != lip {
		t.Fatalf("FULLNAT service left from %v, want the pool's %v", s, lip)
	}
	// Unsolicited packets to the rule's address are refused.
	if v := one(w, udp(outside, netip.AddrPortFrom(insideTo, 20001), 1)); v != nat.Drop || e.Drops(nat.DropMasqUnsolicited) != 1 {
		t.Fatalf("unsolicited to %v: verdict %v, drops %d", insideTo, v, e.Drops(nat.DropMasqUnsolicited))
	}
	// Outbound masquerade is unaffected by the inbound rule.
	b = udp(netip.AddrPortFrom(rips[1], 33000), outside, 10)
	one(w, b)
	if s, _ := endpoints(t, b); s != netip.AddrPortFrom(masqTo, 33000) {
		t.Fatalf("outbound from the subnet left as %v, want %v:33000", s, masqTo)
	}
}

// TestMasqueradeIntoOpensNothing: an inbound rule masquerades service
// flows only: a packet from outside to a host in its subnet that matches
// no service is dropped (inbound_unsolicited) whatever the default,
// never passed and never given a mapping.
func TestMasqueradeIntoOpensNothing(t *testing.T) {
	host := netip.AddrPortFrom(rips[2], 161)
	for _, drop := range []bool{false, true} {
		e := intoEngine(t, drop)
		b := udp(client, host, 8)
		v := one(e.NewWorker(), b)
		if v != nat.Drop || e.Drops(nat.DropInboundUnsolicited) != 1 {
			t.Errorf("default drop %v: verdict %v", drop, v)
		}
		if e.Flows() != 0 {
			t.Errorf("default drop %v: %d flows made", drop, e.Flows())
		}
	}
}

// TestMasqueradeRuleShape: a rule needs exactly one subnet.
func TestMasqueradeRuleShape(t *testing.T) {
	net := netip.MustParsePrefix("198.18.2.0/24")
	for _, m := range []nat.Masquerade{
		{To: insideTo},
		{From: net, Into: net, To: insideTo},
		{Into: net, To: netip.MustParseAddr("2001:db8::20")},
	} {
		if _, err := nat.New(nat.Config{Masquerade: []nat.Masquerade{m}}); err == nil {
			t.Errorf("rule %+v accepted", m)
		}
	}
}

// TestSourceNotInside: a packet to be routed on for no service, flow or
// masquerade rule, whose source is no inside address — forged by an
// inside host (BCP 38), or a stranger's from the outside — is dropped
// whatever the default; an inside address's own unmasqueraded packet
// (a real server beyond the masqueraded subnet) follows the default.
func TestSourceNotInside(t *testing.T) {
	forged := netip.MustParseAddrPort("198.18.0.77:5000")
	for _, drop := range []bool{false, true} {
		e := intoEngine(t, drop)
		w := e.NewWorker()
		for _, b := range [][]byte{udp(forged, outside, 8), tcp(forged, outside, syn, 0)} {
			if v := one(w, b); v != nat.Drop {
				t.Errorf("default drop %v: forged source: verdict %v", drop, v)
			}
		}
		if n := e.Drops(nat.DropSourceNotInside); n != 2 {
			t.Errorf("default drop %v: source_not_inside %d, want 2", drop, n)
		}
		own := udp(netip.AddrPortFrom(far.Addr(), 5353), outside, 8)
		want := map[bool]nat.Verdict{false: nat.Pass, true: nat.Drop}[drop]
		if v := one(w, own); v != want {
			t.Errorf("default drop %v: a real server's own packet: verdict %v, want %v", drop, v, want)
		}
		if e.Flows() != 0 {
			t.Errorf("default drop %v: %d flows made", drop, e.Flows())
		}
	}
}

// TestNotRoutable: a packet to or from an address no router passes on —
// the MLD report a kernel sends from :: into its TUN, an inside host's
// mDNS or broadcast, a link-local or loopback source — is dropped as
// not_routable whatever the default: not masqueraded, not passed.
func TestNotRoutable(t *testing.T) {
	inside := netip.AddrPortFrom(rips[0], 5353)
	pkts := map[string][]byte{
		"MLD-like from ::":          udp(netip.MustParseAddrPort("[::]:0"), netip.MustParseAddrPort("[ff02::16]:9"), 8),
		"inside to mDNS":            udp(inside, netip.MustParseAddrPort("224.0.0.251:5353"), 8),
		"inside to broadcast":       udp(inside, netip.MustParseAddrPort("255.255.255.255:67"), 8),
		"link-local source":         udp(netip.MustParseAddrPort("[fe80::1]:5000"), netip.MustParseAddrPort("[2001:db8:99::1]:53"), 8),
		"loopback source":           tcp(netip.MustParseAddrPort("127.0.0.1:5000"), outside, syn, 0),
		"unspecified IPv4 source":   udp(netip.MustParseAddrPort("0.0.0.0:68"), outside, 8),
		"inside to a link-local v6": udp(netip.MustParseAddrPort("[2001:db8:1::5]:5000"), netip.MustParseAddrPort("[fe80::2]:53"), 8),
	}
	for _, drop := range []bool{false, true} {
		e := intoEngine(t, drop)
		w := e.NewWorker()
		for name, b := range pkts {
			if v := one(w, b); v != nat.Drop {
				t.Errorf("default drop %v: %s: verdict %v, want drop", drop, name, v)
			}
		}
		if n := e.Drops(nat.DropNotRoutable); n != uint64(len(pkts)) {
			t.Errorf("default drop %v: not_routable %d, want %d", drop, n, len(pkts))
		}
		if e.Flows() != 0 {
			t.Errorf("default drop %v: %d flows made", drop, e.Flows())
		}
	}
}

// TestMasqueradeOpensOnSYN: only a SYN opens a masqueraded TCP flow, only
// an echo request an echo flow; and an outside echo request matching an
// echo flow is not let in (the flow is a request out, its reply back).
func TestMasqueradeOpensOnSYN(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	in := netip.AddrPortFrom(rips[0], 40000)
	for i, flags := range []uint8{ack, rst, 0, finack} {
		if v := one(w, tcp(netip.AddrPortFrom(in.Addr(), uint16(40001+i)), far, flags, 0)); v != nat.Drop {
			t.Fatalf("flags %#x from inside: %v, want drop", flags, v)
		}
	}
	if e.Flows() != 0 || e.Drops(nat.DropNoFlow) != 4 {
		t.Fatalf("%d flows, no_flow drops %d; want 0, 4", e.Flows(), e.Drops(nat.DropNoFlow))
	}
	if v := one(w, tcp(in, far, syn, 0)); v != nat.Forward {
		t.Fatalf("SYN from inside: %v", v)
	}
	if v := one(w, echo(rips[1], far.Addr(), 9, 1, true)); v != nat.Drop {
		t.Fatalf("an echo reply from inside opened a flow: %v", v)
	}
	if v := one(w, echo(rips[1], far.Addr(), 7, 1, false)); v != nat.Forward {
		t.Fatalf("ping from inside: %v", v)
	}
	if v := one(w, echo(far.Addr(), masqTo, 7, 2, false)); v != nat.Drop || e.Drops(nat.DropMasqUnsolicited) != 1 {
		t.Fatalf("an outside ping matching the echo flow: %v, masq_unsolicited %d; want drop, 1", v, e.Drops(nat.DropMasqUnsolicited))
	}
	if v := one(w, echo(far.Addr(), masqTo, 7, 1, true)); v != nat.Forward {
		t.Fatalf("the ping's reply: %v, want forward", v)
	}
}
