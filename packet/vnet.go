package packet

import "encoding/binary"

// VNetHdrSize is the size of struct virtio_net_hdr (without num_buffers):
// what a TUN opened with IFF_VNET_HDR and an AF_PACKET socket with
// PACKET_VNET_HDR put in front of every packet.
const VNetHdrSize = 10

// virtio_net_hdr values (include/uapi/linux/virtio_net.h).
const (
	VNetNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM: the checksum at CsumStart+CsumOffset is partial
	VNetDataValid = 2 // VIRTIO_NET_HDR_F_DATA_VALID: the kernel has checked the packet's checksums

	GSONone  = 0    // VIRTIO_NET_HDR_GSO_NONE
	GSOTCPv4 = 1    // VIRTIO_NET_HDR_GSO_TCPV4
	GSOUDP   = 3    // VIRTIO_NET_HDR_GSO_UDP (UFO: fragments, not split here)
	GSOTCPv6 = 4    // VIRTIO_NET_HDR_GSO_TCPV6
	GSOUDPL4 = 5    // VIRTIO_NET_HDR_GSO_UDP_L4 (USO)
	GSOECN   = 0x80 // VIRTIO_NET_HDR_GSO_ECN
)

// VNetHdr is a virtio-net header in place: VNetHdrSize bytes. Its 16-bit
// fields are in the host's byte order (the kernel's vio_le() is true on
// every little-endian host, and the legacy header is native-endian on the
// others).
//
// CsumStart and HdrLen count from the start of the frame that follows the
// header; the methods that take an IP packet take l2 too, the bytes of
// link header between the virtio-net header and the IP header: 0 on a TUN,
// EthernetMinimumSize on AF_PACKET.
type VNetHdr []byte

func (h VNetHdr) Flags() uint8    { return h[0] }
func (h VNetHdr) GSOType() uint8  { return h[1] &^ GSOECN }
func (h VNetHdr) HdrLen() int     { return int(binary.NativeEndian.Uint16(h[2:])) }
func (h VNetHdr) GSOSize() int    { return int(binary.NativeEndian.Uint16(h[4:])) }
func (h VNetHdr) CsumStart() int  { return int(binary.NativeEndian.Uint16(h[6:])) }
func (h VNetHdr) CsumOffset() int { return int(binary.NativeEndian.Uint16(h[8:])) }
func (h VNetHdr) Partial() bool   { return h.Flags()&VNetNeedsCsum != 0 }

// ChecksumTrusted reports whether the kernel vouches for the packet's
// transport checksum: it checked it (DATA_VALID), or the packet was made
// on this host and its checksum is left for the device to complete
// (NEEDS_CSUM: it never crossed a wire that could corrupt it). Conntrack
// trusts both the same way (skb_csum_unnecessary).
func (h VNetHdr) ChecksumTrusted() bool { return h.Flags()&(VNetNeedsCsum|VNetDataValid) != 0 }
func (h VNetHdr) SetFlags(f uint8)      { h[0] = f }
func (h VNetHdr) SetGSOType(t uint8)    { h[1] = t }

// put fills in every field.
func (h VNetHdr) put(flags, gso uint8, hdrLen, gsoSize, csumStart, csumOffset int) {
	h[0], h[1] = flags, gso
	binary.NativeEndian.PutUint16(h[2:], uint16(hdrLen))
	binary.NativeEndian.PutUint16(h[4:], uint16(gsoSize))
	binary.NativeEndian.PutUint16(h[6:], uint16(csumStart))
	binary.NativeEndian.PutUint16(h[8:], uint16(csumOffset))
}

