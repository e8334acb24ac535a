package afpacket

import (
	"encoding/binary"

	"github.com/vsgate/vsgate/packet"
)

// VNetHdrSize is the size of struct virtio_net_hdr (without num_buffers),
// what PACKET_VNET_HDR puts in front of every frame.
const VNetHdrSize = 10

// virtio_net_hdr values (include/uapi/linux/virtio_net.h).
const (
	vnetNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM: the checksum at CsumStart+CsumOffset is partial

	gsoNone  = 0    // VIRTIO_NET_HDR_GSO_NONE
	gsoTCPv4 = 1    // VIRTIO_NET_HDR_GSO_TCPV4
	gsoUDP   = 3    // VIRTIO_NET_HDR_GSO_UDP (UFO: fragments, not split here)
	gsoTCPv6 = 4    // VIRTIO_NET_HDR_GSO_TCPV6
	gsoUDPL4 = 5    // VIRTIO_NET_HDR_GSO_UDP_L4 (USO)
	gsoECN   = 0x80 // VIRTIO_NET_HDR_GSO_ECN
)

// vnetHdr is a virtio-net header in place. Its 16-bit fields are in the
// host's byte order (the kernel's vio_le() is true on every little-endian
// host, and the legacy header is native-endian on the others).
type vnetHdr []byte

func (h vnetHdr) flags() uint8       { return h[0] }
func (h vnetHdr) gsoType() uint8     { return h[1] &^ gsoECN }
func (h vnetHdr) hdrLen() int        { return int(binary.NativeEndian.Uint16(h[2:])) }
func (h vnetHdr) gsoSize() int       { return int(binary.NativeEndian.Uint16(h[4:])) }
func (h vnetHdr) csumStart() int     { return int(binary.NativeEndian.Uint16(h[6:])) }
func (h vnetHdr) csumOffset() int    { return int(binary.NativeEndian.Uint16(h[8:])) }
func (h vnetHdr) partial() bool      { return h.flags()&vnetNeedsCsum != 0 }
func (h vnetHdr) setFlags(f uint8)   { h[0] = f }
func (h vnetHdr) setGSOType(t uint8) { h[1] = t }

// partialField locates the partial transport checksum of ip (an IP packet
// whose frame had an untagged Ethernet header) and its protocol, or
// reports false when the header does not describe one vsgate can handle
// (only TCP and UDP are offloaded to it).
func (h vnetHdr) partialField(ip []byte) (start, at int, proto uint8, ok bool) {
	start = h.csumStart() - packet.EthernetMinimumSize
	switch h.csumOffset() {
	case 16:
		proto = packet.ProtoTCP
	case 6:
		proto = packet.ProtoUDP
	default:
		return 0, 0, 0, false
	}
	at = start + h.csumOffset()
	if len(ip) == 0 {
		return 0, 0, 0, false
	}
	switch ip[0] >> 4 {
	case 4:
		ok = start >= int(ip[0]&0x0f)*4 && int(ip[0]&0x0f)*4 >= packet.IPv4MinimumSize
	case 6:
		ok = start >= packet.IPv6HeaderSize
	}
	return start, at, proto, ok && at+2 <= len(ip)
}

// addrs returns the source and destination address of ip.
func addrs(ip []byte) (src, dst []byte) {
	if ip[0]>>4 == 4 {
		return packet.IPv4(ip).Src(), packet.IPv4(ip).Dst()
	}
	return packet.IPv6(ip).Src(), packet.IPv6(ip).Dst()
}

// refreshPartial rewrites the partial checksum of ip — the pseudo-header
// sum the kernel finishes over the transport bytes — for its current
// addresses and length. The engine's incremental update is right for
// complete checksums; a partial one must not count the ports (they are
// summed with the data later), so it is recomputed instead: a few words,
// cheaper than telling the engine.
func (h vnetHdr) refreshPartial(ip []byte) {
	start, at, proto, ok := h.partialField(ip)
	if !ok {
		return
	}
	src, dst := addrs(ip)
	binary.BigEndian.PutUint16(ip[at:], packet.PseudoHeaderSum(proto, src, dst, len(ip)-start))
}

