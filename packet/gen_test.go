package packet_test

import (
	"math/rand/v2"
	"net"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// spec describes one packet completely, so that gopacket can build it and
// build it again with a changed tuple: the second build is the oracle for
// what an incremental rewrite of the first must produce, byte for byte.
type spec struct {
	v6       bool
	src, dst net.IP // 4 or 16 bytes
	proto    uint8

	// IPv4
	tos, ttl uint8
	ipID     uint16
	df       bool
	v4opts   []layers.IPv4Option

	// IPv6
	tc        uint8
	flowLabel uint32
	hbh       bool
	destOpts  bool
	routing   bool   // segments left 0: the Dst field is the final destination
	route     net.IP // the routing header's one address
	fragHdr   bool   // an IPv6 fragment header even when not fragmented (atomic)

	// fragments: fragOff in bytes
	mf      bool
	fragOff uint16
	fragID  uint32

	// TCP / UDP
	sport, dport uint16
	tcpFlags     uint8
	seq, ack     uint32
	window       uint16
	tcpOpts      []layers.TCPOption
	udpNoCsum    bool // IPv4 only: checksum field 0

	// ICMP
	icmpType, icmpCode uint8
	icmpID, icmpSeq    uint16
	quote              *spec // ICMP errors: the packet quoted
	quoteLen           int   // how much of the quote's bytes are carried

	payload []byte
}

// isICMPErr says whether s is an ICMP error carrying a quote.
func (s *spec) isICMPErr() bool { return s.quote != nil }

// clone copies s deep enough that tuple fields can be changed on the copy.
func (s *spec) clone() *spec {
	c := *s
	c.src = append(net.IP(nil), s.src...)
	c.dst = append(net.IP(nil), s.dst...)
	if s.quote != nil {
		c.quote = s.quote.clone()
	}
	return &c
}

// serialize builds the packet with gopacket, lengths and checksums
// computed by gopacket.
func (s *spec) serialize() []byte {
	var ls []gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	later := s.fragOff != 0
	if !s.v6 {
		ip := &layers.IPv4{
			Version: 4, TOS: s.tos, Id: s.ipID, TTL: s.ttl,
			Protocol: layers.IPProtocol(s.proto), SrcIP: s.src, DstIP: s.dst,
			FragOffset: s.fragOff / 8, Options: s.v4opts,
		}
		if s.df {
			ip.Flags |= layers.IPv4DontFragment
		}
		if s.mf {
			ip.Flags |= layers.IPv4MoreFragments
		}
		ls = append(ls, ip)
		nl = ip
	} else {
		ip := &layers.IPv6{
			Version: 6, TrafficClass: s.tc, FlowLabel: s.flowLabel, HopLimit: s.ttl,
			SrcIP: s.src, DstIP: s.dst,
		}
		ls = append(ls, ip)
		nl = ip
		// Chain the extension headers, each naming the next.
		next := func(p layers.IPProtocol) { ip.NextHeader = p }
		if s.hbh {
			h := &layers.IPv6HopByHop{}
			h.Options = []*layers.IPv6HopByHopOption{{OptionType: 0x1e, OptionData: make([]byte, 4)}}
			next(layers.IPProtocolIPv6HopByHop)
			next = func(p layers.IPProtocol) { h.NextHeader = p }
			ls = append(ls, h)
		}
		if s.destOpts {
			h := &layers.IPv6Destination{}
			h.Options = []*layers.IPv6DestinationOption{{OptionType: 0x1e, OptionData: make([]byte, 12)}}
			next(layers.IPProtocolIPv6Destination)
			next = func(p layers.IPProtocol) { h.NextHeader = p }
			ls = append(ls, h)
		}
		if s.routing {
			h := &layers.IPv6Routing{RoutingType: 0, SegmentsLeft: 0, Reserved: make([]byte, 4),
				SourceRoutingIPs: []net.IP{s.route}}
			next(layers.IPProtocolIPv6Routing)
			next = func(p layers.IPProtocol) { h.NextHeader = p }
			ls = append(ls, h)
		}
		if s.fragHdr || s.mf || later {
			h := &layers.IPv6Fragment{FragmentOffset: s.fragOff / 8, MoreFragments: s.mf, Identification: s.fragID}
			next(layers.IPProtocolIPv6Fragment)
			next = func(p layers.IPProtocol) { h.NextHeader = p }
			ls = append(ls, h)
		}
		next(layers.IPProtocol(s.proto))
	}

	switch {
	case later:
		ls = append(ls, gopacket.Payload(s.payload))
	case s.proto == 6:
		t := &layers.TCP{
			SrcPort: layers.TCPPort(s.sport), DstPort: layers.TCPPort(s.dport),
			Seq: s.seq, Ack: s.ack, Window: s.window, Options: s.tcpOpts,
			FIN: s.tcpFlags&0x01 != 0, SYN: s.tcpFlags&0x02 != 0, RST: s.tcpFlags&0x04 != 0,
			PSH: s.tcpFlags&0x08 != 0, ACK: s.tcpFlags&0x10 != 0, URG: s.tcpFlags&0x20 != 0,
			ECE: s.tcpFlags&0x40 != 0, CWR: s.tcpFlags&0x80 != 0,
		}
		t.SetNetworkLayerForChecksum(nl)
		ls = append(ls, t, gopacket.Payload(s.payload))
	case s.proto == 17:
		u := &layers.UDP{SrcPort: layers.UDPPort(s.sport), DstPort: layers.UDPPort(s.dport)}
		u.SetNetworkLayerForChecksum(nl)
		ls = append(ls, u, gopacket.Payload(s.payload))
	case s.proto == 1 && !s.v6:
		ls = append(ls, &layers.ICMPv4{
			TypeCode: layers.CreateICMPv4TypeCode(s.icmpType, s.icmpCode), Id: s.icmpID, Seq: s.icmpSeq,
		}, gopacket.Payload(s.body()))
	case s.proto == 58 && s.v6:
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(s.icmpType, s.icmpCode)}
		ic.SetNetworkLayerForChecksum(nl)
		ls = append(ls, ic)
		if s.icmpType == 128 || s.icmpType == 129 {
			ls = append(ls, &layers.ICMPv6Echo{Identifier: s.icmpID, SeqNumber: s.icmpSeq})
		} else {
			// 4 bytes unused (or the MTU of packet too big), then the quote
			w := []byte{byte(s.icmpID >> 8), byte(s.icmpID), byte(s.icmpSeq >> 8), byte(s.icmpSeq)}
			ls = append(ls, gopacket.Payload(append(w, s.body()...)))
			break
		}
		ls = append(ls, gopacket.Payload(s.payload))
	default:
		ls = append(ls, gopacket.Payload(s.payload))
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		panic(err)
	}
	b := buf.Bytes()
	if s.udpNoCsum && s.proto == 17 && !later {
		c := len(b) - len(s.payload) - 2
		b[c], b[c+1] = 0, 0
	}
	return b
}

