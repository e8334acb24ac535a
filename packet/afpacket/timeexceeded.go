package afpacket

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"time"

	"github.com/vsgate/vsgate/packet"
)

// Sizes of the time-exceeded message: the quote is cut so that the whole
// error fits 576 bytes for IPv4 (RFC 1812's limit for ICMP errors) and
// the IPv6 minimum MTU for IPv6 (RFC 4443 §2.4).
const (
	icmpv4ErrorMax = 576
	icmpv6ErrorMax = 1280
	icmpHeaderSize = 8
)

// icmpLimit bounds the time-exceeded messages a Link sends: at most
// icmpBurst at once, icmpPerSecond on average, as the kernel's
// icmp_ratelimit keeps a flood of expiring packets from becoming a flood
// of errors.
const (
	icmpPerSecond = 100
	icmpBurst     = 50
)

// tokenBucket is a small rate limiter, safe for concurrent use.
type tokenBucket struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func (b *tokenBucket) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last.IsZero() {
		b.tokens = icmpBurst
	} else {
		b.tokens = min(icmpBurst, b.tokens+now.Sub(b.last).Seconds()*icmpPerSecond)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

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
	if !p.link.icmp.allow(time.Now()) {
		return
	}
	if p.icmp == nil {
		p.icmp = make([]byte, portHeadroom+icmpv6ErrorMax)
	}
	b := p.icmp
	clear(b[:portHeadroom])
	out := b[portHeadroom:]
	var n int
	if v4 {
		n = packet.IPv4MinimumSize + icmpHeaderSize + copy(out[packet.IPv4MinimumSize+icmpHeaderSize:icmpv4ErrorMax], ip)
		clear(out[:packet.IPv4MinimumSize+icmpHeaderSize])
		out[0], out[1], out[8], out[9] = 0x45, 0xc0, 64, packet.ProtoICMPv4
		binary.BigEndian.PutUint16(out[2:], uint16(n))
		copy(out[12:16], src.AsSlice())
		copy(out[16:20], dst.AsSlice())
		packet.IPv4(out).SetChecksum(packet.IPv4(out).CalculateChecksum())
		icmp := out[packet.IPv4MinimumSize:n]
		icmp[0] = packet.ICMPv4TimeExceeded
		binary.BigEndian.PutUint16(icmp[2:], ^packet.Sum(icmp, 0))
	} else {
		n = packet.IPv6HeaderSize + icmpHeaderSize + copy(out[packet.IPv6HeaderSize+icmpHeaderSize:icmpv6ErrorMax], ip)
		clear(out[:packet.IPv6HeaderSize+icmpHeaderSize])
		out[0], out[6], out[7] = 0x60, packet.ProtoICMPv6, 64
		binary.BigEndian.PutUint16(out[4:], uint16(n-packet.IPv6HeaderSize))
		copy(out[8:24], src.AsSlice())
		copy(out[24:40], dst.AsSlice())
		icmp := out[packet.IPv6HeaderSize:n]
		icmp[0] = packet.ICMPv6TimeExceeded
		binary.BigEndian.PutUint16(icmp[2:], ^packet.Sum(icmp, packet.PseudoHeaderSum(packet.ProtoICMPv6, out[8:24], out[24:40], len(icmp))))
	}
	frame := b[:portHeadroom+n]
	if s := p.link.prepare(p.queue, frame); s != nil {
		p.link.captured(frame[packet.VNetHdrSize:])
		if err := p.link.writeBatch(s, [][]byte{frame}, false); err == nil {
			p.link.stats.TimeExceeded.Add(1)
		}
	}
}
