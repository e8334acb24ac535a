package packet_test

import (
	"math/rand/v2"
	"testing"

	"github.com/vsgate/vsgate/packet"
)

// fuzzSeeds adds generated valid packets of every kind (the oracle tests'
// generator, fixed seed) plus hand-picked edge cases.
func fuzzSeeds(f *testing.F) {
	r := rand.New(rand.NewPCG(42, 6))
	for range 64 {
		f.Add(gen(r).serialize())
	}
	f.Add([]byte{})                                // nothing
	f.Add([]byte{0x45})                            // a version nibble and no header
	f.Add(tcpSpec(false, 0).serialize()[:20])      // IPv4 header, total length past the buffer
	f.Add(append(udpSpec(true, 0).serialize(), 0)) // IPv6 with a trailing byte
}

// checkInvariants fails unless a parsed packet's offsets are ordered and
// inside the buffer, the flags agree, and parsing again gives the same.
func checkInvariants(t *testing.T, b []byte, p *packet.Parsed) {
	t.Helper()
	if p.Version != 4 && p.Version != 6 {
		t.Fatalf("parsed with version %d", p.Version)
	}
	if !(p.L3Off == 0 && p.L3Off < p.L4Off && p.L4Off <= p.PayloadOff && p.PayloadOff <= p.End && p.End <= len(b)) {
		t.Fatalf("offsets out of order: L3 %d L4 %d payload %d end %d len %d", p.L3Off, p.L4Off, p.PayloadOff, p.End, len(b))
	}
	if p.HasPorts() && p.PayloadOff-p.L4Off < 8 {
		t.Fatalf("ports with a %d-byte L4 header", p.PayloadOff-p.L4Off)
	}
	var again packet.Parsed
	packet.Parse(b, &again)
	if again != *p {
		t.Fatalf("parsing twice differs:\n%+v\n%+v", *p, again)
	}
}

// FuzzParse: no panic on any input; what parses satisfies the invariants;
// an ICMP error's quote parses inside the error.
func FuzzParse(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var p, inner packet.Parsed
		if packet.Parse(b, &p) != packet.ReasonNone {
			if p.Version != 0 || p.Reason == packet.ReasonNone {
				t.Fatalf("failed parse left version %d reason %v", p.Version, p.Reason)
			}
			return
		}
		checkInvariants(t, b, &p)
		packet.TransportChecksumValid(b, &p) // must not panic
		if p.Proto == packet.ProtoTCP && p.HasL4Header() {
			if shift, ok := packet.TCP(b[p.L4Off:p.End]).WindowScale(); shift > packet.TCPMaxWindowScale || !ok && shift != 0 {
				t.Fatalf("window scale %d %v", shift, ok)
			}
		}
		if p.IsICMPError() && packet.ParseICMPError(b, &p, &inner) == packet.ReasonNone {
			if inner.L3Off != p.PayloadOff || inner.End > p.End || inner.L4Off > inner.End || !inner.Quoted {
				t.Fatalf("quote outside its error: outer %+v inner %+v", p, inner)
			}
		}
	})
}

// FuzzRewrite: a packet that parses, once rewritten, re-parses to the new
// tuple, and every checksum that was valid before is valid after.
func FuzzRewrite(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var p packet.Parsed
		if packet.Parse(b, &p) != packet.ReasonNone {
			return
		}
		ipOK := p.Version == 6 || packet.IPv4(b).CalculateChecksum() == packet.IPv4(b).Checksum()
		l4Want, l4Has := packet.L4Checksum(b, &p)
		l4OK := l4Has && !p.SourceRouted && l4Want == fieldChecksum(b, &p)
		// Derive the new tuple from the packet itself, so the fuzzer
		// explores addresses and ports as it explores bytes.
		var addr [16]byte
		copy(addr[:], b[len(b)/2:])
		if p.Version == 4 {
			addr = [16]byte{10: 0xff, 11: 0xff, 12: addr[12], 13: addr[13], 14: addr[14], 15: addr[15]}
		}
		port := uint16(len(b)*7919 + int(b[0]))
		toDst := len(b)%2 == 0
		if toDst {
			packet.SetDst(b, &p, addr, port)
		} else {
			packet.SetSrc(b, &p, addr, port)
		}
		var again packet.Parsed
		if r := packet.Parse(b, &again); r != packet.ReasonNone {
			t.Fatalf("rewritten packet no longer parses: %v", r)
		}
		if again != p {
			t.Fatalf("re-parse differs from the rewritten tuple:\n%+v\n%+v", again, p)
		}
		if toDst && (again.Dst != addr || again.HasPorts() && again.DstPort != port) ||
			!toDst && (again.Src != addr || again.HasPorts() && again.SrcPort != port) {
			t.Fatalf("new tuple not in the packet: %+v", again)
		}
		if p.Version == 4 && ipOK && packet.IPv4(b).Checksum() != packet.IPv4(b).CalculateChecksum() {
			t.Fatalf("IPv4 header checksum broken by the rewrite")
		}
		if got, _ := packet.L4Checksum(b, &p); l4OK && got != fieldChecksum(b, &p) && !zeroUDP(b, &p) {
			t.Fatalf("L4 checksum %#04x, field %#04x after rewrite", got, fieldChecksum(b, &p))
		}
	})
}

