package packet

// TCP options and whole segments, for the SYN proxy (nat/synproxy.go):
// reading a handshake's options, building a handshake segment from
// nothing, and shifting a segment's sequence space. None of this is on an
// established flow's path unless the flow is proxied.

// TCP option kinds (RFC 9293 §3.2, RFC 2018, RFC 7323) beyond those of
// WindowScale.
const (
	tcpOptMSS       = 2
	tcpOptSACKPerm  = 4
	tcpOptSACK      = 5
	tcpOptTimestamp = 8
)

// TCPOptions are the handshake options of a segment.
type TCPOptions struct {
	MSS          uint16 // valid iff HasMSS
	WScale       uint8  // valid iff HasWScale; at most TCPMaxWindowScale
	HasMSS       bool
	HasWScale    bool
	SACKPermit   bool
	HasTimestamp bool
	TSval, TSecr uint32 // valid iff HasTimestamp
}

// Options reads the options the data offset covers. A malformed list ends
// the walk; what was read before stays.
func (h TCP) Options() TCPOptions {
	var o TCPOptions
	h.walkOptions(func(opt []byte) bool {
		switch {
		case opt[0] == tcpOptMSS && len(opt) == 4:
			o.MSS, o.HasMSS = be16(opt[2:]), true
		case opt[0] == tcpOptWScale && len(opt) == 3:
			o.WScale, o.HasWScale = min(opt[2], TCPMaxWindowScale), true
		case opt[0] == tcpOptSACKPerm && len(opt) == 2:
			o.SACKPermit = true
		case opt[0] == tcpOptTimestamp && len(opt) == 10:
			o.TSval, o.TSecr, o.HasTimestamp = be32(opt[2:]), be32(opt[6:]), true
		}
		return true
	})
	return o
}

// optionsLen is how many bytes writeOptions writes for o.
func (o *TCPOptions) optionsLen() int {
	n := 0
	if o.HasMSS {
		n += 4
	}
	if o.SACKPermit || o.HasTimestamp {
		n += 4 // SACK-permitted with two NOPs, or before the timestamp
	}
	if o.HasTimestamp {
		n += 8
	}
	if o.HasWScale {
		n += 4
	}
	return n
}

// writeOptions writes o in Linux's order and padding (tcp_options_write):
// MSS; SACK-permitted and timestamps together; NOP and window scale.
func (o *TCPOptions) writeOptions(b []byte) {
	if o.HasMSS {
		b[0], b[1] = tcpOptMSS, 4
		put16(b[2:], o.MSS)
		b = b[4:]
	}
	switch {
	case o.HasTimestamp:
		if o.SACKPermit {
			b[0], b[1] = tcpOptSACKPerm, 2
		} else {
			b[0], b[1] = tcpOptNOP, tcpOptNOP
		}
		b[2], b[3] = tcpOptTimestamp, 10
		put32(b[4:], o.TSval)
		put32(b[8:], o.TSecr)
		b = b[12:]
	case o.SACKPermit:
		b[0], b[1], b[2], b[3] = tcpOptNOP, tcpOptNOP, tcpOptSACKPerm, 2
		b = b[4:]
	}
	if o.HasWScale {
		b[0], b[1], b[2], b[3] = tcpOptNOP, tcpOptWScale, 3, o.WScale
	}
}

// TCPSegment is a TCP segment without payload to write from nothing.
type TCPSegment struct {
	Src, Dst         [16]byte // IPv4 in the last four bytes when V4
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            uint8
	Window           uint16
	Options          TCPOptions
	V4               bool
}

// Len is the length of the packet Write makes.
func (s *TCPSegment) Len() int {
	n := IPv6HeaderSize
	if s.V4 {
		n = IPv4MinimumSize
	}
	return n + TCPMinimumSize + s.Options.optionsLen()
}

