package afpacket

import (
	"encoding/binary"
	"net/netip"

	"github.com/vsgate/vsgate/packet"
)

// icmpPerSecond and icmpBurst bound the time-exceeded messages a Link
// sends, as the kernel's icmp_ratelimit keeps a flood of expiring packets
// from becoming a flood of errors.
const (
	icmpPerSecond = 100
	icmpBurst     = 50
)

// timeExceeded answers ip, which arrived on the Port with no TTL (hop
// limit) left, with an ICMP time exceeded from the Port's address on its
// interface — what a router does (RFC 1812 §5.3.1, RFC 4443 §3.3), and
// what the kernel did for a TUN. Errors about errors, non-first fragments
// and packets from unspecified or multicast sources get none; neither do
// packets past the rate limit. It runs on the reading goroutine.
func (p *Port) timeExceeded(ip []byte) {
	v4 := ip[0]>>4 == 4
	var src, dst netip.Addr
	if v4 {
		if len(ip) < packet.IPv4MinimumSize || binary.BigEndian.Uint16(ip[6:])&0x1fff != 0 {
			return
		}
		hl := int(ip[0]&0x0f) * 4
		if ip[9] == packet.ProtoICMPv4 && (len(ip) <= hl || packet.IsICMPError(4, ip[hl])) {
			return
		}
		dst = netip.AddrFrom4([4]byte(ip[12:16]))
	} else {
		if len(ip) < packet.IPv6HeaderSize {
			return
		}
		if ip[6] == packet.ProtoICMPv6 && (len(ip) <= packet.IPv6HeaderSize || ip[packet.IPv6HeaderSize] < 128) {
			return
		}
		dst = netip.AddrFrom16([16]byte(ip[8:24]))
	}
	if !dst.IsGlobalUnicast() && !dst.IsLinkLocalUnicast() {
		return
	}
	st := p.link.state.Load()
	if st == nil || p.iface >= len(st.src) {
		return
	}
	if src = st.src[p.iface][b2i(!v4)]; !src.IsValid() {
		return
	}
	if !p.link.icmp.Allow() {
		return
	}
	if p.icmp == nil {
		p.icmp = make([]byte, portHeadroom+packet.MaxICMPErrorSize)
	}
	b := p.icmp
	clear(b[:portHeadroom])
	typ := uint8(packet.ICMPv4TimeExceeded)
	if !v4 {
		typ = packet.ICMPv6TimeExceeded
	}
	n, ok := packet.MakeICMPError(b[portHeadroom:], ip, src, dst, typ, 0, 0)
	if !ok {
		return
	}
	frame := b[:portHeadroom+n]
	if s := p.link.prepare(p.queue, frame, netip.Addr{}); s != nil {
		p.link.captured(frame[packet.VNetHdrSize:])
		if err := p.link.writeBatch(s, [][]byte{frame}, false); err == nil {
			p.link.stats.TimeExceeded.Add(1)
		}
	}
}
