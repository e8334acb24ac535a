package packet

import "net/netip"

// What a router does with a packet larger than the link it must leave on
// (RFC 1191, RFC 8201, RFC 791 §3.2): tell the sender, or fragment.

// ICMPv4 destination unreachable, fragmentation needed (RFC 792, RFC 1191).
const (
	icmpv4DestUnreach  = 3
	icmpv4FragNeeded   = 4
	maxICMPv4ErrorSize = 576  // RFC 1812 §4.3.2.3: an ICMPv4 error is at most 576 bytes
	maxICMPv6ErrorSize = 1280 // RFC 4443 §2.4 (c): an ICMPv6 error fits the minimum MTU

	// MaxICMPErrorSize is the most MakeICMPError writes.
	MaxICMPErrorSize    = maxICMPv6ErrorSize
	icmpErrorHeaderSize = 8
)

// MakeTooBig writes into out the ICMP error that tells the sender of pkt
// (parsed into p) that it is larger than mtu: ICMPv4 fragmentation
// needed with the next-hop MTU (RFC 1191), or ICMPv6 packet too big (RFC
// 4443 §3.2), from src. It returns the error's length, or false if out
// is too short or pkt is itself an ICMP error (never answered).
func MakeTooBig(out, pkt []byte, p *Parsed, src [16]byte, mtu int) (int, bool) {
	if p.Reason != ReasonNone || p.Quoted || p.IsICMPError() {
		return 0, false
	}
	typ, code := uint8(ICMPv6PacketTooBig), uint8(0)
	s, d := netip.AddrFrom16(src), netip.AddrFrom16(p.Src)
	if p.Version == 4 {
		typ, code = icmpv4DestUnreach, icmpv4FragNeeded
		s, d = netip.AddrFrom4([4]byte(src[12:])), netip.AddrFrom4([4]byte(p.Src[12:]))
		mtu = min(mtu, 0xffff)
	}
	return MakeICMPError(out, pkt[p.L3Off:p.End], s, d, typ, code, uint32(mtu))
}

// MakeICMPError writes into out an ICMP error from src to dst (both IPv4,
// or both IPv6) of type typ and code, with info in its second word (the
// next-hop MTU of fragmentation needed and packet too big, 0 for most),
// quoting as much of quote, the offending packet from its IP header on,
// as the error's size limit allows (576 bytes for IPv4, RFC 1812
// §4.3.2.3; 1280 for IPv6, RFC 4443 §2.4). The IPv4 header carries the
// internetwork-control precedence, as Linux's errors do. Both checksums
// are complete. It returns the error's length, or false if out is too
// short or the addresses are not of one family.
func MakeICMPError(out, quote []byte, src, dst netip.Addr, typ, code uint8, info uint32) (int, bool) {
	if src.Is4() != dst.Is4() || !src.IsValid() || !dst.IsValid() {
		return 0, false
	}
	if src.Is4() {
		n := min(IPv4MinimumSize+icmpErrorHeaderSize+len(quote), maxICMPv4ErrorSize)
		if len(out) < n {
			return 0, false
		}
		h := out[:IPv4MinimumSize]
		clear(h)
		h[ipv4VersIHL], h[1] = 0x45, 0xc0
		put16(h[ipv4TotalLen:], uint16(n))
		h[ipv4TTL] = 64
		h[ipv4Protocol] = ProtoICMPv4
		s4, d4 := src.As4(), dst.As4()
		copy(h[ipv4SrcAddr:], s4[:])
		copy(h[ipv4DstAddr:], d4[:])
		IPv4(h).SetChecksum(IPv4(h).CalculateChecksum())
		m := out[IPv4MinimumSize:n]
		clear(m[:icmpErrorHeaderSize])
		m[0], m[1] = typ, code
		put32(m[4:], info)
		copy(m[icmpErrorHeaderSize:], quote)
		put16(m[2:], ^Sum(m, 0))
		return n, true
	}
	n := min(IPv6HeaderSize+icmpErrorHeaderSize+len(quote), maxICMPv6ErrorSize)
	if len(out) < n {
		return 0, false
	}
	h := out[:IPv6HeaderSize]
	clear(h)
	h[ipv6VersTCFlow] = 0x60
	put16(h[ipv6PayloadLen:], uint16(n-IPv6HeaderSize))
	h[ipv6NextHeader] = ProtoICMPv6
	h[ipv6HopLimit] = 64
	s16, d16 := src.As16(), dst.As16()
	copy(h[ipv6SrcAddr:], s16[:])
	copy(h[ipv6DstAddr:], d16[:])
	m := out[IPv6HeaderSize:n]
	clear(m[:icmpErrorHeaderSize])
	m[0], m[1] = typ, code
	put32(m[4:], info)
	copy(m[icmpErrorHeaderSize:], quote)
	put16(m[2:], ^Sum(m, PseudoHeaderSum(ProtoICMPv6, h[ipv6SrcAddr:ipv6SrcAddr+16], h[ipv6DstAddr:ipv6DstAddr+16], len(m))))
	return n, true
}