// Offload says how a device with offloads is to finish a packet a local
// stack made (what the kernel keeps in an skb and a virtio-net header
// carries), in terms of the IP packet: offsets count from its first byte.
type Offload struct {
	// NeedsCsum: the transport checksum is partial (the pseudo-header
	// sum), to be finished over the bytes from CsumStart; the field is at
	// CsumStart+CsumOffset.
	NeedsCsum             bool
	CsumStart, CsumOffset int
	// GSOType, unless GSONone: cut the packet into segments of GSOSize
	// payload bytes behind copies of its first HdrLen bytes.
	GSOType uint8
	GSOSize int
	HdrLen  int
}

// SetOffload writes o into h, for a packet l2 bytes of link header after
// the header.
func (h VNetHdr) SetOffload(o Offload, l2 int) {
	var flags uint8
	var start, hdrLen int
	if o.NeedsCsum {
		flags, start = VNetNeedsCsum, l2+o.CsumStart
	}
	if o.GSOType != GSONone {
		hdrLen = l2 + o.HdrLen
	}
	h.put(flags, o.GSOType, hdrLen, o.GSOSize, start, o.CsumOffset)
}

// partialField locates the partial transport checksum of ip and its
// protocol, or reports false when the header does not describe one vsgate
// can handle: only TCP and UDP of ip itself, right behind the IPv4 header
// or IPv6's extension headers (not behind a tunnel: a partial checksum of
// a packet inside another is the inner packet's, which NAT does not
// touch).
func (h VNetHdr) partialField(ip []byte, l2 int) (start, at int, proto uint8, ok bool) {
	start = h.CsumStart() - l2
	switch h.CsumOffset() {
	case 16:
		proto = ProtoTCP
	case 6:
		proto = ProtoUDP
	default:
		return 0, 0, 0, false
	}
	at = start + h.CsumOffset()
	if len(ip) == 0 {
		return 0, 0, 0, false
	}
	switch ip[0] >> 4 {
	case 4:
		ok = len(ip) >= IPv4MinimumSize && start == IPv4(ip).HeaderLength() && start >= IPv4MinimumSize && IPv4(ip).Protocol() == proto
	case 6:
		if len(ip) >= IPv6HeaderSize {
			l4, nh, found := ipv6Transport(ip)
			ok = found && start == l4 && nh == proto
		}
	}
	return start, at, proto, ok && at+2 <= len(ip)
}

// ipv6Transport walks the extension headers of the IPv6 packet ip (at
// least its fixed header) — hop-by-hop, routing and destination options,
// at most MaxIPv6ExtHeaders as Parse — and returns where the header after
// them starts and what it is. It reports false for a fragment (whose
// checksum no device leaves partial) and for a chain too long or cut
// short.
func ipv6Transport(ip []byte) (off int, proto uint8, ok bool) {
	nh, off := ip[ipv6NextHeader], IPv6HeaderSize
	for range MaxIPv6ExtHeaders + 1 {
		switch nh {
		case ipv6ExtHopByHop, ipv6ExtRouting, ipv6ExtDestOpts:
			if len(ip)-off < ipv6ExtMinSize {
				return 0, 0, false
			}
			nh, off = ip[off], off+(int(ip[off+1])+1)*8
		case ipv6ExtFragment:
			return 0, 0, false
		default:
			return off, nh, off <= len(ip)
		}
	}
	return 0, 0, false
}

// ipAddrs returns the source and destination address of ip.
func ipAddrs(ip []byte) (src, dst []byte) {
	if ip[0]>>4 == 4 {
		return IPv4(ip).Src(), IPv4(ip).Dst()
	}
	return IPv6(ip).Src(), IPv6(ip).Dst()
}

// RefreshPartial rewrites the partial checksum of ip — the pseudo-header
// sum the kernel finishes over the transport bytes — for its current
// addresses and length. The engine's incremental update is right for
// complete checksums; a partial one must not count the ports (they are
// summed with the data later), so it is recomputed instead: a few words,
// cheaper than telling the engine. It does nothing unless h says the
// checksum is partial and where.
func (h VNetHdr) RefreshPartial(ip []byte, l2 int) {
	if !h.Partial() {
		return
	}
	start, at, proto, ok := h.partialField(ip, l2)
	if !ok {
		return
	}
	src, dst := ipAddrs(ip)
	binary.BigEndian.PutUint16(ip[at:], PseudoHeaderSum(proto, src, dst, len(ip)-start))
}

