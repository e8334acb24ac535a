package packet_test

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vsgate/vsgate/packet"
)

// Test addresses: benchmark range (RFC 2544) and documentation prefix.
var (
	testClient4 = net.IP{198, 18, 0, 1}
	testVIP4    = net.IP{198, 18, 0, 10}
	testClient6 = net.ParseIP("2001:db8::1")
	testVIP6    = net.ParseIP("2001:db8::10")
)

func tcpSpec(v6 bool, payload int) *spec {
	s := &spec{v6: v6, proto: 6, ttl: 64, sport: 40000, dport: 80, tcpFlags: packet.TCPFlagACK,
		seq: 1, ack: 2, window: 65535, payload: make([]byte, payload)}
	s.src, s.dst = testClient4, testVIP4
	if v6 {
		s.src, s.dst = testClient6, testVIP6
	}
	return s
}

func udpSpec(v6 bool, payload int) *spec {
	s := tcpSpec(v6, payload)
	s.proto, s.dport = 17, 53
	return s
}

// TestParseMalformed feeds one broken packet of each kind and checks the
// reason. None may panic; each must leave Version 0.
func TestParseMalformed(t *testing.T) {
	v4 := tcpSpec(false, 10).serialize()
	v6 := udpSpec(true, 10).serialize()
	edit := func(b []byte, f func([]byte) []byte) []byte { return f(append([]byte(nil), b...)) }
	v6ext := func(next byte, ext []byte, rest []byte) []byte {
		b := append(append([]byte(nil), v6[:40]...), ext...)
		b = append(b, rest...)
		b[6] = next
		binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
		return b
	}
	udp := v6[40:]
	for _, tc := range []struct {
		name string
		b    []byte
		want packet.Reason
	}{
		{"empty", nil, packet.ReasonTruncated},
		{"v4 shorter than 20", v4[:19], packet.ReasonTruncated},
		{"v6 shorter than 40", v6[:39], packet.ReasonTruncated},
		{"version 5", edit(v4, func(b []byte) []byte { b[0] = 0x55; return b }), packet.ReasonBadVersion},
		{"version 0", edit(v4, func(b []byte) []byte { b[0] = 0x05; return b }), packet.ReasonBadVersion},
		{"IHL 4", edit(v4, func(b []byte) []byte { b[0] = 0x44; return b }), packet.ReasonBadIHL},
		{"IHL past the buffer", edit(v4[:30], func(b []byte) []byte { b[0] = 0x4f; return b }), packet.ReasonTruncated},
		{"total length below IHL", edit(v4, func(b []byte) []byte { binary.BigEndian.PutUint16(b[2:], 19); return b }), packet.ReasonBadTotalLength},
		{"total length past the buffer", v4[:len(v4)-1], packet.ReasonLengthExceedsBuffer},
		{"v6 payload length past the buffer", v6[:len(v6)-1], packet.ReasonLengthExceedsBuffer},
		{"v4 option length 0", edit(v4, func(b []byte) []byte {
			b = append(b[:20:20], append([]byte{7, 0, 0, 0}, b[20:]...)...)
			b[0] = 0x46
			binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
			return b
		}), packet.ReasonBadIPv4Options},
		{"v4 option past the header", edit(v4, func(b []byte) []byte {
			b = append(b[:20:20], append([]byte{7, 9, 4, 0}, b[20:]...)...)
			b[0] = 0x46
			binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
			return b
		}), packet.ReasonBadIPv4Options},
		{"v4 fragment past 65535", edit(v4, func(b []byte) []byte { binary.BigEndian.PutUint16(b[6:], 0x1fff); return b }), packet.ReasonBadFragment},
		{"v6 extension header truncated", v6ext(60, []byte{17, 1, 0, 0, 0, 0, 0, 0}, nil), packet.ReasonBadExtHeader},
		{"v6 extension chain runs off the end", v6ext(60, []byte{60, 0, 0, 0}, nil), packet.ReasonBadExtHeader},
		{"v6 hop-by-hop not first", v6ext(60, []byte{0, 0, 0, 0, 0, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0, 0}, udp), packet.ReasonBadExtHeader},
		{"v6 two fragment headers", v6ext(44, []byte{44, 0, 0, 1, 0, 0, 0, 1, 17, 0, 0, 1, 0, 0, 0, 1}, udp[:8]), packet.ReasonBadExtHeader},
		{"v6 non-final fragment not a multiple of 8", v6ext(44, []byte{17, 0, 0, 1, 0, 0, 0, 1}, udp[:9]), packet.ReasonBadFragment},
		{"v6 fragment past 65535", v6ext(44, []byte{17, 0, 0xff, 0xf8, 0, 0, 0, 1}, udp[:16]), packet.ReasonBadFragment},
		{"v6 nine destination options headers", v6ext(60, destOpts(9), udp), packet.ReasonExtHeaderChain},
		{"TCP header cut short", edit(v4, func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[2:], 20+19)
			return b[:39]
		}), packet.ReasonTruncatedL4},
		{"TCP header cut short in a first fragment", edit(v4, func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[2:], 20+8)
			binary.BigEndian.PutUint16(b[6:], 0x2000)
			return b[:28]
		}), packet.ReasonTruncatedL4},
		{"TCP data offset 4", edit(v4, func(b []byte) []byte { b[32] = 0x40; return b }), packet.ReasonBadTCPDataOffset},
		{"TCP data offset past the packet", edit(v4, func(b []byte) []byte { b[32] = 0xf0; return b }), packet.ReasonBadTCPDataOffset},
		{"UDP header cut short", v6ext(17, nil, udp[:7]), packet.ReasonTruncatedL4},
		{"UDP length 7", v6ext(17, nil, edit(udp, func(b []byte) []byte { binary.BigEndian.PutUint16(b[4:], 7); return b })), packet.ReasonBadUDPLength},
		{"UDP length past the packet", v6ext(17, nil, edit(udp, func(b []byte) []byte { binary.BigEndian.PutUint16(b[4:], 100); return b })), packet.ReasonBadUDPLength},
		{"ICMP header cut short", v6ext(58, nil, []byte{128, 0, 0, 0, 0, 1, 0}), packet.ReasonTruncatedL4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p packet.Parsed
			got := packet.Parse(tc.b, &p)
			if got != tc.want || p.Reason != tc.want {
				t.Errorf("Parse = %v (p.Reason %v), want %v", got, p.Reason, tc.want)
			}
			if p.Version != 0 {
				t.Errorf("Version = %d on failure, want 0", p.Version)
			}
			if tc.want.String() == "unknown" || tc.want.String() == "" {
				t.Errorf("reason %d has no name", tc.want)
			}
		})
	}
}

