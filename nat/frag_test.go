package nat_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// fragments cuts a UDP datagram from src to dst with payload bytes into
// IPv4 fragments of at most mtu bytes of IP payload (a multiple of 8).
func fragments(src, dst netip.AddrPort, payload, mtu int, id uint16) [][]byte {
	whole := udp(src, dst, payload) // checksum over the whole datagram
	body := whole[20:]
	var out [][]byte
	for off := 0; off < len(body); off += mtu {
		end := min(off+mtu, len(body))
		ip := &layers.IPv4{Version: 4, TTL: 64, Id: id, Protocol: layers.IPProtocolUDP,
			SrcIP: net.IP(src.Addr().AsSlice()), DstIP: net.IP(dst.Addr().AsSlice()), FragOffset: uint16(off / 8)}
		if end < len(body) {
			ip.Flags = layers.IPv4MoreFragments
		}
		buf := gopacket.NewSerializeBuffer()
		gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, gopacket.Payload(body[off:end]))
		out = append(out, append([]byte(nil), buf.Bytes()...))
	}
	return out
}

// reassemble glues translated fragments back together and returns the UDP
// datagram's endpoints, failing unless its checksum verifies.
func reassemble(t *testing.T, frags [][]byte) (src, dst netip.AddrPort) {
	t.Helper()
	var body []byte
	for _, f := range frags {
		var p packet.Parsed
		if r := packet.Parse(f, &p); r != packet.ReasonNone {
			t.Fatal(r)
		}
		if len(body) != int(p.FragOff) {
			t.Fatalf("fragment at %d, have %d bytes", p.FragOff, len(body))
		}
		body = append(body, f[p.L4Off:p.End]...)
	}
	hdr := append([]byte(nil), frags[0][:20]...)
	hdr[6], hdr[7] = 0, 0
	whole := append(hdr, body...)
	whole[2], whole[3] = byte(len(whole)>>8), byte(len(whole))
	packet.IPv4(whole).SetChecksum(packet.IPv4(whole).CalculateChecksum())
	checksumsValid(t, whole)
	return endpoints(t, whole)
}

// TestFragments: a UDP datagram in three fragments through NAT is held
// until whole, then reaches the backend in order, reassemblable with a
// valid checksum, and the answer, also in fragments, comes back from the
// VIP; a datagram whose fragments come in reverse order is answered too.
func TestFragments(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	dnsVIP := netip.AddrPortFrom(vip.Addr(), 53)
	in := fragments(client, dnsVIP, 3000, 1480, 7)
	if len(in) != 3 {
		t.Fatalf("%d fragments", len(in))
	}
	if x := one(w, in[0]); x != nat.Held {
		t.Fatalf("the first fragment alone: %v, want held", x)
	}
	if rel, _ := w.Released(); len(rel) != 0 {
		t.Fatalf("%d fragments released before the datagram was whole", len(rel))
	}
	got, v := through(w, in[1:])
	for i, x := range v {
		if x != nat.Forward {
			t.Fatalf("fragment %d: %v", i, x)
		}
	}
	s, d := reassemble(t, got)
	if s != client || d.Addr() != rips[0] || d.Port() != 8080 {
		t.Fatalf("reassembled %v > %v, want %v > %v:8080", s, d, client, rips[0])
	}
	out, _ := through(w, fragments(d, client, 2000, 1480, 9))
	if s, d := reassemble(t, out); s != dnsVIP || d != client {
		t.Fatalf("reply reassembled %v > %v, want %v > %v", s, d, dnsVIP, client)
	}

	// Reverse order: the tail first.
	early := fragments(netip.AddrPortFrom(client.Addr(), 41000), dnsVIP, 3000, 1480, 11)
	got, v = through(w, [][]byte{early[2], early[1], early[0]})
	if len(got) != 3 || v[0] != nat.Forward {
		t.Fatalf("reversed fragments: %d out, %v", len(got), v)
	}
	if s, _ := reassemble(t, got); s.Port() != 41000 {
		t.Fatalf("reversed datagram from %v", s)
	}
}