// CompletePartial finishes a partial checksum in place (what the
// kernel's skb_checksum_help does) and clears the flag.
func (h VNetHdr) CompletePartial(ip []byte, l2 int) {
	start, at, proto, ok := h.partialField(ip, l2)
	if !ok {
		return
	}
	src, dst := ipAddrs(ip)
	binary.BigEndian.PutUint16(ip[at:], PseudoHeaderSum(proto, src, dst, len(ip)-start))
	binary.BigEndian.PutUint16(ip[at:], transportChecksum(ip[start:]))
	h.SetFlags(h.Flags() &^ VNetNeedsCsum)
}

// transportChecksum finishes a checksum over l4, whose checksum field
// holds the pseudo-header sum. A result of 0 is written as 0xffff, its
// equal in one's complement: UDP must (RFC 768: 0 means "no checksum"),
// and TCP does not mind.
func transportChecksum(l4 []byte) uint16 {
	if c := ^Sum(l4, 0); c != 0 {
		return c
	}
	return 0xffff
}

// Segments calls fn with every packet a super-packet stands for, each with
// complete checksums — or with ip itself, its checksum completed, when it
// is not one. seg is scratch for one segment (headers + GSOSize bytes);
// fn must not keep what it is given. It follows the kernel's TCP and UDP
// segmentation (and wireguard-go's gsoSplit): each segment repeats the
// headers; IPv4 gets its own ID, length and header checksum; TCP gets its
// sequence number, with FIN and PSH only on the last segment and CWR only
// on the first. It reports false for a header it cannot follow.
func (h VNetHdr) Segments(ip, seg []byte, l2 int, fn func([]byte)) bool {
	switch h.GSOType() {
	case GSONone:
		if h.Partial() {
			h.CompletePartial(ip, l2)
		}
		fn(ip)
		return true
	case GSOTCPv4, GSOTCPv6, GSOUDPL4:
	default:
		return false
	}
	start, at, proto, hdrLen, mss, ok := h.gso(ip, l2)
	if !ok || hdrLen+mss > len(seg) {
		return false
	}
	v4 := ip[0]>>4 == 4
	src, dst := ipAddrs(ip)
	var seq uint32
	if proto == ProtoTCP {
		seq = binary.BigEndian.Uint32(ip[start+4:])
	}
	for i, off := 0, hdrLen; off < len(ip); i, off = i+1, off+mss {
		end := min(off+mss, len(ip))
		n := hdrLen + end - off
		out := seg[:n]
		copy(out, ip[:hdrLen])
		copy(out[hdrLen:], ip[off:end])
		if v4 {
			put16(out[ipv4ID:], IPv4(ip).ID()+uint16(i))
		}
		setIPLength(out)
		if proto == ProtoTCP {
			binary.BigEndian.PutUint32(out[start+4:], seq+uint32(i*mss))
			if end != len(ip) {
				out[start+13] &^= TCPFlagFIN | TCPFlagPSH
			}
			if i > 0 {
				out[start+13] &^= TCPFlagCWR
			}
		} else {
			binary.BigEndian.PutUint16(out[start+4:], uint16(n-start))
		}
		binary.BigEndian.PutUint16(out[at:], PseudoHeaderSum(proto, src, dst, n-start))
		binary.BigEndian.PutUint16(out[at:], transportChecksum(out[start:]))
		fn(out)
	}
	return true
}