// TestParseLenient covers inputs that are odd but valid.
func TestParseLenient(t *testing.T) {
	var p packet.Parsed
	t.Run("link padding after the datagram", func(t *testing.T) {
		b := append(tcpSpec(false, 0).serialize(), 0, 0, 0, 0, 0, 0)
		if r := packet.Parse(b, &p); r != packet.ReasonNone || p.End != len(b)-6 {
			t.Fatalf("Parse = %v, End %d, want none and %d", r, p.End, len(b)-6)
		}
	})
	t.Run("IPv6 no next header", func(t *testing.T) {
		s := tcpSpec(true, 0)
		s.proto = 59
		if r := packet.Parse(s.serialize(), &p); r != packet.ReasonNone || p.Proto != 59 || p.HasPorts() {
			t.Fatalf("Parse = %v proto %d ports %v", r, p.Proto, p.HasPorts())
		}
	})
	t.Run("IPv6 atomic fragment is not a fragment", func(t *testing.T) {
		s := udpSpec(true, 5)
		s.fragHdr, s.fragID = true, 7
		if r := packet.Parse(s.serialize(), &p); r != packet.ReasonNone || p.IsFragment() || !p.HasPorts() || p.DstPort != 53 {
			t.Fatalf("Parse = %v fragment %v ports %v", r, p.IsFragment(), p.HasPorts())
		}
	})
	t.Run("later fragment with too little data for any L4 header", func(t *testing.T) {
		s := tcpSpec(false, 0)
		s.fragOff, s.payload = 8, []byte{1}
		if r := packet.Parse(s.serialize(), &p); r != packet.ReasonNone || p.HasL4Header() {
			t.Fatalf("Parse = %v HasL4Header %v", r, p.HasL4Header())
		}
	})
	t.Run("IPv4 UDP first fragment: length covers the whole datagram", func(t *testing.T) {
		s := udpSpec(false, 16)
		s.mf = true
		b := s.serialize()
		binary.BigEndian.PutUint16(b[24:], 3000)
		if r := packet.Parse(b, &p); r != packet.ReasonNone || p.DstPort != 53 {
			t.Fatalf("Parse = %v", r)
		}
	})
}

