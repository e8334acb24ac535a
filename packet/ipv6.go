package packet

// IPv6 is a view of the IPv6 fixed header (RFC 8200 §3). Call IsValid
// before any other method.
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version| Traffic Class |           Flow Label                  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         Payload Length        |  Next Header  |   Hop Limit   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	+                         Source Address                        +
//	|                          (16 bytes)                           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	+                      Destination Address                      +
//	|                          (16 bytes)                           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type IPv6 []byte

// Offsets of IPv6 header fields.
const (
	ipv6VersTCFlow = 0
	ipv6PayloadLen = 4
	ipv6NextHeader = 6
	ipv6HopLimit   = 7
	ipv6SrcAddr    = 8
	ipv6DstAddr    = 24
	IPv6HeaderSize = 40
)

// IPv6 extension headers that Parse walks (RFC 8200 §4). Every other next
// header value, ESP and No Next Header included, is the upper layer.
const (
	ipv6ExtHopByHop = 0
	ipv6ExtRouting  = 43
	ipv6ExtFragment = 44
	ipv6ExtDestOpts = 60
)

// IPv6 extension header layout. Hop-by-hop, routing and destination options
// share the first two bytes; the length counts 8-byte units beyond the
// first 8. The fragment header (RFC 8200 §4.5) is always 8 bytes:
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Next Header  |  Hdr Ext Len  |  (Routing Type | Segments Left)|
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Next Header  |   Reserved    |      Fragment Offset    |Res|M|
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                         Identification                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const (
	ipv6ExtMinSize       = 8
	ipv6RoutingType      = 2
	ipv6RoutingSegsLeft  = 3
	ipv6FragOffFlags     = 2
	ipv6FragID           = 4
	ipv6FragOffMask      = 0xfff8 // offset in bytes, already a multiple of 8
	ipv6FragMF           = 1
	ipv6RoutingTypeRH0   = 0 // deprecated source route (RFC 5095)
	ipv6RoutingTypeMIP   = 2 // Mobile IPv6 (RFC 6275)
	ipv6RoutingTypeSRH   = 4 // segment routing (RFC 8754)
	ipv6RoutingAddrStart = 8
)

// IsValid reports whether the slice holds the fixed header and the payload
// length it announces (trailing bytes are allowed).
func (h IPv6) IsValid() bool {
	return len(h) >= IPv6HeaderSize && h[ipv6VersTCFlow]>>4 == 6 &&
		IPv6HeaderSize+int(h.PayloadLength()) <= len(h)
}

// PayloadLength is the length of everything after the fixed header.
func (h IPv6) PayloadLength() uint16 { return be16(h[ipv6PayloadLen:]) }

// NextHeader is the fixed header's next header field.
func (h IPv6) NextHeader() uint8 { return h[ipv6NextHeader] }

// HopLimit is the hop limit field.
func (h IPv6) HopLimit() uint8 { return h[ipv6HopLimit] }

// Src is the source address.
func (h IPv6) Src() []byte { return h[ipv6SrcAddr : ipv6SrcAddr+16] }

// Dst is the destination address.
func (h IPv6) Dst() []byte { return h[ipv6DstAddr : ipv6DstAddr+16] }

// SetHopLimit stores the hop limit (IPv6 has no header checksum).
func (h IPv6) SetHopLimit(v uint8) { h[ipv6HopLimit] = v }
