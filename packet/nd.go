package packet

import "net/netip"

// ICMPv6 neighbour discovery message types (RFC 4861 §4.3, §4.4).
const (
	ICMPv6NeighborSolicit = 135
	ICMPv6NeighborAdvert  = 136
)

// Neighbour discovery layout: the 4-byte ICMPv6 header, 4 bytes of flags
// (advertisement) or reserved (solicitation), the target address, then
// options of 8-byte units.
//
//	| type | code | checksum | R S O reserved (4) | target address (16) | options ... |
const (
	ndTarget        = 8
	ndMinimumSize   = 24
	ndOptSourceLL   = 1 // source link-layer address option
	ndOptTargetLL   = 2 // target link-layer address option
	ndOptUnit       = 8
	ndFlagRouter    = 0x80
	ndFlagSolicited = 0x40
	ndFlagOverride  = 0x20
	ndHopLimit      = 255 // §7.1.1: anything less was forwarded by a router
)

// ND is what ParseND learns about a neighbour solicitation or
// advertisement.
type ND struct {
	// Type is ICMPv6NeighborSolicit or ICMPv6NeighborAdvert.
	Type uint8

	// Target is the address being resolved (solicitation) or announced
	// (advertisement).
	Target netip.Addr

	// LinkAddr is the source link-layer address option of a solicitation
	// or the target link-layer address option of an advertisement; valid
	// iff HasLinkAddr.
	LinkAddr    MAC
	HasLinkAddr bool

	// Router, Solicited and Override are an advertisement's flags.
	Router, Solicited, Override bool
}

// ParseND validates a neighbour solicitation or advertisement as RFC 4861
// §7.1.1 and §7.1.2 require — hop limit 255, correct checksum, code 0, at
// least 24 bytes, no zero-length option, a unicast target, a solicitation
// from the unspecified address sent to a solicited-node group without a
// source link-layer option, an advertisement to a multicast group without
// the solicited flag — and fills nd. p must be b parsed by Parse as an
// IPv6 ICMPv6 packet of type 135 or 136; anything else is ReasonBadND.
// It does not allocate.
func ParseND(b []byte, p *Parsed, nd *ND) Reason {
	*nd = ND{}
	if p.Reason != ReasonNone || p.Version != 6 || p.Proto != ProtoICMPv6 || !p.HasL4Header() ||
		p.FragOff != 0 || p.MoreFrags || (p.ICMPType != ICMPv6NeighborSolicit && p.ICMPType != ICMPv6NeighborAdvert) {
		return ReasonBadND
	}
	m := b[p.L4Off:p.End]
	if len(m) < ndMinimumSize || p.ICMPCode != 0 || IPv6(b[p.L3Off:]).HopLimit() != ndHopLimit {
		return ReasonBadND
	}
	if want, _ := L4Checksum(b, p); want != ICMP(m).Checksum() {
		return ReasonBadND
	}
	target := netip.AddrFrom16([16]byte(m[ndTarget : ndTarget+16]))
	if target.IsMulticast() {
		return ReasonBadND
	}
	src, dst := netip.AddrFrom16(p.Src), netip.AddrFrom16(p.Dst)
	nd.Type, nd.Target = p.ICMPType, target
	if p.ICMPType == ICMPv6NeighborAdvert {
		f := m[4]
		nd.Router, nd.Solicited, nd.Override = f&ndFlagRouter != 0, f&ndFlagSolicited != 0, f&ndFlagOverride != 0
		if nd.Solicited && dst.IsMulticast() {
			return nd.fail()
		}
	} else if src.IsUnspecified() && !isSolicitedNode(dst) {
		return nd.fail() // duplicate address detection goes to the solicited-node group only
	}
	want := uint8(ndOptSourceLL)
	if p.ICMPType == ICMPv6NeighborAdvert {
		want = ndOptTargetLL
	}
	for opts := m[ndMinimumSize:]; len(opts) > 0; {
		if len(opts) < 2 || opts[1] == 0 || int(opts[1])*ndOptUnit > len(opts) {
			return nd.fail()
		}
		n := int(opts[1]) * ndOptUnit
		if opts[0] == want && n == ndOptUnit { // Ethernet: 2 + 6 bytes (RFC 4861 §4.6.1)
			nd.LinkAddr, nd.HasLinkAddr = MAC(opts[2:8]), true
		}
		opts = opts[n:]
	}
	if p.ICMPType == ICMPv6NeighborSolicit && src.IsUnspecified() && nd.HasLinkAddr {
		return nd.fail()
	}
	return ReasonNone
}