// Write writes the segment as a whole IP packet into b (DF set, TTL or hop
// limit 64, both checksums complete) and returns its length, or false if
// b is too short.
func (s *TCPSegment) Write(b []byte) (int, bool) {
	n := s.Len()
	if len(b) < n {
		return 0, false
	}
	l3 := IPv6HeaderSize
	tl := TCPMinimumSize + s.Options.optionsLen()
	var src, dst []byte
	if s.V4 {
		l3 = IPv4MinimumSize
		h := b[:IPv4MinimumSize]
		clear(h)
		h[ipv4VersIHL] = 0x45
		put16(h[ipv4TotalLen:], uint16(n))
		put16(h[ipv4FlagsFrag:], ipv4FlagDF)
		h[ipv4TTL] = 64
		h[ipv4Protocol] = ProtoTCP
		copy(h[ipv4SrcAddr:], s.Src[12:])
		copy(h[ipv4DstAddr:], s.Dst[12:])
		IPv4(h).SetChecksum(IPv4(h).CalculateChecksum())
		src, dst = h[ipv4SrcAddr:ipv4SrcAddr+4], h[ipv4DstAddr:ipv4DstAddr+4]
	} else {
		h := b[:IPv6HeaderSize]
		clear(h)
		h[ipv6VersTCFlow] = 0x60
		put16(h[ipv6PayloadLen:], uint16(tl))
		h[ipv6NextHeader] = ProtoTCP
		h[ipv6HopLimit] = 64
		copy(h[ipv6SrcAddr:], s.Src[:])
		copy(h[ipv6DstAddr:], s.Dst[:])
		src, dst = h[ipv6SrcAddr:ipv6SrcAddr+16], h[ipv6DstAddr:ipv6DstAddr+16]
	}
	t := b[l3:n]
	clear(t)
	put16(t[tcpSrcPort:], s.SrcPort)
	put16(t[tcpDstPort:], s.DstPort)
	put32(t[tcpSeq:], s.Seq)
	put32(t[tcpAck:], s.Ack)
	t[tcpDataOffset] = uint8(tl/4) << 4
	t[tcpFlags] = s.Flags
	put16(t[tcpWindow:], s.Window)
	s.Options.writeOptions(t[TCPMinimumSize:])
	put16(t[tcpChecksum:], ^Sum(t, PseudoHeaderSum(ProtoTCP, src, dst, tl)))
	return n, true
}

// TCPShift is how a SYN proxy moves a segment between the sequence spaces
// of the two connections it joins. Additions are modulo 2^32.
type TCPShift struct {
	Seq uint32 // added to the sequence number
	// Ack is added to the acknowledgement number, when ACK is set, and to
	// the edges of SACK blocks (which acknowledge the same space).
	Ack          uint32
	TSval, TSecr uint32 // added to the timestamp option's fields
	// The window field is rescaled from shift WindowFrom to WindowTo
	// (the sender's window scale, and the one the receiver believes the
	// sender uses), saturating at 65535, when they differ.
	WindowFrom, WindowTo uint8
}

// ShiftTCP applies s to the TCP segment in b (parsed into p, with its
// header), updating the checksum incrementally. A segment whose checksum
// the kernel completes later (a partial one) has it refreshed from
// scratch by the device, which the incremental update does not disturb.
func ShiftTCP(b []byte, p *Parsed, s *TCPShift) {
	t := TCP(b[p.L4Off:p.End])
	var d uint32
	if s.Seq != 0 {
		old := be32(t[tcpSeq:])
		d += delta32(old, old+s.Seq)
		put32(t[tcpSeq:], old+s.Seq)
	}
	ack := s.Ack != 0 && p.TCPFlags&TCPFlagACK != 0
	if ack {
		old := be32(t[tcpAck:])
		d += delta32(old, old+s.Ack)
		put32(t[tcpAck:], old+s.Ack)
	}
	if s.WindowFrom != s.WindowTo {
		old := be16(t[tcpWindow:])
		w := min(uint32(old)<<s.WindowFrom>>s.WindowTo, 0xffff)
		if w == 0 && old != 0 {
			w = 1 // a window that shrinks to nothing in the rescale would stall the sender
		}
		d += delta16(old, uint16(w))
		put16(t[tcpWindow:], uint16(w))
	}
	if s.TSval != 0 || s.TSecr != 0 || ack {
		d += shiftOptions(t, s, ack)
	}
	if d != 0 {
		put16(t[tcpChecksum:], adjust(be16(t[tcpChecksum:]), d))
	}
}

// shiftOptions shifts the timestamp and (with ack) SACK options of t and
// returns the checksum delta.
func shiftOptions(t TCP, s *TCPShift, ack bool) uint32 {
	var d uint32
	move := func(f []byte, by uint32) {
		old := be32(f)
		d += delta32(old, old+by)
		put32(f, old+by)
	}
	t.walkOptions(func(opt []byte) bool {
		switch {
		case opt[0] == tcpOptTimestamp && len(opt) == 10:
			if s.TSval != 0 {
				move(opt[2:6], s.TSval)
			}
			if s.TSecr != 0 {
				move(opt[6:10], s.TSecr)
			}
		case opt[0] == tcpOptSACK && ack:
			for blk := opt[2:]; len(blk) >= 8; blk = blk[8:] {
				move(blk[0:4], s.Ack)
				move(blk[4:8], s.Ack)
			}
		}
		return true
	})
	return d
}
