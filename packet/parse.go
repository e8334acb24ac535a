package packet

import "encoding/binary"

// Reason says why a packet was not parsed. The zero value, ReasonNone, means
// it was. Reasons index per-reason drop counters, so new ones go at the end,
// before numReasons.
type Reason uint8

// Reasons a packet is dropped by the parser.
const (
	ReasonNone                Reason = iota
	ReasonTruncated                  // shorter than the IP header it announces
	ReasonBadVersion                 // IP version is neither 4 nor 6
	ReasonBadIHL                     // IPv4 IHL below 5
	ReasonBadTotalLength             // IPv4 total length shorter than the header
	ReasonLengthExceedsBuffer        // total/payload length larger than the bytes received
	ReasonBadIPv4Options             // an IPv4 option runs past the header or has length < 2
	ReasonBadExtHeader               // IPv6 extension header chain truncated, or hop-by-hop not first
	ReasonBadFragment                // fragment past 65535 bytes, or a non-final IPv6 fragment not a multiple of 8
	ReasonTruncatedL4                // TCP/UDP/ICMP header cut short in an unfragmented packet or first fragment
	ReasonBadTCPDataOffset           // TCP data offset below 5 or past the packet
	ReasonBadUDPLength               // UDP length below 8 or past the packet
	ReasonNotICMPError               // ParseICMPError on a packet that is not an ICMP error
	ReasonBadICMPInner               // the packet quoted in an ICMP error is unusable (see the inner Parsed's Reason)
	ReasonTruncatedEthernet          // frame shorter than its Ethernet header and VLAN tags
	ReasonTooManyVLANs               // more than MaxVLANTags VLAN tags
	ReasonNotEthernetII              // 802.3 length field instead of an EtherType
	ReasonBadARP                     // not an ARP request or reply for IPv4 over Ethernet
	ReasonBadND                      // neighbour discovery message failing RFC 4861 §7.1 validation
	ReasonExtHeaderChain             // more than MaxIPv6ExtHeaders IPv6 extension headers before the upper layer
	numReasons
)

// NumReasons is the number of Reason values, for sizing counter arrays.
const NumReasons = int(numReasons)

var reasonNames = [...]string{
	ReasonNone:                "none",
	ReasonTruncated:           "truncated",
	ReasonBadVersion:          "bad_version",
	ReasonBadIHL:              "bad_ihl",
	ReasonBadTotalLength:      "bad_total_length",
	ReasonLengthExceedsBuffer: "length_exceeds_buffer",
	ReasonBadIPv4Options:      "bad_ipv4_options",
	ReasonBadExtHeader:        "bad_ext_header",
	ReasonBadFragment:         "bad_fragment",
	ReasonTruncatedL4:         "truncated_l4",
	ReasonBadTCPDataOffset:    "bad_tcp_data_offset",
	ReasonBadUDPLength:        "bad_udp_length",
	ReasonNotICMPError:        "not_icmp_error",
	ReasonBadICMPInner:        "bad_icmp_inner",
	ReasonTruncatedEthernet:   "truncated_ethernet",
	ReasonTooManyVLANs:        "too_many_vlans",
	ReasonNotEthernetII:       "not_ethernet_ii",
	ReasonBadARP:              "bad_arp",
	ReasonBadND:               "bad_nd",
	ReasonExtHeaderChain:      "ext_header_chain",
}

// MaxIPv6ExtHeaders bounds the IPv6 extension headers Parse walks: a
// chain of more is dropped (ReasonExtHeaderChain). RFC 8200 §4.1 names
// six kinds and allows each once (destination options twice); eight
// leaves room for what real traffic carries, and keeps an attacker's
// packet of thousands of empty headers from costing a walk each.
const MaxIPv6ExtHeaders = 8

