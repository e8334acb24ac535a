package packet

// Rewrites change a parsed packet in place and keep every checksum that
// covers the changed bytes valid by incremental update (RFC 1624): the IPv4
// header checksum, the TCP, UDP and ICMPv6 checksums (whose pseudo-header
// covers the addresses), and, for a packet quoted in an ICMP error, the
// error's own ICMP checksum. A checksum that was wrong before stays wrong
// by the same amount: a rewrite never launders a corrupt packet.
//
// Special cases, each exact:
//   - a later fragment has no L4 header: only the IP header changes, and
//     the first fragment's L4 checksum (which covers the whole datagram)
//     carries the address change;
//   - an IPv4 UDP checksum of 0 means "none" and stays 0; a UDP checksum
//     that computes to 0 is written as 0xFFFF (RFC 768);
//   - a source-routed packet's transport checksum covers its final
//     destination, not the Dst field, so a Dst rewrite leaves it alone;
//   - a quoted packet's L4 checksum is updated only if the quote holds it.
//
// The packet must have parsed (p.Reason == ReasonNone); rewrites do not
// allocate. p is updated to describe the packet as rewritten.

// SetSrc sets the source address, and the source port if p.HasPorts().
// For an IPv4 packet addr must be IPv4-mapped.
func SetSrc(b []byte, p *Parsed, addr [16]byte, port uint16) {
	rewriteAddrPort(b, p, false, &addr, port)
}

// SetDst sets the destination address, and the destination port if
// p.HasPorts(). For an IPv4 packet addr must be IPv4-mapped.
func SetDst(b []byte, p *Parsed, addr [16]byte, port uint16) {
	rewriteAddrPort(b, p, true, &addr, port)
}

// SetICMPID sets the identifier of an ICMP echo request or reply
// (p.IsICMPEcho()) and fixes the ICMP checksum.
func SetICMPID(b []byte, p *Parsed, id uint16) {
	rewriteICMPID(b, p, id)
}

// SetInnerSrc sets the source address (and port, if inner.HasPorts()) of
// the packet quoted in an ICMP error. outer is the error as parsed by
// Parse, inner its quote as parsed by ParseICMPError. The quote's IPv4
// header checksum, its L4 checksum where quoted, and the error's ICMP
// checksum are fixed; the outer IP header is not touched (use SetSrc and
// SetDst on outer for that).
func SetInnerSrc(b []byte, outer, inner *Parsed, addr [16]byte, port uint16) {
	fixICMPChecksum(b, outer, rewriteAddrPort(b, inner, false, &addr, port))
}

// SetInnerDst is SetInnerSrc for the quoted packet's destination.
func SetInnerDst(b []byte, outer, inner *Parsed, addr [16]byte, port uint16) {
	fixICMPChecksum(b, outer, rewriteAddrPort(b, inner, true, &addr, port))
}

// SetInnerICMPID sets the identifier of an ICMP echo quoted in an ICMP
// error (a traceroute probe answered by "time exceeded", say) and fixes
// both ICMP checksums.
func SetInnerICMPID(b []byte, outer, inner *Parsed, id uint16) {
	fixICMPChecksum(b, outer, rewriteICMPID(b, inner, id))
}

// fixICMPChecksum applies delta d, the change of bytes inside the ICMP
// message outer, to its checksum.
func fixICMPChecksum(b []byte, outer *Parsed, d uint32) {
	c := b[outer.L4Off+icmpChecksum : outer.L4Off+icmpChecksum+2]
	put16(c, adjust(be16(c), d))
}

// rewriteICMPID sets an echo identifier and returns the delta of every
// word it changed.
func rewriteICMPID(b []byte, p *Parsed, id uint16) uint32 {
	l4 := p.L4Off
	f := b[l4+icmpIdent : l4+icmpIdent+2]
	dID := delta16(be16(f), id)
	put16(f, id)
	p.ICMPID = id
	c := b[l4+icmpChecksum : l4+icmpChecksum+2]
	oc := be16(c)
	nc := adjust(oc, dID)
	put16(c, nc)
	return dID + delta16(oc, nc)
}