// complete finishes a partial checksum in place (what the kernel's
// skb_checksum_help does) and clears the flag.
func (h vnetHdr) complete(ip []byte) {
	start, at, proto, ok := h.partialField(ip)
	if !ok {
		return
	}
	src, dst := addrs(ip)
	binary.BigEndian.PutUint16(ip[at:], packet.PseudoHeaderSum(proto, src, dst, len(ip)-start))
	binary.BigEndian.PutUint16(ip[at:], transportChecksum(ip[start:]))
	h.setFlags(h.flags() &^ vnetNeedsCsum)
}

// transportChecksum finishes a checksum over l4, whose checksum field
// holds the pseudo-header sum. A result of 0 is written as 0xffff, its
// equal in one's complement: UDP must (RFC 768: 0 means "no checksum"),
// and TCP does not mind.
func transportChecksum(l4 []byte) uint16 {
	if c := ^packet.Sum(l4, 0); c != 0 {
		return c
	}
	return 0xffff
}

// segments calls fn with every packet a super-packet stands for, each with
// complete checksums — or with ip itself, its checksum completed, when it
// is not one. seg is scratch for one segment (hdrLen + gsoSize bytes);
// fn must not keep what it is given. It follows the kernel's TCP and UDP
// segmentation (and wireguard-go's gsoSplit): each segment repeats the
// headers; IPv4 gets its own ID, length and header checksum; TCP gets its
// sequence number, with FIN and PSH only on the last segment and CWR only
// on the first. It reports false for a header it cannot follow.
func (h vnetHdr) segments(ip, seg []byte, fn func([]byte)) bool {
	switch h.gsoType() {
	case gsoNone:
		if h.partial() {
			h.complete(ip)
		}
		fn(ip)
		return true
	case gsoTCPv4, gsoTCPv6, gsoUDPL4:
	default:
		return false
	}
	start, at, proto, ok := h.partialField(ip)
	if !ok {
		return false
	}
	// The headers' length comes from the packet: the header's hdr_len is
	// skb_headlen, a hint that may reach into the payload (wireguard-go
	// does not trust it either).
	hdrLen := start + packet.UDPMinimumSize
	if proto == packet.ProtoTCP {
		if len(ip) < start+packet.TCPMinimumSize {
			return false
		}
		hdrLen = start + int(ip[start+12]>>4)*4
		if hdrLen < start+packet.TCPMinimumSize {
			return false
		}
	}
	mss := h.gsoSize()
	if mss == 0 || hdrLen > len(ip) || hdrLen+mss > len(seg) {
		return false
	}
	v4 := ip[0]>>4 == 4
	src, dst := addrs(ip)
	var seq uint32
	if proto == packet.ProtoTCP {
		seq = binary.BigEndian.Uint32(ip[start+4:])
	}
	for i, off := 0, hdrLen; off < len(ip); i, off = i+1, off+mss {
		end := min(off+mss, len(ip))
		n := hdrLen + end - off
		out := seg[:n]
		copy(out, ip[:hdrLen])
		copy(out[hdrLen:], ip[off:end])
		if v4 {
			binary.BigEndian.PutUint16(out[2:], uint16(n))
			binary.BigEndian.PutUint16(out[4:], binary.BigEndian.Uint16(ip[4:])+uint16(i))
			packet.IPv4(out).SetChecksum(packet.IPv4(out).CalculateChecksum())
		} else {
			binary.BigEndian.PutUint16(out[4:], uint16(n-packet.IPv6HeaderSize))
		}
		if proto == packet.ProtoTCP {
			binary.BigEndian.PutUint32(out[start+4:], seq+uint32(i*mss))
			const fin, psh, cwr = 0x01, 0x08, 0x80
			if end != len(ip) {
				out[start+13] &^= fin | psh
			}
			if i > 0 {
				out[start+13] &^= cwr
			}
		} else {
			binary.BigEndian.PutUint16(out[start+4:], uint16(n-start))
		}
		binary.BigEndian.PutUint16(out[at:], packet.PseudoHeaderSum(proto, src, dst, n-start))
		binary.BigEndian.PutUint16(out[at:], transportChecksum(out[start:]))
		fn(out)
	}
	return true
}