// FragmentIPv4 cuts the IPv4 packet pkt, larger than mtu, into fragments
// of at most mtu bytes (RFC 791 §3.2, "An Example Fragmentation
// Procedure"), written into bufs (each with room for mtu bytes), and
// returns how many. Later fragments carry only the options whose copied
// flag is set. It reports false, writing nothing that counts, if pkt has
// DF set or is not whole, mtu leaves less than 8 bytes of data a
// fragment, or bufs are too few or too short.
func FragmentIPv4(pkt []byte, mtu int, bufs [][]byte) (int, bool) {
	if len(pkt) < IPv4MinimumSize || pkt[0]>>4 != 4 {
		return 0, false
	}
	ip := IPv4(pkt)
	hl, tl := ip.HeaderLength(), int(ip.TotalLength())
	ff := be16(pkt[ipv4FlagsFrag:])
	if hl < IPv4MinimumSize || tl > len(pkt) || tl <= mtu || ff&ipv4FlagDF != 0 {
		return 0, false
	}
	// The options later fragments keep, padded to a multiple of 4.
	var later [40]byte
	ln := 0
	for o := pkt[IPv4MinimumSize:hl]; len(o) > 0; {
		switch {
		case o[0] == 0: // end of options
			o = nil
			continue
		case o[0] == 1: // no operation
			o = o[1:]
			continue
		case len(o) < 2 || int(o[1]) < 2 || int(o[1]) > len(o):
			o = nil
			continue
		}
		if o[0]&0x80 != 0 {
			ln += copy(later[ln:], o[:o[1]])
		}
		o = o[o[1]:]
	}
	laterHL := IPv4MinimumSize + (ln+3)&^3
	data := pkt[hl:tl]
	off0 := int(ff&ipv4FragOffMask) * 8 // a fragment being fragmented again
	mf := ff & ipv4FlagMF
	n := 0
	for pos := 0; pos < len(data); n++ {
		h := hl
		if n > 0 {
			h = laterHL
		}
		room := (mtu - h) &^ 7
		if room < 8 || n == len(bufs) || len(bufs[n]) < mtu {
			return 0, false
		}
		end := min(pos+room, len(data))
		f := bufs[n][:h+end-pos]
		if n == 0 {
			copy(f, pkt[:hl])
		} else {
			copy(f, pkt[:IPv4MinimumSize])
			clear(f[IPv4MinimumSize:h])
			copy(f[IPv4MinimumSize:], later[:ln])
			f[ipv4VersIHL] = 0x40 | uint8(h/4)
		}
		copy(f[h:], data[pos:end])
		flags := uint16((off0+pos)/8) & ipv4FragOffMask
		if end < len(data) || mf != 0 {
			flags |= ipv4FlagMF
		}
		put16(f[ipv4FlagsFrag:], flags)
		put16(f[ipv4TotalLen:], uint16(len(f)))
		IPv4(f).SetChecksum(IPv4(f[:h]).CalculateChecksum())
		bufs[n] = f
		pos = end
	}
	return n, true
}