func (nd *ND) fail() Reason {
	*nd = ND{}
	return ReasonBadND
}

// isSolicitedNode reports whether a is a solicited-node multicast address,
// ff02::1:ffXX:XXXX (RFC 4291 §2.7.1).
func isSolicitedNode(a netip.Addr) bool {
	b := a.As16()
	return b[0] == 0xff && b[1] == 0x02 && [9]byte(b[2:11]) == [9]byte{} && b[11] == 1 && b[12] == 0xff
}

// SolicitedNode returns the solicited-node multicast address of a unicast
// IPv6 address and the Ethernet group MAC it maps to (RFC 2464 §7).
func SolicitedNode(a netip.Addr) (netip.Addr, MAC) {
	t := a.As16()
	g := [16]byte{0: 0xff, 1: 0x02, 11: 1, 12: 0xff, 13: t[13], 14: t[14], 15: t[15]}
	return netip.AddrFrom16(g), MulticastMAC(netip.AddrFrom16(g))
}

// MulticastMAC returns the Ethernet group MAC of an IPv6 multicast
// address: 33:33 and its low 32 bits (RFC 2464 §7).
func MulticastMAC(group netip.Addr) MAC {
	g := group.As16()
	return MAC{0x33, 0x33, g[12], g[13], g[14], g[15]}
}

// PutNeighborSolicit writes an Ethernet frame carrying a neighbour
// solicitation for target from src (with srcMAC as its source link-layer
// option) to target's solicited-node group, and returns the frame length.
// b must hold NDFrameSize bytes.
func PutNeighborSolicit(b []byte, srcMAC MAC, src, target netip.Addr) int {
	group, groupMAC := SolicitedNode(target)
	return putND(b, ICMPv6NeighborSolicit, 0, srcMAC, groupMAC, src, group, target, ndOptSourceLL)
}

// PutNeighborAdvert writes an Ethernet frame carrying a neighbour
// advertisement of target at srcMAC (the target link-layer option), with
// the override flag set and the solicited flag as given, from src to dst
// at dstMAC, and returns the frame length. b must hold NDFrameSize bytes.
// For an unsolicited announcement send to ff02::1 at 33:33:00:00:00:01
// with solicited false (RFC 4861 §7.2.6).
func PutNeighborAdvert(b []byte, srcMAC, dstMAC MAC, src, dst, target netip.Addr, solicited bool) int {
	flags := uint8(ndFlagOverride)
	if solicited {
		flags |= ndFlagSolicited
	}
	return putND(b, ICMPv6NeighborAdvert, flags, srcMAC, dstMAC, src, dst, target, ndOptTargetLL)
}

// NDFrameSize is the length of the frames PutNeighborSolicit and
// PutNeighborAdvert write.
const NDFrameSize = EthernetMinimumSize + IPv6HeaderSize + ndMinimumSize + ndOptUnit

func putND(b []byte, typ, flags uint8, srcMAC, dstMAC MAC, src, dst, target netip.Addr, opt uint8) int {
	n := PutEthernet(b, dstMAC, srcMAC, EtherTypeIPv6)
	ip := b[n : n+IPv6HeaderSize]
	clear(ip)
	ip[0] = 6 << 4
	msgLen := ndMinimumSize + ndOptUnit
	put16(ip[ipv6PayloadLen:], uint16(msgLen))
	ip[ipv6NextHeader] = ProtoICMPv6
	ip[ipv6HopLimit] = ndHopLimit
	s16, d16, t16 := src.As16(), dst.As16(), target.As16()
	copy(ip[ipv6SrcAddr:], s16[:])
	copy(ip[ipv6DstAddr:], d16[:])
	m := b[n+IPv6HeaderSize : n+IPv6HeaderSize+msgLen]
	clear(m)
	m[icmpType] = typ
	m[4] = flags
	copy(m[ndTarget:], t16[:])
	m[ndMinimumSize], m[ndMinimumSize+1] = opt, 1
	copy(m[ndMinimumSize+2:], srcMAC[:])
	put16(m[icmpChecksum:], ^Sum(m, PseudoHeaderSum(ProtoICMPv6, s16[:], d16[:], msgLen)))
	return n + IPv6HeaderSize + msgLen
}