// TestSourceRoutedIPv6 checks an IPv6 routing header with segments left:
// Parse flags it, and a destination rewrite leaves the transport checksum
// (which covers the final destination) valid, as gopacket verifies it.
func TestSourceRoutedIPv6(t *testing.T) {
	for _, rtype := range []uint8{0, 2, 4} {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, SrcIP: testClient6, DstIP: testVIP6, NextHeader: layers.IPProtocolIPv6Routing}
		rh := &layers.IPv6Routing{RoutingType: rtype, SegmentsLeft: 1, Reserved: make([]byte, 4),
			Data: net.ParseIP("2001:db8::99")}
		rh.NextHeader = layers.IPProtocolTCP
		tcp := &layers.TCP{SrcPort: 1, DstPort: 80, SYN: true, Window: 1}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, ip, rh, tcp); err != nil {
			t.Fatal(err)
		}
		b := buf.Bytes()
		// Let gopacket's decoder, which knows the final destination,
		// compute the checksum to start from.
		setTCPChecksumByGopacket(t, b)
		var p packet.Parsed
		if r := packet.Parse(b, &p); r != packet.ReasonNone || !p.SourceRouted {
			t.Fatalf("type %d: Parse = %v, SourceRouted %v", rtype, r, p.SourceRouted)
		}
		packet.SetDst(b, &p, to16(net.ParseIP("2001:db8::77")), 8080)
		if !tcpChecksumValid(t, b) {
			t.Errorf("type %d: TCP checksum invalid after SetDst on a source-routed packet", rtype)
		}
	}
}

func decodeTCP(t *testing.T, b []byte) *layers.TCP {
	t.Helper()
	pkt := gopacket.NewPacket(b, layers.LayerTypeIPv6, gopacket.NoCopy)
	tcp, ok := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if !ok {
		t.Fatalf("gopacket found no TCP layer: %v", pkt)
	}
	if err := tcp.SetNetworkLayerForChecksum(pkt.NetworkLayer()); err != nil {
		t.Fatal(err)
	}
	return tcp
}

func setTCPChecksumByGopacket(t *testing.T, b []byte) {
	tcp := decodeTCP(t, b)
	err, v := tcp.VerifyChecksum()
	if err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint16(b[len(b)-len(tcp.Contents)-len(tcp.Payload)+16:], uint16(v.Correct))
}

func tcpChecksumValid(t *testing.T, b []byte) bool {
	err, v := decodeTCP(t, b).VerifyChecksum()
	if err != nil {
		t.Fatal(err)
	}
	return v.Valid
}

// TestQuoteCutInsideChecksum covers an ICMP error whose quote ends in the
// middle of the quoted TCP checksum: the half field cannot be updated (its
// missing byte feeds the carry) and is left alone, and the ICMP checksum
// still verifies.
func TestQuoteCutInsideChecksum(t *testing.T) {
	q := tcpSpec(false, 0)
	s := &spec{proto: 1, ttl: 64, src: testVIP4, dst: testClient4, icmpType: 3, icmpCode: 4,
		quote: q, quoteLen: 20 + 17}
	b := s.serialize()
	var p, inner packet.Parsed
	if r := packet.Parse(b, &p); r != packet.ReasonNone {
		t.Fatal(r)
	}
	if r := packet.ParseICMPError(b, &p, &inner); r != packet.ReasonNone {
		t.Fatal(r, inner.Reason)
	}
	half := b[inner.L4Off+16]
	packet.SetInnerSrc(b, &p, &inner, to16(net.IP{198, 18, 1, 2}), 8080)
	if b[inner.L4Off+16] != half {
		t.Errorf("half checksum byte changed")
	}
	ic := gopacket.NewPacket(b, layers.LayerTypeIPv4, gopacket.NoCopy).Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if _, v := ic.VerifyChecksum(); !v.Valid {
		t.Errorf("ICMP checksum invalid after rewriting the quote: %+v", v)
	}
}