// rewriteAddrPort replaces the source or destination address (and port)
// of the packet p describes and fixes the checksums covering them. It
// returns the delta of every word it changed, checksum fields included,
// for a checksum that covers the whole packet: the ICMP checksum of an
// error quoting it.
func rewriteAddrPort(b []byte, p *Parsed, isDst bool, addr *[16]byte, port uint16) uint32 {
	l3 := p.L3Off
	var dAddr, dAll uint32
	if p.Version == 4 {
		off := l3 + ipv4SrcAddr
		if isDst {
			off = l3 + ipv4DstAddr
		}
		a := b[off : off+4]
		na := be32(addr[12:16])
		dAddr = delta32(be32(a), na)
		put32(a, na)
		c := b[l3+ipv4Checksum : l3+ipv4Checksum+2]
		oc := be16(c)
		nc := adjust(oc, dAddr)
		put16(c, nc)
		dAll = dAddr + delta16(oc, nc)
	} else {
		off := l3 + ipv6SrcAddr
		if isDst {
			off = l3 + ipv6DstAddr
		}
		a := b[off : off+16]
		dAddr = deltaBytes(a, addr[:])
		copy(a, addr[:])
		dAll = dAddr
	}
	if isDst {
		p.Dst = *addr
	} else {
		p.Src = *addr
	}
	if p.FragOff != 0 {
		return dAll
	}

	l4 := p.L4Off
	var csumOff int
	switch {
	case p.Proto == ProtoTCP:
		csumOff = l4 + tcpChecksum
	case p.Proto == ProtoUDP:
		csumOff = l4 + udpChecksum
	case p.Version == 6 && p.Proto == ProtoICMPv6:
		csumOff = l4 + icmpChecksum
	default:
		return dAll // no checksum covers the addresses
	}
	dL4 := dAddr
	if isDst && p.SourceRouted {
		dL4 = 0
	}
	if p.Proto != ProtoICMPv6 { // TCP or UDP: there are ports
		off := l4 + tcpSrcPort // the same offsets for UDP
		if isDst {
			off = l4 + tcpDstPort
			p.DstPort = port
		} else {
			p.SrcPort = port
		}
		f := b[off : off+2]
		dPort := delta16(be16(f), port)
		put16(f, port)
		dL4 += dPort
		dAll += dPort
	}
	if csumOff+2 > p.End {
		return dAll // a quote cut short before the checksum
	}
	c := b[csumOff : csumOff+2]
	oc := be16(c)
	if p.Proto == ProtoUDP && oc == 0 && p.Version == 4 {
		return dAll // IPv4 UDP without checksum stays without
	}
	nc := adjust(oc, dL4)
	if nc == 0 && p.Proto == ProtoUDP {
		nc = 0xffff
	}
	put16(c, nc)
	return dAll + delta16(oc, nc)
}

// L4Checksum computes from scratch the checksum field value the upper-layer
// header of p should carry: TCP, UDP (pseudo-header included) or ICMP
// (ICMPv6 with pseudo-header). It reports false for other protocols, later
// fragments and cut-short quotes. For a first fragment it covers only the
// bytes in this fragment, which is what verification of a reassembled
// datagram would not do: use it on whole packets. A source-routed packet is
// summed with its Dst field, not its final destination.
func L4Checksum(b []byte, p *Parsed) (uint16, bool) {
	if p.Reason != ReasonNone || p.FragOff != 0 || p.Quoted {
		return 0, false
	}
	l4 := b[p.L4Off:p.End]
	var csumOff int
	var s uint16
	switch {
	case p.Proto == ProtoTCP:
		csumOff = tcpChecksum
	case p.Proto == ProtoUDP:
		csumOff = udpChecksum
	case p.Version == 4 && p.Proto == ProtoICMPv4:
		csumOff = icmpChecksum
	case p.Version == 6 && p.Proto == ProtoICMPv6:
		csumOff = icmpChecksum
	default:
		return 0, false
	}
	if p.Proto != ProtoICMPv4 {
		if p.Version == 4 {
			s = PseudoHeaderSum(p.Proto, p.Src[12:], p.Dst[12:], len(l4))
		} else {
			s = PseudoHeaderSum(p.Proto, p.Src[:], p.Dst[:], len(l4))
		}
	}
	s = Sum(l4[:csumOff], s)
	s = Sum(l4[csumOff+2:], s)
	c := ^s
	if c == 0 && p.Proto == ProtoUDP {
		c = 0xffff
	}
	return c, true
}

// TransportChecksumValid reports whether the TCP, UDP or ICMPv6 checksum of
// a parsed, unfragmented packet b is right (a UDP-over-IPv4 checksum of 0,
// "none", counts as right). It sums the whole segment (L4Checksum): callers
// check only the segments that change a flow's state. Other protocols,
// fragments and quoted packets report true: there is nothing here to
// check; so do source-routed ones, whose pseudo-header holds a destination
// the packet does not show yet.
func TransportChecksumValid(b []byte, p *Parsed) bool {
	if p.SourceRouted || p.End > len(b) || p.L4Off > p.End || p.Proto == ProtoICMPv4 {
		return true
	}
	want, ok := L4Checksum(b, p)
	if !ok {
		return true
	}
	var field uint16
	switch p.Proto {
	case ProtoTCP:
		field = be16(b[p.L4Off+tcpChecksum:])
	case ProtoUDP:
		field = be16(b[p.L4Off+udpChecksum:])
		if field == 0 && p.Version == 4 {
			return true
		}
	default:
		field = be16(b[p.L4Off+icmpChecksum:])
	}
	// 0 and 0xffff are the same one's-complement number.
	return field == want || field^want == 0xffff && (field == 0 || want == 0)
}