// fieldChecksum reads the L4 checksum field of a parsed packet.
func fieldChecksum(b []byte, p *packet.Parsed) uint16 {
	off := 2 // ICMP
	switch p.Proto {
	case packet.ProtoTCP:
		off = 16
	case packet.ProtoUDP:
		off = 6
	}
	return uint16(b[p.L4Off+off])<<8 | uint16(b[p.L4Off+off+1])
}

// zeroUDP reports an IPv4 UDP packet without checksum, which stays so.
func zeroUDP(b []byte, p *packet.Parsed) bool {
	return p.Version == 4 && p.Proto == packet.ProtoUDP && fieldChecksum(b, p) == 0
}

// FuzzParseEthernet: no panic in the L2 parsers on any frame; a parsed
// frame's payload offset matches its tags; ARP and ND results obey the
// rules they were validated by.
func FuzzParseEthernet(f *testing.F) {
	r := rand.New(rand.NewPCG(42, 11))
	for range 64 {
		f.Add(genL2(r).serialize())
	}
	f.Add([]byte{})
	f.Add(make([]byte, 13))
	f.Add(append(make([]byte, 12), 0x81, 0x00, 0, 1, 0x81, 0x00, 0, 2, 0x81, 0x00))
	f.Fuzz(func(t *testing.T, b []byte) {
		var l, again packet.L2
		if packet.ParseEthernet(b, &l) != packet.ReasonNone {
			if l != (packet.L2{Reason: l.Reason}) || l.Reason == packet.ReasonNone {
				t.Fatalf("failed parse left %+v", l)
			}
			return
		}
		if l.PayloadOff != packet.EthernetMinimumSize+packet.VLANTagSize*int(l.NumVLANs) || l.PayloadOff > len(b) || l.EtherType < 0x0600 {
			t.Fatalf("parsed %+v from %d bytes", l, len(b))
		}
		if packet.ParseEthernet(b, &again); again != l {
			t.Fatalf("parsing twice differs:\n%+v\n%+v", l, again)
		}
		payload := b[l.PayloadOff:]
		switch l.EtherType {
		case packet.EtherTypeARP:
			if a, reason := packet.ValidARP(payload); reason == packet.ReasonNone && a.Op() != packet.ARPRequest && a.Op() != packet.ARPReply {
				t.Fatalf("ARP op %d accepted", a.Op())
			}
		case packet.EtherTypeIPv6:
			var p packet.Parsed
			var nd packet.ND
			packet.Parse(payload, &p)
			if packet.ParseND(payload, &p, &nd) == packet.ReasonNone {
				if nd.Target.IsMulticast() || nd.Type != p.ICMPType || p.End-p.L4Off < 24 {
					t.Fatalf("ND %+v accepted from %+v", nd, p)
				}
			}
		}
	})
}

