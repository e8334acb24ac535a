package afpacket

import (
	"encoding/binary"

	"github.com/vsgate/vsgate/packet"
)

// coalesceUDP merges the run of UDP datagrams that starts at bufs[i] — one
// flow, equal payload sizes (the last may be shorter), not super-packets
// themselves — into one UDP GSO super-packet (USO,
// VIRTIO_NET_HDR_GSO_UDP_L4) in bufs[i]'s spare capacity, as wireguard's
// tun does on a TUN: the kernel carries the run as one packet down the
// veth and the bridge and splits it back into the same datagrams at the
// receiver (or at a device without USO). Under a stream of small
// datagrams that is one system call and one trip through the stack for
// many. It returns the frame to send (from its virtio-net header on) and
// the index of the first packet not merged; a packet that cannot start a
// run comes back alone. Packets are bufs[k][offset:], their headers in
// front, as Port.Write gets them.
func coalesceUDP(bufs [][]byte, i, offset int) ([]byte, int) {
	const eth = packet.EthernetMinimumSize
	first := bufs[i][offset:]
	alone := bufs[i][offset-portHeadroom:]
	l4, ok := plainUDP(bufs[i], offset)
	if !ok {
		return alone, i + 1
	}
	size := len(first) - l4 - packet.UDPMinimumSize // the segment size: every datagram's payload but the last
	if size == 0 {
		return alone, i + 1
	}
	total, j := len(first), i+1
	for ; j < len(bufs) && j-i < MaxBatch; j++ {
		if l, ok := plainUDP(bufs[j], offset); !ok || l != l4 || !sameFlow(first, bufs[j][offset:], l4) {
			break
		}
		p := bufs[j][offset:]
		n := len(p) - l4 - packet.UDPMinimumSize
		if n > size || n == 0 || total+n > 0xffff || offset+total+n > cap(bufs[i]) {
			break
		}
		copy(bufs[i][offset+total:offset+total+n], p[l4+packet.UDPMinimumSize:])
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
	if l4 == packet.IPv4MinimumSize {
		binary.BigEndian.PutUint16(ip[2:], uint16(total))
		packet.IPv4(ip).SetChecksum(packet.IPv4(ip).CalculateChecksum())
	} else {
		binary.BigEndian.PutUint16(ip[4:], uint16(total-packet.IPv6HeaderSize))
	}
	binary.BigEndian.PutUint16(ip[l4+4:], uint16(total-l4)) // the checksum is made partial for it (prepare)
	h := bufs[i][offset-portHeadroom : offset-eth]
	h[0], h[1] = vnetNeedsCsum, gsoUDPL4
	binary.NativeEndian.PutUint16(h[2:], uint16(eth+l4+packet.UDPMinimumSize))
	binary.NativeEndian.PutUint16(h[4:], uint16(size))
	binary.NativeEndian.PutUint16(h[6:], uint16(eth+l4))
	binary.NativeEndian.PutUint16(h[8:], 6)
	return bufs[i][offset-portHeadroom : offset+total], j
}

// plainUDP reports whether b[offset:] is a whole UDP datagram that can
// join a super-packet — IPv4 without options and not a fragment, or IPv6
// without extension headers; lengths that agree; not a super-packet
// already; a checksum that is complete, or partial over the UDP header
// (what a local stack sends through a veth) — and where its UDP header
// starts.
func plainUDP(b []byte, offset int) (l4 int, ok bool) {
	h, ip := vnetHdr(b[offset-portHeadroom:offset-packet.EthernetMinimumSize]), b[offset:]
	if h.flags()&^vnetNeedsCsum != 0 || h[1] != gsoNone {
		return 0, false
	}
	switch {
	case len(ip) >= packet.IPv4MinimumSize+packet.UDPMinimumSize && ip[0] == 0x45:
		if ip[9] != packet.ProtoUDP || binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 || int(binary.BigEndian.Uint16(ip[2:])) != len(ip) {
			return 0, false
		}
		l4 = packet.IPv4MinimumSize
	case len(ip) >= packet.IPv6HeaderSize+packet.UDPMinimumSize && ip[0]>>4 == 6:
		if ip[6] != packet.ProtoUDP || int(binary.BigEndian.Uint16(ip[4:]))+packet.IPv6HeaderSize != len(ip) {
			return 0, false
		}
		l4 = packet.IPv6HeaderSize
	default:
		return 0, false
	}
	if h.partial() && (h.csumStart() != packet.EthernetMinimumSize+l4 || h.csumOffset() != 6) {
		return 0, false
	}
	return l4, int(binary.BigEndian.Uint16(ip[l4+4:])) == len(ip)-l4
}

// sameFlow reports whether b can follow a in one super-packet: the same
// addresses, ports and IP header fields the segments will repeat (IPv4:
// version, TOS, DF, TTL; IPv6: version, traffic class, flow label, hop
// limit). a and b have the same IP version and header length l4.
func sameFlow(a, b []byte, l4 int) bool {
	if l4 == packet.IPv4MinimumSize {
		return a[1] == b[1] && a[6] == b[6] && a[8] == b[8] && string(a[12:24]) == string(b[12:24])
	}
	return string(a[0:4]) == string(b[0:4]) && a[7] == b[7] && string(a[8:44]) == string(b[8:44])
}