// String returns the reason as a metric-label-friendly word.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// Parsed is what Parse learns about one packet. The caller owns it and
// reuses it; Parse overwrites every field. The zero value is an unparsed
// packet (Reason none, Version 0). It is not safe for concurrent use.
//
// Offsets index the slice given to Parse. IPv4 addresses are stored
// IPv4-mapped (::ffff:a.b.c.d, as netip.AddrFrom16 reads them), so one
// 16-byte form serves both families in flow keys.
type Parsed struct {
	// Src and Dst are the IP addresses. Valid iff Version != 0.
	Src, Dst [16]byte

	// SrcPort and DstPort are the TCP or UDP ports. Valid iff HasPorts().
	SrcPort, DstPort uint16

	// Version is the IP version, 4 or 6; 0 if the packet did not parse.
	Version uint8

	// Proto is the upper-layer protocol: for IPv6, the next header after
	// the extension headers Parse walks. Unknown protocols parse with
	// addresses set and no L4 fields.
	Proto uint8

	// TCPFlags is the TCP flags byte. Valid iff Proto is TCP and
	// HasL4Header() (for a quoted packet, iff the quote reaches it).
	TCPFlags uint8

	// Reason is ReasonNone iff the packet parsed; then Version is 4 or 6.
	// On failure Version is 0 and only Reason is meaningful.
	Reason Reason

	// The next eight bytes (ICMPID to SourceRouted) are zero for the
	// common TCP/UDP packet; they sit together so that Parse clears them
	// with one store.

	// ICMPID is the echo identifier. Valid iff IsICMPEcho().
	ICMPID uint16

	// FragOff is the fragment offset in bytes; non-zero means a later
	// fragment with no L4 header.
	FragOff uint16

	// ICMPType and ICMPCode are valid iff IsICMP() and HasL4Header().
	ICMPType, ICMPCode uint8

	// MoreFrags is the more-fragments flag.
	MoreFrags bool

	// SourceRouted is set when a source-route option (IPv4 LSRR/SSRR) or
	// an IPv6 routing header still has hops to visit: the Dst field is
	// then a waypoint, not the destination the transport checksum covers.
	// A gateway should not translate such packets; the rewrite functions
	// stay exact for them all the same.
	SourceRouted bool

	// Quoted is set for a packet quoted inside an ICMP error: it may be cut
	// short, so End can be less than the length its header announces and
	// only the first 8 bytes of its L4 header are guaranteed.
	Quoted bool

	// FragID is the fragment identification (16 bits for IPv4, 32 for
	// IPv6). Valid iff IsFragment().
	FragID uint32

	// L3Off is the offset of the IP header: 0 for Parse, inside the ICMP
	// message for a quoted packet.
	L3Off int

	// L4Off is the offset of the upper-layer header, after IPv4 options and
	// IPv6 extension headers; for a later fragment, where its data starts.
	L4Off int

	// PayloadOff is the offset of the upper-layer payload: after the TCP
	// header and options, the UDP header, or the 8-byte ICMP header. Equal
	// to L4Off when there is no L4 header. For a quoted packet it is
	// clamped to End.
	PayloadOff int

	// End is the offset just past the packet: L3Off plus the IP total
	// length (bytes after it, such as link padding, are not the packet's).
	End int
}

// IsFragment reports whether the packet is a fragment of a larger datagram.
// An IPv6 atomic fragment (offset 0, no more fragments) is not.
func (p *Parsed) IsFragment() bool { return p.MoreFrags || p.FragOff != 0 }

// HasL4Header reports whether the upper-layer header is in this packet,
// that is, it is not a later fragment.
func (p *Parsed) HasL4Header() bool { return p.FragOff == 0 }

// HasPorts reports whether SrcPort and DstPort are valid: TCP or UDP, and
// not a later fragment.
func (p *Parsed) HasPorts() bool {
	return (p.Proto == ProtoTCP || p.Proto == ProtoUDP) && p.FragOff == 0
}

// IsICMP reports whether the upper layer is ICMP of the packet's own IP
// version (ICMPv4 over IPv4, ICMPv6 over IPv6).
func (p *Parsed) IsICMP() bool {
	return p.Version == 4 && p.Proto == ProtoICMPv4 || p.Version == 6 && p.Proto == ProtoICMPv6
}

