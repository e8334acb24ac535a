package packet_test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vsgate/vsgate/packet"
)

// oracleCount is how many random packets the gopacket oracle tests check.
func oracleCount(t *testing.T) int {
	if testing.Short() {
		return 10_000
	}
	return 100_000
}

// to16 returns a gopacket address in Parsed's 16-byte form.
func to16(ip net.IP) [16]byte { return [16]byte(ip.To16()) }

// TestParseAgreesWithGopacket parses seeded random valid packets and checks
// every field Parse returns against gopacket's decoding of the same bytes,
// and every checksum against gopacket's computation.
func TestParseAgreesWithGopacket(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 2))
	var p, inner packet.Parsed
	seen := map[string]int{}
	for i := range oracleCount(t) {
		s := gen(r)
		b := s.serialize()
		if reason := packet.Parse(b, &p); reason != packet.ReasonNone {
			t.Fatalf("packet %d: Parse = %v for a valid packet\n%x", i, reason, b)
		}
		countKinds(seen, s, &p)
		if err := checkParse(b, &p); err != nil {
			t.Fatalf("packet %d: %v\n%x", i, err, b)
		}
		if s.isICMPErr() {
			if reason := packet.ParseICMPError(b, &p, &inner); reason != packet.ReasonNone {
				t.Fatalf("packet %d: ParseICMPError = %v (inner %v)\n%x", i, reason, inner.Reason, b)
			}
			if err := checkQuote(b, &inner, s.quote); err != nil {
				t.Fatalf("packet %d: quote: %v\n%x", i, err, b)
			}
		}
	}
	requireKinds(t, seen, oracleCount(t)/1000)
}

// countKinds tallies what a generated packet exercises, so the oracle tests
// can prove the generator covered every kind of packet they claim to.
func countKinds(seen map[string]int, s *spec, p *packet.Parsed) {
	fam := "v4"
	if s.v6 {
		fam = "v6"
	}
	kind := map[uint8]string{6: "tcp", 17: "udp", 1: "icmp", 58: "icmp", 253: "other"}[s.proto]
	if s.isICMPErr() {
		kind = "icmperr"
	}
	seen[fam+"/"+kind]++
	switch {
	case p.FragOff != 0:
		seen[fam+"/later-fragment"]++
	case p.MoreFrags:
		seen[fam+"/first-fragment"]++
	}
	if len(s.v4opts) > 0 {
		seen["v4/options"]++
	}
	if p.SourceRouted {
		seen[fam+"/source-routed"]++
	}
	if s.hbh && s.routing && s.destOpts {
		seen["v6/hbh+dest+routing"]++
	}
	if s.udpNoCsum {
		seen["v4/udp-no-checksum"]++
	}
}

// requireKinds fails unless every kind was seen at least min times.
func requireKinds(t *testing.T, seen map[string]int, min int) {
	t.Helper()
	for _, k := range []string{
		"v4/tcp", "v4/udp", "v4/icmp", "v4/icmperr", "v4/other", "v4/first-fragment", "v4/later-fragment",
		"v4/options", "v4/source-routed", "v4/udp-no-checksum",
		"v6/tcp", "v6/udp", "v6/icmp", "v6/icmperr", "v6/other", "v6/first-fragment", "v6/later-fragment",
		"v6/hbh+dest+routing",
	} {
		if seen[k] < min {
			t.Errorf("generator produced %d %s packets, want at least %d", seen[k], k, min)
		}
	}
}