// TestParseICMPErrorRejects covers ICMP messages that carry no usable quote.
func TestParseICMPErrorRejects(t *testing.T) {
	var p, inner packet.Parsed
	echo := &spec{proto: 1, ttl: 64, src: testVIP4, dst: testClient4, icmpType: 8}
	packet.Parse(echo.serialize(), &p)
	if r := packet.ParseICMPError(echo.serialize(), &p, &inner); r != packet.ReasonNotICMPError {
		t.Errorf("echo: ParseICMPError = %v, want not_icmp_error", r)
	}
	short := &spec{proto: 1, ttl: 64, src: testVIP4, dst: testClient4, icmpType: 3, quote: tcpSpec(false, 0), quoteLen: 27}
	b := short.serialize()
	packet.Parse(b, &p)
	if r := packet.ParseICMPError(b, &p, &inner); r != packet.ReasonBadICMPInner || inner.Reason != packet.ReasonTruncatedL4 {
		t.Errorf("7 bytes of quoted TCP: ParseICMPError = %v (inner %v), want bad_icmp_inner (truncated_l4)", r, inner.Reason)
	}
	mixed := &spec{proto: 1, ttl: 64, src: testVIP4, dst: testClient4, icmpType: 3, quote: tcpSpec(true, 0), quoteLen: 48}
	b = mixed.serialize()
	packet.Parse(b, &p)
	if r := packet.ParseICMPError(b, &p, &inner); r != packet.ReasonBadICMPInner || inner.Reason != packet.ReasonBadVersion {
		t.Errorf("IPv6 quoted in ICMPv4: ParseICMPError = %v (inner %v), want bad_icmp_inner (bad_version)", r, inner.Reason)
	}
}

// TestParseNeverPanics throws random bytes and random mutations of valid
// packets at Parse and ParseICMPError.
func TestParseNeverPanics(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 4))
	var p, inner packet.Parsed
	for range 20000 {
		b := gen(r).serialize()
		for range 1 + r.IntN(4) {
			b[r.IntN(len(b))] = byte(r.Uint32())
		}
		b = b[:r.IntN(len(b)+1)]
		if packet.Parse(b, &p) == packet.ReasonNone && p.IsICMPError() {
			packet.ParseICMPError(b, &p, &inner)
		}
	}
}

// destOpts is a chain of n empty destination options headers, the last
// followed by UDP.
func destOpts(n int) []byte {
	var b []byte
	for i := range n {
		next := byte(60)
		if i == n-1 {
			next = 17
		}
		b = append(b, next, 0, 1, 4, 0, 0, 0, 0) // PadN over the six bytes
	}
	return b
}

// TestExtHeaderBound: a chain of MaxIPv6ExtHeaders parses; one more is
// dropped with its own reason.
func TestExtHeaderBound(t *testing.T) {
	for n, want := range map[int]packet.Reason{packet.MaxIPv6ExtHeaders: packet.ReasonNone, packet.MaxIPv6ExtHeaders + 1: packet.ReasonExtHeaderChain} {
		ext := destOpts(n)
		udp := []byte{0x9c, 0x40, 0, 53, 0, 8, 0, 0}
		b := make([]byte, 40, 40+len(ext)+len(udp))
		b[0], b[6], b[7] = 0x60, 60, 64
		copy(b[8:], []byte{0x20, 0x01, 0x0d, 0xb8}) // 2001:db8:: to 2001:db8::
		copy(b[24:], []byte{0x20, 0x01, 0x0d, 0xb8})
		b = append(append(b, ext...), udp...)
		b[4], b[5] = byte((len(b)-40)>>8), byte(len(b)-40)
		var p packet.Parsed
		if r := packet.Parse(b, &p); r != want {
			t.Errorf("%d extension headers: %v, want %v", n, r, want)
		}
	}
}