// IsICMPEcho reports whether the packet is an ICMP echo request or reply
// with its header present, so ICMPID is valid.
func (p *Parsed) IsICMPEcho() bool {
	return p.IsICMP() && p.FragOff == 0 && isICMPEcho(p.Version, p.ICMPType)
}

// IsICMPEchoRequest reports whether the packet is an ICMP echo request
// (not a reply) with its header present.
func (p *Parsed) IsICMPEchoRequest() bool {
	return p.IsICMPEcho() && (p.Version == 4 && p.ICMPType == ICMPv4Echo || p.Version == 6 && p.ICMPType == ICMPv6EchoRequest)
}

// IsICMPError reports whether the packet is an ICMP error message
// (unreachable, packet too big, time exceeded, parameter problem, source
// quench) with its header present: one that quotes the packet it is about.
func (p *Parsed) IsICMPError() bool {
	return p.IsICMP() && p.FragOff == 0 && IsICMPError(p.Version, p.ICMPType)
}

// fail records a parse failure and returns its reason.
func (p *Parsed) fail(r Reason) Reason {
	p.Reason = r
	p.Version = 0
	return r
}

// Parse decodes the IP packet at the start of b into p. It never allocates
// and never panics: a malformed packet yields a Reason other than
// ReasonNone, which is also stored in p.Reason. It does not verify
// checksums (the kernel has, for what arrives on TUN) and does not copy b;
// the offsets in p index b.
func Parse(b []byte, p *Parsed) Reason {
	return p.parse(b) // inlined: callers call parse directly
}

// parseGeneral is Parse for every packet the fast path declines.
func (p *Parsed) parseGeneral(b []byte) Reason {
	if len(b) == 0 {
		return p.fail(ReasonTruncated)
	}
	switch b[0] >> 4 {
	case 4:
		return p.parseIPv4(b, 0, false)
	case 6:
		return p.parseIPv6(b, 0, false)
	}
	return p.fail(ReasonBadVersion)
}

// parse handles the packets a gateway mostly sees — IPv4 without options
// or IPv6 without extension headers, not fragmented, carrying a whole TCP
// or UDP header — in one straight run with no calls, and hands anything
// else (or anything malformed) to parseGeneral, having decided nothing.
// Both produce the same Parsed (TestParseFastMatchesGeneral).
func (p *Parsed) parse(b []byte) Reason {
	if len(b) < IPv4MinimumSize+UDPMinimumSize {
		return p.parseGeneral(b)
	}
	var l4, end int
	var proto uint8
	switch v := b[0]; {
	case v == 0x45: // IPv4, IHL 5
		if b[6]&0x3f != 0 || b[7] != 0 { // MF or a fragment offset
			return p.parseGeneral(b)
		}
		end = int(b[2])<<8 | int(b[3])
		if end > len(b) || end < IPv4MinimumSize {
			return p.parseGeneral(b)
		}
		l4, proto = IPv4MinimumSize, b[ipv4Protocol]
		setMapped(&p.Src, b[ipv4SrcAddr:ipv4SrcAddr+4])
		setMapped(&p.Dst, b[ipv4DstAddr:ipv4DstAddr+4])
		p.Version = 4
		p.FragID = uint32(b[ipv4ID])<<8 | uint32(b[ipv4ID+1])
	case v>>4 == 6:
		if len(b) < IPv6HeaderSize+UDPMinimumSize {
			return p.parseGeneral(b)
		}
		end = IPv6HeaderSize + (int(b[ipv6PayloadLen])<<8 | int(b[ipv6PayloadLen+1]))
		if end > len(b) {
			return p.parseGeneral(b)
		}
		l4, proto = IPv6HeaderSize, b[ipv6NextHeader]
		p.Src = [16]byte(b[ipv6SrcAddr : ipv6SrcAddr+16])
		p.Dst = [16]byte(b[ipv6DstAddr : ipv6DstAddr+16])
		p.Version = 6
		p.FragID = 0
	default:
		return p.parseGeneral(b)
	}
	t := b[l4:end]
	if len(t) < UDPMinimumSize {
		return p.parseGeneral(b)
	}
	_ = t[7] // one bounds check for the ports and the UDP length
	switch proto {
	case ProtoTCP:
		if len(t) < TCPMinimumSize {
			return p.parseGeneral(b)
		}
		_ = t[tcpFlags]
		doff := int(t[tcpDataOffset]>>4) * 4
		if doff < TCPMinimumSize || doff > len(t) {
			return p.parseGeneral(b)
		}
		p.TCPFlags = t[tcpFlags]
		p.PayloadOff = l4 + doff
	case ProtoUDP:
		if ul := int(t[udpLength])<<8 | int(t[udpLength+1]); ul < UDPMinimumSize || ul > len(t) {
			return p.parseGeneral(b)
		}
		p.TCPFlags = 0
		p.PayloadOff = l4 + UDPMinimumSize
	default:
		return p.parseGeneral(b)
	}
	p.SrcPort = uint16(t[0])<<8 | uint16(t[1])
	p.DstPort = uint16(t[2])<<8 | uint16(t[3])
	p.Reason = ReasonNone
	p.Proto = proto
	// Adjacent in Parsed: the compiler merges these into one 8-byte store.
	p.ICMPID, p.FragOff, p.ICMPType, p.ICMPCode = 0, 0, 0, 0
	p.MoreFrags, p.SourceRouted, p.Quoted = false, false, false
	p.L3Off, p.L4Off, p.End = 0, l4, end
	return ReasonNone
}