// body is the ICMP message body after the 8-byte header: the quote for an
// error, the payload otherwise.
func (s *spec) body() []byte {
	if s.quote != nil {
		return s.quote.serialize()[:s.quoteLen]
	}
	return s.payload
}

// gen draws a random valid packet of 20..1500 bytes: IPv4 or IPv6; TCP,
// UDP, ICMP echo, ICMP error or an unknown protocol; IPv4 options, IPv6
// extension headers, first and later fragments.
func gen(r *rand.Rand) *spec {
	s := &spec{v6: r.IntN(2) == 1}
	s.src, s.dst = randAddr(r, s.v6), randAddr(r, s.v6)
	s.ttl = uint8(1 + r.IntN(255))
	hdr := 20
	if !s.v6 {
		s.tos, s.ipID, s.df = uint8(r.Uint32()), uint16(r.Uint32()), r.IntN(2) == 0
		if r.IntN(4) == 0 {
			s.v4opts = randIPv4Options(r)
			hdr += 40
		}
	} else {
		hdr = 40
		s.tc, s.flowLabel = uint8(r.Uint32()), r.Uint32()&0xfffff
		s.hbh, s.destOpts, s.routing = r.IntN(5) == 0, r.IntN(5) == 0, r.IntN(6) == 0
		s.fragHdr = r.IntN(20) == 0
		s.route = randAddr(r, true)
		hdr += 8 + 16 + 24 + 8
	}
	switch k := r.IntN(20); {
	case k < 7:
		s.proto = 6
		s.sport, s.dport = uint16(r.Uint32()), uint16(r.Uint32())
		s.tcpFlags, s.seq, s.ack, s.window = uint8(r.Uint32()), r.Uint32(), r.Uint32(), uint16(r.Uint32())
		s.tcpOpts = randTCPOptions(r)
		hdr += 60
	case k < 14:
		s.proto = 17
		s.sport, s.dport = uint16(r.Uint32()), uint16(r.Uint32())
		s.udpNoCsum = !s.v6 && r.IntN(6) == 0
		hdr += 8
	case k < 16:
		s.proto, s.icmpType = icmpProto(s.v6), echoType(r, s.v6)
		s.icmpID, s.icmpSeq = uint16(r.Uint32()), uint16(r.Uint32())
		hdr += 8
	case k < 18:
		s.proto, s.icmpType, s.icmpCode = icmpProto(s.v6), errorType(r, s.v6), uint8(r.IntN(5))
		s.icmpSeq = uint16(r.Uint32()) // unused field or MTU: arbitrary
		s.quote = genQuote(r, s.v6)
		full := len(s.quote.serialize())
		hl := 20
		if s.v6 {
			hl = 40
		}
		s.quoteLen = hl + 8 + r.IntN(full-hl-8+1)
		if s.quote.proto == 6 && s.quoteLen == hl+17 {
			// A quote that ends inside the TCP checksum cannot have it
			// updated (the missing byte feeds the carry); a table test
			// covers that case. Here, quote the whole field.
			s.quoteLen++
		}
		return s
	default:
		s.proto = 253 // RFC 3692 experimentation: an unknown upper layer
	}
	// fragments (not for ICMP errors, which are never fragmented here)
	switch f := r.IntN(10); {
	case f == 0:
		s.mf, s.fragID = true, r.Uint32()
	case f == 1:
		s.fragOff, s.mf, s.fragID = uint16(8*(1+r.IntN(500))), r.IntN(2) == 0, r.Uint32()
	}
	if !s.v6 {
		s.fragID &= 0xffff
	}
	s.payload = randBytes(r, r.IntN(1500-hdr))
	if s.v6 && s.mf {
		s.padV6Fragment()
	}
	return s
}