// SegmentCount is how many packets the packet ip stands for: the segments
// of a GSO super-packet (its payload over GSOSize, rounded up), else 1.
// It trusts the header as far as Segments does and gives 1 where Segments
// would refuse.
func (h VNetHdr) SegmentCount(ip []byte, l2 int) int {
	switch h.GSOType() {
	case GSOTCPv4, GSOTCPv6, GSOUDPL4:
	default:
		return 1
	}
	_, _, _, hdrLen, mss, ok := h.gso(ip, l2)
	if !ok || hdrLen == len(ip) {
		return 1
	}
	return (len(ip) - hdrLen + mss - 1) / mss
}

// gso reads what splitting the super-packet ip takes: where its transport
// header and checksum field start, its protocol, the length of the headers
// every segment repeats, and the segment size. It reports false for a
// header it cannot follow. The headers' length comes from the packet: the
// virtio-net header's hdr_len is skb_headlen, a hint that may reach into
// the payload (wireguard-go does not trust it either).
func (h VNetHdr) gso(ip []byte, l2 int) (start, at int, proto uint8, hdrLen, mss int, ok bool) {
	start, at, proto, ok = h.partialField(ip, l2)
	if !ok {
		return 0, 0, 0, 0, 0, false
	}
	hdrLen = start + UDPMinimumSize
	if proto == ProtoTCP {
		if len(ip) < start+TCPMinimumSize {
			return 0, 0, 0, 0, 0, false
		}
		hdrLen = start + int(ip[start+12]>>4)*4
		if hdrLen < start+TCPMinimumSize {
			return 0, 0, 0, 0, 0, false
		}
	}
	mss = h.GSOSize()
	if mss == 0 || hdrLen > len(ip) {
		return 0, 0, 0, 0, 0, false
	}
	return start, at, proto, hdrLen, mss, true
}

// CoalesceUDP merges the run of UDP datagrams that starts at bufs[i] — one
// flow, equal payload sizes (the last may be shorter), not super-packets
// themselves, at most maxRun — into one UDP GSO super-packet (USO,
// GSOUDPL4) in bufs[i]'s spare capacity, as wireguard's tun does: the
// kernel carries the run as one packet through its stack and splits it
// back into the same datagrams at the receiver (or at a device without
// USO). Under a stream of small datagrams that is one system call and one
// trip through the stack for many. Packets are bufs[k][offset:], each
// with its virtio-net header at offset-l2-VNetHdrSize and l2 bytes of link
// header after it. It returns the frame to send (from its virtio-net
// header on) and the index of the first packet not merged; a packet that
// cannot start a run comes back alone. A super-packet's header marks its
// checksum partial; the sum in the checksum field is left for the caller
// to refresh (RefreshPartial), as the devices do for every packet they
// send.
func CoalesceUDP(bufs [][]byte, i, offset, l2, maxRun int) ([]byte, int) {
	hdrAt := offset - l2 - VNetHdrSize
	first := bufs[i][offset:]
	alone := bufs[i][hdrAt:]
	l4, ok := plainUDP(bufs[i], offset, l2)
	if !ok {
		return alone, i + 1
	}
	size := len(first) - l4 - UDPMinimumSize // the segment size: every datagram's payload but the last
	if size == 0 {
		return alone, i + 1
	}
	total, j := len(first), i+1
	for ; j < len(bufs) && j-i < maxRun; j++ {
		if l, ok := plainUDP(bufs[j], offset, l2); !ok || l != l4 || !sameUDPFlow(first, bufs[j][offset:], l4) {
			break
		}
		p := bufs[j][offset:]
		n := len(p) - l4 - UDPMinimumSize
		if n > size || n == 0 || total+n > 0xffff || offset+total+n > cap(bufs[i]) {
			break
		}
		copy(bufs[i][offset+total:offset+total+n], p[l4+UDPMinimumSize:])
		total += n
		if n < size {
			j++ // a shorter datagram ends the run
			break
		}
	}
	if j == i+1 {
		return alone, i + 1
	}
	ip := bufs[i][offset : offset+total]
	setIPLength(ip)
	put16(ip[l4+udpLength:], uint16(total-l4))
	VNetHdr(bufs[i][hdrAt:hdrAt+VNetHdrSize]).put(VNetNeedsCsum, GSOUDPL4, l2+l4+UDPMinimumSize, size, l2+l4, 6)
	return bufs[i][hdrAt : offset+total], j
}