// ParseICMPError decodes the packet quoted in the ICMP error outer (parsed
// from b by Parse) into inner. The quote is allowed to be cut short, as
// RFC 792 and RFC 4443 allow, but it must hold the whole IP header and
// 8 bytes of a TCP or UDP header (the ports). On failure it returns
// ReasonNotICMPError or ReasonBadICMPInner, and inner.Reason says why the
// quote was unusable.
func ParseICMPError(b []byte, outer, inner *Parsed) Reason {
	if outer.Reason != ReasonNone || !outer.IsICMPError() {
		inner.fail(ReasonNotICMPError)
		return ReasonNotICMPError
	}
	l3 := outer.L4Off + ICMPMinimumSize
	q := b[:outer.End]
	var r Reason
	switch {
	case l3 >= len(q):
		r = inner.fail(ReasonTruncated)
	case outer.Version == 4 && q[l3]>>4 == 4:
		r = inner.parseIPv4(q, l3, true)
	case outer.Version == 6 && q[l3]>>4 == 6:
		r = inner.parseIPv6(q, l3, true)
	default:
		r = inner.fail(ReasonBadVersion)
	}
	if r != ReasonNone {
		return ReasonBadICMPInner
	}
	return ReasonNone
}

// parseIPv4 parses the IPv4 packet at b[l3:]. A quoted packet may extend
// past the end of b.
func (p *Parsed) parseIPv4(b []byte, l3 int, quoted bool) Reason {
	h := IPv4(b[l3:])
	if len(h) < IPv4MinimumSize {
		return p.fail(ReasonTruncated)
	}
	hl := int(h[ipv4VersIHL]&0x0f) * 4
	if hl < IPv4MinimumSize {
		return p.fail(ReasonBadIHL)
	}
	if hl > len(h) {
		return p.fail(ReasonTruncated)
	}
	tl := int(be16(h[ipv4TotalLen:]))
	if tl < hl {
		return p.fail(ReasonBadTotalLength)
	}
	end := tl
	if tl > len(h) {
		if !quoted {
			return p.fail(ReasonLengthExceedsBuffer)
		}
		end = len(h)
	}
	sourceRouted := false
	if hl > IPv4MinimumSize {
		var ok bool
		if ok, sourceRouted = h.checkOptions(hl); !ok {
			return p.fail(ReasonBadIPv4Options)
		}
	}
	ff := be16(h[ipv4FlagsFrag:])
	fragOff := (ff & ipv4FragOffMask) * 8
	if int(fragOff)+tl-hl > ipv4MaxDatagram {
		return p.fail(ReasonBadFragment)
	}
	setMapped(&p.Src, h[ipv4SrcAddr:ipv4SrcAddr+4])
	setMapped(&p.Dst, h[ipv4DstAddr:ipv4DstAddr+4])
	p.Version = 4
	p.Proto = h[ipv4Protocol]
	p.SourceRouted = sourceRouted
	p.Quoted = quoted
	p.FragOff = fragOff
	p.MoreFrags = ff&ipv4FlagMF != 0
	p.FragID = uint32(be16(h[ipv4ID:]))
	p.L3Off = l3
	return p.parseL4(b, l3+hl, l3+end)
}