// FuzzShiftTCP: for any packet, shifting a TCP segment's sequence space
// and shifting it back restores it byte for byte (the SYN proxy's
// translation round-trips), a segment whose checksum was right stays
// right, and reading its options never panics.
func FuzzShiftTCP(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var p packet.Parsed
		if packet.Parse(b, &p) != packet.ReasonNone || p.Proto != packet.ProtoTCP || !p.HasL4Header() || p.Quoted {
			return
		}
		tcp := packet.TCP(b[p.L4Off:p.End])
		tcp.Options()
		valid := packet.TransportChecksumValid(b, &p)
		orig := append([]byte(nil), b...)
		s := packet.TCPShift{Seq: 0x9e3779b9, Ack: 0x7f4a7c15, TSval: 12345, TSecr: 0xfffffff0}
		packet.ShiftTCP(b, &p, &s)
		if valid && !packet.TransportChecksumValid(b, &p) {
			t.Fatal("a right checksum went wrong")
		}
		back := packet.TCPShift{Seq: -s.Seq, Ack: -s.Ack, TSval: -s.TSval, TSecr: -s.TSecr}
		packet.ShiftTCP(b, &p, &back)
		if string(b) != string(orig) {
			// The checksum field may have changed between the two zeros
			// of ones' complement; nothing else may.
			ck := p.L4Off + 16
			if string(b[:ck]) != string(orig[:ck]) || string(b[ck+2:]) != string(orig[ck+2:]) {
				t.Fatalf("not restored:\n%x\n%x", b, orig)
			}
		}
	})
}

// FuzzTCPSegment: a segment written from any fields parses back to them.
func FuzzTCPSegment(f *testing.F) {
	f.Add(true, uint32(1), uint32(2), uint8(0x12), uint16(100), uint16(1460), uint8(7), true, true, uint32(5), uint32(6))
	f.Fuzz(func(t *testing.T, v4 bool, seq, ack uint32, flags uint8, win, mss uint16, scale uint8, sackOK, ts bool, tsval, tsecr uint32) {
		s := packet.TCPSegment{SrcPort: 1, DstPort: 2, Seq: seq, Ack: ack, Flags: flags &^ packet.TCPFlagRST, Window: win, V4: v4,
			Options: packet.TCPOptions{MSS: mss, HasMSS: mss != 0, SACKPermit: sackOK, HasTimestamp: ts}}
		if scale <= packet.TCPMaxWindowScale {
			s.Options.WScale, s.Options.HasWScale = scale, true
		}
		if ts {
			s.Options.TSval, s.Options.TSecr = tsval, tsecr
		}
		s.Src[15], s.Dst[15] = 1, 2
		if v4 {
			s.Src[10], s.Src[11], s.Dst[10], s.Dst[11] = 0xff, 0xff, 0xff, 0xff
		}
		b := make([]byte, s.Len())
		n, ok := s.Write(b)
		if !ok || n != len(b) {
			t.Fatalf("write: %d, %v", n, ok)
		}
		var p packet.Parsed
		if r := packet.Parse(b, &p); r != packet.ReasonNone || !packet.TransportChecksumValid(b, &p) {
			t.Fatalf("parse: %v", r)
		}
		tcp := packet.TCP(b[p.L4Off:p.End])
		o := tcp.Options()
		if tcp.Seq() != seq || tcp.Ack() != ack || tcp.Window() != win {
			t.Fatalf("read back seq %d ack %d window %d", tcp.Seq(), tcp.Ack(), tcp.Window())
		}
		if o != s.Options {
			t.Fatalf("options read back %+v, wrote %+v", o, s.Options)
		}
	})
}

// FuzzFragmentIPv4: any packet cut at any MTU gives fragments of at most
// that MTU whose data, in order, is the packet's, each with a right
// header checksum; and MakeTooBig never panics on it.
func FuzzFragmentIPv4(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var p packet.Parsed
		if packet.Parse(b, &p) == packet.ReasonNone {
			packet.MakeTooBig(make([]byte, 1500), b, &p, [16]byte{}, 1280)
		}
		mtu := 68 + len(b)%600
		bufs := make([][]byte, 64)
		for i := range bufs {
			bufs[i] = make([]byte, mtu)
		}
		n, ok := packet.FragmentIPv4(b, mtu, bufs)
		if !ok {
			return
		}
		ip := packet.IPv4(b)
		var data []byte
		for i := range n {
			fr := packet.IPv4(bufs[i])
			if len(fr) > mtu || int(fr.TotalLength()) != len(fr) || fr.CalculateChecksum() != fr.Checksum() {
				t.Fatalf("fragment %d: %d bytes, header %x", i, len(fr), fr[:20])
			}
			data = append(data, fr[fr.HeaderLength():]...)
		}
		if string(data) != string(b[ip.HeaderLength():ip.TotalLength()]) {
			t.Fatal("the fragments' data is not the packet's")
		}
	})
}