// checkParse compares p, parsed from b, with gopacket's view of b.
func checkParse(b []byte, p *packet.Parsed) error {
	first := layers.LayerTypeIPv4
	if b[0]>>4 == 6 {
		first = layers.LayerTypeIPv6
	}
	pkt := gopacket.NewPacket(b, first, gopacket.NoCopy)
	var (
		ipLayer   gopacket.NetworkLayer
		proto     layers.IPProtocol
		netEnd    int // offset just past the IP header and its extensions
		fragOff   uint16
		mf        bool
		fragID    uint32
		end       int
		srcRouted bool
	)
	offsetAfter := func(l gopacket.Layer) int { return len(b) - len(l.LayerPayload()) }
layers:
	for _, l := range pkt.Layers() {
		switch l := l.(type) {
		case *layers.IPv4:
			if ipLayer != nil {
				break layers // an encapsulated packet gopacket found in the payload
			}
			if p.Version != 4 {
				return fmt.Errorf("version %d, gopacket 4", p.Version)
			}
			ipLayer, proto, netEnd, end = l, l.Protocol, offsetAfter(l), int(l.Length)
			fragOff, mf, fragID = l.FragOffset*8, l.Flags&layers.IPv4MoreFragments != 0, uint32(l.Id)
			if err, v := l.VerifyChecksum(); err != nil || !v.Valid || uint16(v.Correct) != packet.IPv4(b).CalculateChecksum() {
				return fmt.Errorf("IPv4 checksum: gopacket %+v, ours %#04x", v, packet.IPv4(b).CalculateChecksum())
			}
			for _, o := range l.Options {
				if (o.OptionType == 131 || o.OptionType == 137) && int(o.OptionData[0]) <= int(o.OptionLength) {
					srcRouted = true
				}
			}
		case *layers.IPv6:
			if ipLayer != nil {
				break layers
			}
			if p.Version != 6 {
				return fmt.Errorf("version %d, gopacket 6", p.Version)
			}
			ipLayer, proto, netEnd, end = l, l.NextHeader, 40, 40+int(l.Length)
		case *layers.IPv6HopByHop:
			proto, netEnd = l.NextHeader, offsetAfter(l)
		case *layers.IPv6Destination:
			proto, netEnd = l.NextHeader, offsetAfter(l)
		case *layers.IPv6Routing:
			proto, netEnd = l.NextHeader, offsetAfter(l)
			srcRouted = srcRouted || l.SegmentsLeft > 0
		case *layers.IPv6Fragment:
			proto, netEnd = l.NextHeader, offsetAfter(l)
			fragOff, mf, fragID = l.FragmentOffset*8, l.MoreFragments, l.Identification
		default:
			break layers
		}
	}
	src, dst := ipLayer.NetworkFlow().Endpoints()
	switch {
	case p.Src != to16(src.Raw()) || p.Dst != to16(dst.Raw()):
		return fmt.Errorf("addresses %x > %x, gopacket %v > %v", p.Src, p.Dst, src, dst)
	case p.Proto != uint8(proto):
		return fmt.Errorf("proto %d, gopacket %d", p.Proto, proto)
	case p.FragOff != fragOff || p.MoreFrags != mf || (p.IsFragment() && p.FragID != fragID):
		return fmt.Errorf("fragment off %d mf %v id %d, gopacket %d %v %d", p.FragOff, p.MoreFrags, p.FragID, fragOff, mf, fragID)
	case p.End != end:
		return fmt.Errorf("end %d, gopacket %d", p.End, end)
	case p.L4Off != netEnd:
		return fmt.Errorf("L4 offset %d, gopacket %d", p.L4Off, netEnd)
	case p.SourceRouted != srcRouted:
		return fmt.Errorf("source routed %v, gopacket %v", p.SourceRouted, srcRouted)
	case p.L3Off != 0 || p.Quoted:
		return fmt.Errorf("L3Off %d quoted %v for an outer packet", p.L3Off, p.Quoted)
	}
	if fragOff != 0 {
		if p.PayloadOff != p.L4Off || p.SrcPort != 0 || p.DstPort != 0 {
			return fmt.Errorf("later fragment with L4 fields: %+v", p)
		}
		return nil
	}
	return checkL4(b, p, ipLayer)
}