// setMapped stores IPv4 address a as ::ffff:a. Two 8-byte stores: a
// composite literal here is built bytewise on the stack and then copied
// with one 16-byte load, which stalls on store forwarding (it was 80% of
// Parse's time).
func setMapped(dst *[16]byte, a []byte) {
	const mappedPrefix = 0xffff << 16 // bytes 10 and 11 of the address, read little-endian from byte 8
	binary.LittleEndian.PutUint64(dst[0:8], 0)
	binary.LittleEndian.PutUint64(dst[8:16], mappedPrefix|uint64(binary.LittleEndian.Uint32(a))<<32)
}

// parseIPv6 parses the IPv6 packet at b[l3:], walking the extension headers
// to the upper layer.
func (p *Parsed) parseIPv6(b []byte, l3 int, quoted bool) Reason {
	h := IPv6(b[l3:])
	if len(h) < IPv6HeaderSize {
		return p.fail(ReasonTruncated)
	}
	end := IPv6HeaderSize + int(be16(h[ipv6PayloadLen:]))
	if end > len(h) {
		if !quoted {
			return p.fail(ReasonLengthExceedsBuffer)
		}
		end = len(h)
	}
	h = h[:end]
	nh := h[ipv6NextHeader]
	off := IPv6HeaderSize
	var (
		fragOff      uint16
		fragID       uint32
		moreFrags    bool
		sawFrag      bool
		sourceRouted bool
	)
	exts := 0
walk:
	for {
		switch nh {
		case ipv6ExtHopByHop, ipv6ExtRouting, ipv6ExtDestOpts, ipv6ExtFragment:
			if exts++; exts > MaxIPv6ExtHeaders {
				return p.fail(ReasonExtHeaderChain)
			}
		}
		switch nh {
		case ipv6ExtHopByHop, ipv6ExtRouting, ipv6ExtDestOpts:
			// RFC 8200 §4.1: hop-by-hop options only right after the
			// fixed header.
			if nh == ipv6ExtHopByHop && off != IPv6HeaderSize {
				return p.fail(ReasonBadExtHeader)
			}
			if len(h)-off < ipv6ExtMinSize {
				return p.fail(ReasonBadExtHeader)
			}
			l := (int(h[off+1]) + 1) * 8
			if l > len(h)-off {
				return p.fail(ReasonBadExtHeader)
			}
			if nh == ipv6ExtRouting && h[off+ipv6RoutingSegsLeft] > 0 && l > ipv6RoutingAddrStart {
				switch h[off+ipv6RoutingType] {
				case ipv6RoutingTypeRH0, ipv6RoutingTypeMIP, ipv6RoutingTypeSRH:
					sourceRouted = true
				}
			}
			nh = h[off]
			off += l
		case ipv6ExtFragment:
			if sawFrag || len(h)-off < ipv6ExtMinSize {
				return p.fail(ReasonBadExtHeader)
			}
			sawFrag = true
			fo := be16(h[off+ipv6FragOffFlags:])
			fragOff = fo & ipv6FragOffMask
			moreFrags = fo&ipv6FragMF != 0
			fragID = be32(h[off+ipv6FragID:])
			nh = h[off]
			off += ipv6ExtMinSize
			data := len(h) - off
			// RFC 8200 §4.5: every fragment but the last is a multiple
			// of 8 bytes long, and none reaches past 65535.
			if !quoted && (int(fragOff)+data > ipv4MaxDatagram || moreFrags && data%8 != 0) {
				return p.fail(ReasonBadFragment)
			}
			if fragOff != 0 {
				break walk // a later fragment: the rest is data
			}
		default:
			break walk
		}
	}
	p.Src = [16]byte(h[ipv6SrcAddr : ipv6SrcAddr+16])
	p.Dst = [16]byte(h[ipv6DstAddr : ipv6DstAddr+16])
	p.Version = 6
	p.Proto = nh
	p.SourceRouted = sourceRouted
	p.Quoted = quoted
	p.FragOff = fragOff
	p.MoreFrags = moreFrags
	p.FragID = fragID
	p.L3Off = l3
	return p.parseL4(b, l3+off, l3+end)
}

