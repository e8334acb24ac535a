package nat_test

import (
	"net"
	"net/netip"
	"testing"

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

// TestFragments: a UDP datagram in three fragments through NAT reaches the
// backend reassemblable with a valid checksum, and the answer, also in
// fragments, comes back from the VIP; a later fragment that arrives before
// its first is dropped and counted, never translated wrongly.
func TestFragments(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	dnsVIP := netip.AddrPortFrom(vip.Addr(), 53)
	in := fragments(client, dnsVIP, 3000, 1480, 7)
	if len(in) != 3 {
		t.Fatalf("%d fragments", len(in))
	}
	v := make([]nat.Verdict, len(in))
	w.Process(in, v)
	for i, x := range v {
		if x != nat.Forward {
			t.Fatalf("fragment %d: %v", i, x)
		}
	}
	s, d := reassemble(t, in)
	if s != client || d.Addr() != rips[0] || d.Port() != 8080 {
		t.Fatalf("reassembled %v > %v, want %v > %v:8080", s, d, client, rips[0])
	}
	out := fragments(d, client, 2000, 1480, 9)
	w.Process(out, v[:len(out)])
	if s, d := reassemble(t, out); s != dnsVIP || d != client {
		t.Fatalf("reply reassembled %v > %v, want %v > %v", s, d, dnsVIP, client)
	}

	// Out of order: the tail of a new datagram before its head.
	early := fragments(netip.AddrPortFrom(client.Addr(), 41000), dnsVIP, 3000, 1480, 11)
	orig := append([]byte(nil), early[2]...)
	if x := one(w, early[2]); x != nat.Drop || e.Drops(nat.DropFragmentNoFirst) != 1 || string(early[2]) != string(orig) {
		t.Fatalf("early tail: verdict %v, no_first drops %d", x, e.Drops(nat.DropFragmentNoFirst))
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
	v := make([]nat.Verdict, len(in))
	w.Process(in, v)
	for i, x := range v {
		if x != nat.Pass || string(in[i]) != orig[i] {
			t.Fatalf("fragment %d: %v (changed: %v), want pass, unchanged", i, x, string(in[i]) != orig[i])
		}
	}
	if n := e.Drops(nat.DropFragmentNoFirst); n != 0 {
		t.Fatalf("%d no_first drops", n)
	}
}
