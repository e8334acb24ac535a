package packet

import "encoding/binary"

// MakeTCPReset turns the TCP segment in b (parsed into p, with its L4
// header) into the RST that answers it, in place, as RFC 9293 says a
// closed port answers ("SEGMENT ARRIVES", state CLOSED): addresses and
// ports swapped; if the segment carried an ACK, the reset's sequence
// number is that acknowledgment, otherwise the reset acknowledges the
// segment (SEQ 0, ACK = SEG.SEQ + SEG.LEN, counting SYN and FIN). IP
// options, IPv6 extension headers and the payload are dropped; both
// checksums are computed in full. It returns the reset's length, or false
// if p is not a TCP segment with its header (a reset is never sent for a
// reset). p is not updated.
func MakeTCPReset(b []byte, p *Parsed) (int, bool) {
	if p.Reason != ReasonNone || p.Proto != ProtoTCP || p.FragOff != 0 || p.Quoted || p.TCPFlags&TCPFlagRST != 0 {
		return 0, false
	}
	t := b[p.L4Off:p.End]
	seq, ack := be32(t[tcpSeq:]), be32(t[tcpAck:])
	segLen := uint32(p.End - p.PayloadOff)
	if p.TCPFlags&TCPFlagSYN != 0 {
		segLen++
	}
	if p.TCPFlags&TCPFlagFIN != 0 {
		segLen++
	}
	sport, dport := p.SrcPort, p.DstPort
	var rseq, rack uint32
	flags := uint8(TCPFlagRST)
	if p.TCPFlags&TCPFlagACK != 0 {
		rseq = ack
	} else {
		rack, flags = seq+segLen, TCPFlagRST|TCPFlagACK
	}
	var l3 int
	if p.Version == 4 {
		l3 = IPv4MinimumSize
		var src, dst [4]byte
		copy(src[:], b[ipv4SrcAddr:ipv4SrcAddr+4])
		copy(dst[:], b[ipv4DstAddr:ipv4DstAddr+4])
		h := b[:IPv4MinimumSize]
		clear(h)
		h[ipv4VersIHL] = 0x45
		put16(h[ipv4TotalLen:], IPv4MinimumSize+TCPMinimumSize)
		put16(h[ipv4FlagsFrag:], ipv4FlagDF)
		h[ipv4TTL] = 64
		h[ipv4Protocol] = ProtoTCP
		copy(h[ipv4SrcAddr:], dst[:])
		copy(h[ipv4DstAddr:], src[:])
		IPv4(h).SetChecksum(IPv4(h).CalculateChecksum())
	} else {
		l3 = IPv6HeaderSize
		var src, dst [16]byte
		copy(src[:], b[ipv6SrcAddr:ipv6SrcAddr+16])
		copy(dst[:], b[ipv6DstAddr:ipv6DstAddr+16])
		h := b[:IPv6HeaderSize]
		clear(h)
		h[ipv6VersTCFlow] = 0x60
		put16(h[ipv6PayloadLen:], TCPMinimumSize)
		h[ipv6NextHeader] = ProtoTCP
		h[ipv6HopLimit] = 64
		copy(h[ipv6SrcAddr:], dst[:])
		copy(h[ipv6DstAddr:], src[:])
	}
	r := b[l3 : l3+TCPMinimumSize]
	clear(r)
	put16(r[tcpSrcPort:], dport)
	put16(r[tcpDstPort:], sport)
	binary.BigEndian.PutUint32(r[tcpSeq:], rseq)
	binary.BigEndian.PutUint32(r[tcpAck:], rack)
	r[tcpDataOffset] = 5 << 4
	r[tcpFlags] = flags
	var s uint16
	if p.Version == 4 {
		s = PseudoHeaderSum(ProtoTCP, b[ipv4SrcAddr:ipv4SrcAddr+4], b[ipv4DstAddr:ipv4DstAddr+4], TCPMinimumSize)
	} else {
		s = PseudoHeaderSum(ProtoTCP, b[ipv6SrcAddr:ipv6SrcAddr+16], b[ipv6DstAddr:ipv6DstAddr+16], TCPMinimumSize)
	}
	put16(r[tcpChecksum:], ^Sum(r, s))
	return l3 + TCPMinimumSize, true
}