// parseL4 parses the upper-layer header at b[l4:end] after the IP layer
// has filled in the rest of p.
func (p *Parsed) parseL4(b []byte, l4, end int) Reason {
	p.L4Off = l4
	p.PayloadOff = l4
	p.End = end
	p.SrcPort, p.DstPort, p.ICMPID = 0, 0, 0
	p.TCPFlags, p.ICMPType, p.ICMPCode = 0, 0, 0
	p.Reason = ReasonNone
	if p.FragOff != 0 {
		return ReasonNone // a later fragment carries no L4 header
	}
	l4b := b[l4:end]
	switch {
	case p.Proto == ProtoTCP:
		if p.Quoted {
			return p.parseQuotedL4(l4b, TCPMinimumSize)
		}
		if len(l4b) < TCPMinimumSize {
			return p.fail(ReasonTruncatedL4)
		}
		doff := int(l4b[tcpDataOffset]>>4) * 4
		if doff < TCPMinimumSize || doff > len(l4b) {
			return p.fail(ReasonBadTCPDataOffset)
		}
		p.SrcPort = be16(l4b[tcpSrcPort:])
		p.DstPort = be16(l4b[tcpDstPort:])
		p.TCPFlags = l4b[tcpFlags]
		p.PayloadOff = l4 + doff
	case p.Proto == ProtoUDP:
		if p.Quoted {
			return p.parseQuotedL4(l4b, UDPMinimumSize)
		}
		if len(l4b) < UDPMinimumSize {
			return p.fail(ReasonTruncatedL4)
		}
		// The UDP length covers the whole datagram, which a first
		// fragment holds only part of.
		if ul := int(be16(l4b[udpLength:])); ul < UDPMinimumSize || !p.MoreFrags && ul > len(l4b) {
			return p.fail(ReasonBadUDPLength)
		}
		p.SrcPort = be16(l4b[udpSrcPort:])
		p.DstPort = be16(l4b[udpDstPort:])
		p.PayloadOff = l4 + UDPMinimumSize
	case p.IsICMP():
		if len(l4b) < ICMPMinimumSize {
			return p.fail(ReasonTruncatedL4)
		}
		p.ICMPType = l4b[icmpType]
		p.ICMPCode = l4b[icmpCode]
		if isICMPEcho(p.Version, p.ICMPType) {
			p.ICMPID = be16(l4b[icmpIdent:])
		}
		p.PayloadOff = l4 + ICMPMinimumSize
	}
	return ReasonNone
}

// parseQuotedL4 reads the ports of a TCP or UDP header quoted in an ICMP
// error, of which only the first 8 bytes are guaranteed to be present.
func (p *Parsed) parseQuotedL4(l4b []byte, full int) Reason {
	if len(l4b) < 8 {
		return p.fail(ReasonTruncatedL4)
	}
	p.SrcPort = be16(l4b[0:])
	p.DstPort = be16(l4b[2:])
	if p.Proto == ProtoTCP && len(l4b) > tcpFlags {
		p.TCPFlags = l4b[tcpFlags]
	}
	p.PayloadOff = p.L4Off + min(full, len(l4b))
	return ReasonNone
}