// TestFragmentStorm: 20,000 incomplete datagrams from 64 /24s fill the
// pool; none of their fragments leaves the gateway, a datagram that
// completes among them is forwarded whole, the pool gives up the oldest,
// a /24 past its share is refused, and expiry empties the pool, every
// fragment counted.
func TestFragmentStorm(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	dnsVIP := netip.AddrPortFrom(vip.Addr(), 53)
	left := 0
	for i := range 20000 {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8 & 0x3f), byte(i)}), 5000)
		f := fragments(src, dnsVIP, 3000, 1480, uint16(i))
		out, _ := through(w, f[:2]) // never the last
		left += len(out)
		if i == 10000 {
			legit := fragments(netip.AddrPortFrom(client.Addr(), 42000), dnsVIP, 3000, 1480, 77)
			got, v := through(w, legit)
			if len(got) != 3 || v[0] != nat.Forward {
				t.Fatalf("the real datagram in the storm: %d out, %v", len(got), v)
			}
		}
	}
	if left != 0 {
		t.Fatalf("%d storm fragments left the gateway", left)
	}
	if e.Drops(nat.DropFragmentIncomplete) == 0 {
		t.Fatal("the pool gave up nothing")
	}
	e.Advance(time.Hour)
	e.Expire()
	if n, b := e.Drops(nat.DropFragmentIncomplete), e.Drops(nat.DropFragmentBudget); n+b != 2*20000 || b == 0 {
		t.Fatalf("fragment_incomplete %d + fragment_budget %d, want every storm fragment (40000), some over their /24's share", n, b)
	}
}

// TestFragmentMalformed: overlapping fragments end their datagram, and
// nothing of it leaves.
func TestFragmentMalformed(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	dnsVIP := netip.AddrPortFrom(vip.Addr(), 53)
	a := fragments(client, dnsVIP, 3000, 1480, 5)
	b := fragments(client, dnsVIP, 3000, 1000, 5) // the same datagram cut elsewhere
	out, _ := through(w, [][]byte{a[0], b[1], a[1], a[2]})
	if len(out) != 0 || e.Drops(nat.DropFragmentMalformed) == 0 {
		t.Fatalf("%d fragments of an overlapping datagram left; malformed drops %d", len(out), e.Drops(nat.DropFragmentMalformed))
	}
}

// TestFragmentsPassed: a datagram that matches no service or rule passes
// the gateway unchanged (the default), all of its fragments: the later
// ones get their first's verdict, not a no_first drop.
func TestFragmentsPassed(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	in := fragments(client, netip.MustParseAddrPort("198.19.5.5:9"), 3000, 1480, 21)
	orig := make([]string, len(in))
	for i := range in {
		orig[i] = string(in[i])
	}
	got, v := through(w, in)
	for i, x := range v {
		if x != nat.Pass || string(got[i]) != orig[i] {
			t.Fatalf("fragment %d: %v (changed: %v), want pass, unchanged", i, x, string(got[i]) != orig[i])
		}
	}
	if n := e.Drops(nat.DropFragmentNoFirst); n != 0 {
		t.Fatalf("%d no_first drops", n)
	}
}

// TestFragmentsAfterReset: a first fragment of a flow whose backend was
// removed (ResetRemoved) is dropped untranslated; the fragments after it
// must not be forwarded with its untranslated addresses (to the VIP, which
// routes back into the gateway): they are dropped too.
func TestFragmentsAfterReset(t *testing.T) {
	cfg := nat.Config{Capacity: 64, ResetRemoved: true, Services: []nat.Service{{Proto: packet.ProtoUDP, VIP: vip.Addr(), Port: 53,
		Scheduler: "rr", Backends: []nat.Backend{{Addr: rips[0], Port: 53, Weight: 1}, {Addr: rips[1], Port: 53, Weight: 1}}}}}
	e, err := nat.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := e.NewWorker()
	dst := netip.AddrPortFrom(vip.Addr(), 53)
	b := udp(client, dst, 8)
	one(w, b)
	_, got := endpoints(t, b)
	var keep []nat.Backend
	for _, be := range cfg.Services[0].Backends {
		if be.Addr != got.Addr() {
			keep = append(keep, be)
		}
	}
	cfg.Services[0].Backends = keep
	if err := e.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if out, v := through(w, fragments(client, dst, 3000, 1480, 7)); len(out) != 0 {
		t.Fatalf("%d fragments of a datagram of a reset flow left (%v), want none", len(out), v)
	}
}
