package packet

// IPv4 is a view of an IPv4 header (RFC 791 §3.1) at the start of a byte
// slice. Call IsValid before any other method: accessors do not check bounds
// beyond what the Go runtime does.
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version|  IHL  |Type of Service|          Total Length         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         Identification        |Flags|      Fragment Offset    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Time to Live |    Protocol   |         Header Checksum       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                       Source Address                          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Destination Address                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Options                    |    Padding    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type IPv4 []byte

// Offsets of IPv4 header fields.
const (
	ipv4VersIHL     = 0
	ipv4TOS         = 1
	ipv4TotalLen    = 2
	ipv4ID          = 4
	ipv4FlagsFrag   = 6
	ipv4TTL         = 8
	ipv4Protocol    = 9
	ipv4Checksum    = 10
	ipv4SrcAddr     = 12
	ipv4DstAddr     = 16
	IPv4MinimumSize = 20 // header without options
	IPv4MaximumSize = 60 // IHL 15
)

// IPv4 flags (RFC 791 §3.1, "Flags") and the fragment-offset mask.
const (
	ipv4FlagMF       = 0x2000 // more fragments
	ipv4FlagDF       = 0x4000 // don't fragment
	ipv4FragOffMask  = 0x1fff // in units of 8 bytes
	ipv4MaxDatagram  = 65535
	ipv4OptEnd       = 0   // end of option list
	ipv4OptNOP       = 1   // no operation
	ipv4OptLSRR      = 131 // loose source and record route
	ipv4OptSSRR      = 137 // strict source and record route
	ipv4OptMinLength = 2
)

// IsValid reports whether the slice holds a whole IPv4 header, options
// included, and a total length that fits in it (trailing bytes, such as
// Ethernet padding, are allowed).
func (h IPv4) IsValid() bool {
	if len(h) < IPv4MinimumSize || h[ipv4VersIHL]>>4 != 4 {
		return false
	}
	hl := h.HeaderLength()
	tl := int(h.TotalLength())
	return hl >= IPv4MinimumSize && hl <= len(h) && tl >= hl && tl <= len(h)
}

// HeaderLength is IHL in bytes.
func (h IPv4) HeaderLength() int { return int(h[ipv4VersIHL]&0x0f) * 4 }

// TotalLength is the datagram length, header included (RFC 791 "Total Length").
func (h IPv4) TotalLength() uint16 { return be16(h[ipv4TotalLen:]) }

// ID is the identification field used for reassembly.
func (h IPv4) ID() uint16 { return be16(h[ipv4ID:]) }

// TTL is the time-to-live field.
func (h IPv4) TTL() uint8 { return h[ipv4TTL] }

// Protocol is the upper-layer protocol number.
func (h IPv4) Protocol() uint8 { return h[ipv4Protocol] }

// Checksum is the header checksum field.
func (h IPv4) Checksum() uint16 { return be16(h[ipv4Checksum:]) }

// MoreFragments reports the MF flag.
func (h IPv4) MoreFragments() bool { return be16(h[ipv4FlagsFrag:])&ipv4FlagMF != 0 }

// DontFragment reports the DF flag.
func (h IPv4) DontFragment() bool { return be16(h[ipv4FlagsFrag:])&ipv4FlagDF != 0 }

// FragmentOffset is the fragment's offset in bytes.
func (h IPv4) FragmentOffset() uint16 { return (be16(h[ipv4FlagsFrag:]) & ipv4FragOffMask) * 8 }

// Src is the source address.
func (h IPv4) Src() []byte { return h[ipv4SrcAddr : ipv4SrcAddr+4] }

// Dst is the destination address.
func (h IPv4) Dst() []byte { return h[ipv4DstAddr : ipv4DstAddr+4] }

// SetChecksum stores the header checksum field.
func (h IPv4) SetChecksum(v uint16) { put16(h[ipv4Checksum:], v) }

// SetTTL stores the TTL and fixes the header checksum incrementally.
func (h IPv4) SetTTL(ttl uint8) {
	old := be16(h[ipv4TTL:])
	h[ipv4TTL] = ttl
	h.SetChecksum(adjust(h.Checksum(), delta16(old, be16(h[ipv4TTL:]))))
}

// CalculateChecksum computes the header checksum from scratch, treating the
// checksum field as zero.
func (h IPv4) CalculateChecksum() uint16 {
	hl := h.HeaderLength()
	s := Sum(h[:ipv4Checksum], 0)
	s = Sum(h[ipv4Checksum+2:hl], s)
	return ^s
}

// checkOptions walks the option list of a header of hl bytes. It reports
// whether the list is well formed and whether a source-route option still
// has addresses to visit, which makes the final destination (the one the
// transport pseudo-header covers) differ from the Destination field.
func (h IPv4) checkOptions(hl int) (ok, sourceRouted bool) {
	opts := h[IPv4MinimumSize:hl]
	for len(opts) > 0 {
		switch opts[0] {
		case ipv4OptEnd:
			return true, sourceRouted
		case ipv4OptNOP:
			opts = opts[1:]
			continue
		}
		if len(opts) < ipv4OptMinLength {
			return false, false
		}
		l := int(opts[1])
		if l < ipv4OptMinLength || l > len(opts) {
			return false, false
		}
		// A source route is pending while its pointer (counted from the
		// option type, RFC 791 "Loose Source and Record Route") still
		// points inside the option.
		if (opts[0] == ipv4OptLSRR || opts[0] == ipv4OptSSRR) && l >= 7 && int(opts[2]) <= l {
			sourceRouted = true
		}
		opts = opts[l:]
	}
	return true, sourceRouted
}