// checkL4 decodes the upper-layer header with gopacket (also for a first
// fragment, where gopacket itself stops at the fragment) and compares.
func checkL4(b []byte, p *packet.Parsed, ipLayer gopacket.NetworkLayer) error {
	l4 := b[p.L4Off:p.End]
	nf := gopacket.NilDecodeFeedback
	var want uint16 // gopacket's computed checksum
	switch {
	case p.Proto == 6:
		var t layers.TCP
		if err := t.DecodeFromBytes(l4, nf); err != nil {
			return err
		}
		flags := uint8(0)
		for i, f := range []bool{t.FIN, t.SYN, t.RST, t.PSH, t.ACK, t.URG, t.ECE, t.CWR} {
			if f {
				flags |= 1 << i
			}
		}
		if p.SrcPort != uint16(t.SrcPort) || p.DstPort != uint16(t.DstPort) || p.TCPFlags != flags ||
			p.PayloadOff-p.L4Off != len(t.Contents) || !p.HasPorts() {
			return fmt.Errorf("TCP %d>%d flags %#x hdr %d, gopacket %d>%d %#x %d",
				p.SrcPort, p.DstPort, p.TCPFlags, p.PayloadOff-p.L4Off, t.SrcPort, t.DstPort, flags, len(t.Contents))
		}
		t.SetNetworkLayerForChecksum(ipLayer)
		_, v := t.VerifyChecksum()
		want = uint16(v.Correct)
	case p.Proto == 17:
		var u layers.UDP
		if err := u.DecodeFromBytes(l4, nf); err != nil {
			return err
		}
		if p.SrcPort != uint16(u.SrcPort) || p.DstPort != uint16(u.DstPort) || p.PayloadOff-p.L4Off != 8 {
			return fmt.Errorf("UDP %d>%d, gopacket %d>%d", p.SrcPort, p.DstPort, u.SrcPort, u.DstPort)
		}
		u.SetNetworkLayerForChecksum(ipLayer)
		_, v := u.VerifyChecksum()
		want = uint16(v.Correct)
	case p.Version == 4 && p.Proto == 1:
		var ic layers.ICMPv4
		if err := ic.DecodeFromBytes(l4, nf); err != nil {
			return err
		}
		if p.ICMPType != ic.TypeCode.Type() || p.ICMPCode != ic.TypeCode.Code() ||
			(p.IsICMPEcho() && p.ICMPID != ic.Id) || p.PayloadOff-p.L4Off != 8 ||
			p.IsICMPEchoRequest() != (ic.TypeCode.Type() == layers.ICMPv4TypeEchoRequest) {
			return fmt.Errorf("ICMPv4 %d/%d id %d, gopacket %v id %d", p.ICMPType, p.ICMPCode, p.ICMPID, ic.TypeCode, ic.Id)
		}
		_, v := ic.VerifyChecksum()
		want = uint16(v.Correct)
	case p.Version == 6 && p.Proto == 58:
		var ic layers.ICMPv6
		if err := ic.DecodeFromBytes(l4, nf); err != nil {
			return err
		}
		var id uint16
		if p.IsICMPEcho() {
			var e layers.ICMPv6Echo
			if err := e.DecodeFromBytes(ic.Payload, nf); err != nil {
				return err
			}
			id = e.Identifier
		}
		if p.ICMPType != ic.TypeCode.Type() || p.ICMPCode != ic.TypeCode.Code() || p.ICMPID != id ||
			p.IsICMPEchoRequest() != (ic.TypeCode.Type() == layers.ICMPv6TypeEchoRequest) {
			return fmt.Errorf("ICMPv6 %d/%d id %d, gopacket %v id %d", p.ICMPType, p.ICMPCode, p.ICMPID, ic.TypeCode, id)
		}
		ic.SetNetworkLayerForChecksum(ipLayer)
		_, v := ic.VerifyChecksum()
		want = uint16(v.Correct)
	default:
		if p.PayloadOff != p.L4Off || p.HasPorts() {
			return fmt.Errorf("unknown protocol %d with L4 fields: %+v", p.Proto, p)
		}
		return nil
	}
	got, ok := packet.L4Checksum(b, p)
	if !ok {
		return fmt.Errorf("L4Checksum not computed for proto %d", p.Proto)
	}
	if !p.SourceRouted && got != want {
		return fmt.Errorf("L4 checksum %#04x, gopacket %#04x", got, want)
	}
	return nil
}

// checkQuote compares the packet quoted in an ICMP error with what was
// quoted and with gopacket's decoding of the quote's IP header.
func checkQuote(b []byte, inner *packet.Parsed, q *spec) error {
	quote := b[inner.L3Off:inner.End]
	var src, dst gopacket.Endpoint
	var proto layers.IPProtocol
	if q.v6 {
		var ip layers.IPv6
		if err := ip.DecodeFromBytes(quote, gopacket.NilDecodeFeedback); err != nil {
			return err
		}
		src, dst = ip.NetworkFlow().Endpoints()
		proto = ip.NextHeader
	} else {
		var ip layers.IPv4
		if err := ip.DecodeFromBytes(quote, gopacket.NilDecodeFeedback); err != nil {
			return err
		}
		src, dst = ip.NetworkFlow().Endpoints()
		proto = ip.Protocol
	}
	switch {
	case !inner.Quoted || inner.Version == 0:
		return fmt.Errorf("inner not marked quoted: %+v", inner)
	case inner.Src != to16(src.Raw()) || inner.Dst != to16(dst.Raw()) || inner.Proto != uint8(proto):
		return fmt.Errorf("inner %x > %x proto %d, gopacket %v > %v %d", inner.Src, inner.Dst, inner.Proto, src, dst, proto)
	case inner.HasPorts() && (inner.SrcPort != q.sport || inner.DstPort != q.dport):
		return fmt.Errorf("inner ports %d>%d, quoted %d>%d", inner.SrcPort, inner.DstPort, q.sport, q.dport)
	case inner.IsICMPEcho() && inner.ICMPID != q.icmpID:
		return fmt.Errorf("inner ICMP id %d, quoted %d", inner.ICMPID, q.icmpID)
	}
	return nil
}