// padV6Fragment grows the payload until the bytes after the fragment
// header are a multiple of 8, as RFC 8200 requires of non-final fragments.
func (s *spec) padV6Fragment() {
	for {
		pkt := gopacket.NewPacket(s.serialize(), layers.LayerTypeIPv6, gopacket.NoCopy)
		if f, ok := pkt.Layer(layers.LayerTypeIPv6Fragment).(*layers.IPv6Fragment); ok && len(f.Payload)%8 == 0 {
			return
		}
		s.payload = append(s.payload, 0)
	}
}

// genQuote draws the unfragmented TCP, UDP or ICMP echo packet an ICMP
// error quotes.
func genQuote(r *rand.Rand, v6 bool) *spec {
	q := &spec{v6: v6, ttl: uint8(1 + r.IntN(255))}
	q.src, q.dst = randAddr(r, v6), randAddr(r, v6)
	if !v6 {
		q.ipID = uint16(r.Uint32())
	}
	switch r.IntN(3) {
	case 0:
		q.proto = 6
		q.sport, q.dport = uint16(r.Uint32()), uint16(r.Uint32())
		q.tcpFlags, q.seq, q.ack = uint8(r.Uint32()), r.Uint32(), r.Uint32()
	case 1:
		q.proto = 17
		q.sport, q.dport = uint16(r.Uint32()), uint16(r.Uint32())
		q.udpNoCsum = !v6 && r.IntN(4) == 0
	default:
		q.proto, q.icmpType = icmpProto(v6), echoType(r, v6)
		q.icmpID, q.icmpSeq = uint16(r.Uint32()), uint16(r.Uint32())
	}
	q.payload = randBytes(r, r.IntN(600))
	return q
}

func icmpProto(v6 bool) uint8 {
	if v6 {
		return 58
	}
	return 1
}

func echoType(r *rand.Rand, v6 bool) uint8 {
	if v6 {
		return uint8(128 + r.IntN(2))
	}
	return uint8(8 * r.IntN(2))
}

func errorType(r *rand.Rand, v6 bool) uint8 {
	if v6 {
		return uint8(1 + r.IntN(4))
	}
	return []uint8{3, 4, 11, 12}[r.IntN(4)]
}

// randAddr returns random address bytes. They are only bytes in a buffer:
// nothing is ever sent to them.
func randAddr(r *rand.Rand, v6 bool) net.IP {
	n := 4
	if v6 {
		n = 16
	}
	return net.IP(randBytes(r, n))
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// randIPv4Options draws up to 40 bytes of well-formed options: NOPs,
// record route, router alert, and source routes with and without hops left.
func randIPv4Options(r *rand.Rand) []layers.IPv4Option {
	var opts []layers.IPv4Option
	size := 0
	for size < 30 && r.IntN(4) != 0 {
		switch r.IntN(4) {
		case 0:
			opts = append(opts, layers.IPv4Option{OptionType: 1, OptionLength: 1})
			size++
		case 1: // record route, room for one address
			opts = append(opts, layers.IPv4Option{OptionType: 7, OptionLength: 7, OptionData: []byte{4, 0, 0, 0, 0}})
			size += 7
		case 2: // router alert
			opts = append(opts, layers.IPv4Option{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}})
			size += 4
		default: // loose source route with one hop: pending (ptr 4) or used up (ptr 8)
			d := append([]byte{byte(4 + 4*r.IntN(2))}, randBytes(r, 4)...)
			opts = append(opts, layers.IPv4Option{OptionType: 131, OptionLength: 7, OptionData: d})
			size += 7
		}
	}
	return opts
}

// randTCPOptions draws a realistic option list: MSS, window scale, SACK
// permitted, timestamps, NOP padding.
func randTCPOptions(r *rand.Rand) []layers.TCPOption {
	var opts []layers.TCPOption
	if r.IntN(2) == 0 {
		opts = append(opts, layers.TCPOption{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: randBytes(r, 2)})
	}
	if r.IntN(2) == 0 {
		opts = append(opts, layers.TCPOption{OptionType: layers.TCPOptionKindNop, OptionLength: 1},
			layers.TCPOption{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}})
	}
	if r.IntN(2) == 0 {
		opts = append(opts, layers.TCPOption{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2})
	}
	if r.IntN(2) == 0 {
		opts = append(opts, layers.TCPOption{OptionType: layers.TCPOptionKindNop, OptionLength: 1},
			layers.TCPOption{OptionType: layers.TCPOptionKindNop, OptionLength: 1},
			layers.TCPOption{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: randBytes(r, 8)})
	}
	return opts
}