// setIPLength makes ip's length field (IPv4 total length, with the header
// checksum, or IPv6 payload length) say len(ip).
func setIPLength(ip []byte) {
	if ip[0]>>4 == 4 {
		put16(ip[ipv4TotalLen:], uint16(len(ip)))
		IPv4(ip).SetChecksum(IPv4(ip).CalculateChecksum())
		return
	}
	put16(ip[ipv6PayloadLen:], uint16(len(ip)-IPv6HeaderSize))
}

// plainUDP reports whether b[offset:] is a whole UDP datagram that can
// join a super-packet — IPv4 without options and not a fragment, or IPv6
// without extension headers; lengths that agree; not a super-packet
// already; a checksum that is partial over the UDP header (what a local
// stack sends through a veth), already checked by the kernel
// (DATA_VALID), or complete and right: merging gives the datagrams a
// fresh checksum, which must not make a corrupted one look intact — and
// where its UDP header starts.
func plainUDP(b []byte, offset, l2 int) (l4 int, ok bool) {
	h, ip := VNetHdr(b[offset-l2-VNetHdrSize:offset-l2]), b[offset:]
	if h.Flags()&^(VNetNeedsCsum|VNetDataValid) != 0 || h[1] != GSONone {
		return 0, false
	}
	switch {
	case len(ip) >= IPv4MinimumSize+UDPMinimumSize && ip[0] == 0x45:
		if IPv4(ip).Protocol() != ProtoUDP || IPv4(ip).MoreFragments() || IPv4(ip).FragmentOffset() != 0 || int(IPv4(ip).TotalLength()) != len(ip) {
			return 0, false
		}
		l4 = IPv4MinimumSize
	case len(ip) >= IPv6HeaderSize+UDPMinimumSize && ip[0]>>4 == 6:
		if IPv6(ip).NextHeader() != ProtoUDP || int(IPv6(ip).PayloadLength())+IPv6HeaderSize != len(ip) {
			return 0, false
		}
		l4 = IPv6HeaderSize
	default:
		return 0, false
	}
	if h.Partial() && (h.CsumStart() != l2+l4 || h.CsumOffset() != 6) {
		return 0, false
	}
	if int(binary.BigEndian.Uint16(ip[l4+4:])) != len(ip)-l4 {
		return 0, false
	}
	if h.Flags() == 0 && !udpChecksumOK(ip, l4) {
		return 0, false
	}
	return l4, true
}

// udpChecksumOK reports whether the complete UDP checksum of ip (its UDP
// header at l4) is right, or absent (0, IPv4 only).
func udpChecksumOK(ip []byte, l4 int) bool {
	if l4 == IPv4MinimumSize && binary.BigEndian.Uint16(ip[l4+6:]) == 0 {
		return true
	}
	src, dst := ipAddrs(ip)
	return Sum(ip[l4:], PseudoHeaderSum(ProtoUDP, src, dst, len(ip)-l4)) == 0xffff
}

// sameUDPFlow reports whether b can follow a in one super-packet: the
// same addresses, ports and IP header fields the segments will repeat
// (IPv4: version, TOS, DF, TTL; IPv6: version, traffic class, flow label,
// hop limit). a and b have the same IP version and header length l4.
func sameUDPFlow(a, b []byte, l4 int) bool {
	if l4 == IPv4MinimumSize {
		return a[1] == b[1] && a[6] == b[6] && a[8] == b[8] && string(a[12:24]) == string(b[12:24])
	}
	return string(a[0:4]) == string(b[0:4]) && a[7] == b[7] && string(a[8:44]) == string(b[8:44])
}
