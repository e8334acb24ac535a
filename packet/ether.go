package packet

import "net/netip"

// MAC is an Ethernet (EUI-48) address. It is an array, not a
// net.HardwareAddr, so that reading one from a frame does not allocate.
type MAC [6]byte

// BroadcastMAC returns ff:ff:ff:ff:ff:ff, where ARP requests go.
func BroadcastMAC() MAC { return MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff} }

// IsMulticast reports whether the group bit is set (broadcast included).
func (m MAC) IsMulticast() bool { return m[0]&1 != 0 }

// String formats the address as net.HardwareAddr does, for logs and
// tests; it allocates.
func (m MAC) String() string {
	const hex = "0123456789abcdef"
	b := make([]byte, 0, 17)
	for i, x := range m {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hex[x>>4], hex[x&0xf])
	}
	return string(b)
}

// EtherTypes vsgate reads (IEEE 802.3 §3.2.6; IANA "IEEE 802 Numbers").
const (
	EtherTypeIPv4   = 0x0800
	EtherTypeARP    = 0x0806
	EtherTypeIPv6   = 0x86dd
	EtherTypeVLAN   = 0x8100 // IEEE 802.1Q customer tag
	EtherTypeQinQ   = 0x88a8 // IEEE 802.1ad service tag (outer tag of Q-in-Q)
	EtherTypeQinQv1 = 0x9100 // pre-standard Q-in-Q outer tag, still common on switches
	etherTypeMin    = 0x0600 // below this the field is an 802.3 length, not a type
)

// Ethernet is a view of an Ethernet II header at the start of a byte slice:
//
//	+-------------------+-------------------+-----------+
//	| destination (6)   | source (6)        | type (2)  |  then zero, one or
//	+-------------------+-------------------+-----------+  two 4-byte VLAN tags
//
// Call ParseEthernet rather than reading tags by hand.
type Ethernet []byte

// Ethernet and VLAN sizes.
const (
	EthernetMinimumSize = 14 // untagged header
	VLANTagSize         = 4  // TPID (the "type" before it) + TCI
	MaxVLANTags         = 2  // Q-in-Q; a third tag is dropped as ReasonTooManyVLANs
	EthernetMaximumSize = EthernetMinimumSize + MaxVLANTags*VLANTagSize
)

// Dst is the destination MAC.
func (h Ethernet) Dst() MAC { return MAC(h[0:6]) }

// Src is the source MAC.
func (h Ethernet) Src() MAC { return MAC(h[6:12]) }

// Type is the EtherType of an untagged frame (what AF_PACKET delivers:
// the kernel moves VLAN tags out of the frame). b must hold
// EthernetMinimumSize bytes.
func (h Ethernet) Type() uint16 { return be16(h[12:14]) }

// L2 is what ParseEthernet learns about one frame. Like Parsed it is owned
// and reused by the caller and overwritten by every parse.
type L2 struct {
	Dst, Src MAC

	// VLANs are the VLAN IDs (the TCI's low 12 bits), outermost first.
	// Valid for the first NumVLANs entries.
	VLANs    [MaxVLANTags]uint16
	NumVLANs uint8

	// EtherType is the type after the tags: EtherTypeIPv4, EtherTypeIPv6,
	// EtherTypeARP or anything else (which the caller passes to the kernel
	// or ignores).
	EtherType uint16

	// Reason is ReasonNone iff the frame parsed.
	Reason Reason

	// PayloadOff is where the frame's payload (the IP packet or the ARP
	// message) begins.
	PayloadOff int
}

// ParseEthernet reads an Ethernet II header and up to two VLAN tags (802.1Q,
// 802.1ad or the pre-standard 0x9100 outer tag) from b into l. It does not
// allocate. The payload may carry trailing padding (minimum-size frames
// are padded to 60 bytes); the IP parser ignores bytes past the IP length.
func ParseEthernet(b []byte, l *L2) Reason {
	*l = L2{}
	if len(b) < EthernetMinimumSize {
		return l.fail(ReasonTruncatedEthernet)
	}
	l.Dst, l.Src = MAC(b[0:6]), MAC(b[6:12])
	off := 12
	typ := be16(b[off:])
	for typ == EtherTypeVLAN || typ == EtherTypeQinQ || typ == EtherTypeQinQv1 {
		if l.NumVLANs == MaxVLANTags {
			return l.fail(ReasonTooManyVLANs)
		}
		if len(b) < off+VLANTagSize+2 {
			return l.fail(ReasonTruncatedEthernet)
		}
		l.VLANs[l.NumVLANs] = be16(b[off+2:]) & 0x0fff
		l.NumVLANs++
		off += VLANTagSize
		typ = be16(b[off:])
	}
	if typ < etherTypeMin {
		return l.fail(ReasonNotEthernetII) // 802.3 length field: LLC/SNAP frames, never IP here
	}
	l.EtherType = typ
	l.PayloadOff = off + 2
	return ReasonNone
}

func (l *L2) fail(r Reason) Reason {
	*l = L2{Reason: r}
	return r
}

// PutEthernet writes an untagged Ethernet II header into b (which must
// hold EthernetMinimumSize bytes) and returns its length.
func PutEthernet(b []byte, dst, src MAC, etherType uint16) int {
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	put16(b[12:], etherType)
	return EthernetMinimumSize
}

// ARP is a view of an ARP message for IPv4 over Ethernet (RFC 826), the
// only kind ValidARP accepts:
//
//	| htype 1 (2) | ptype 0x0800 (2) | hlen 6 | plen 4 | op (2) |
//	| sender MAC (6) | sender IP (4) | target MAC (6) | target IP (4) |
type ARP []byte

// ARP sizes and operations.
const (
	ARPSize    = 28
	ARPRequest = 1
	ARPReply   = 2
)

// ValidARP returns b as an ARP view if it is a request or reply for IPv4
// over Ethernet; otherwise nil and the reason.
func ValidARP(b []byte) (ARP, Reason) {
	if len(b) < ARPSize {
		return nil, ReasonBadARP
	}
	if be16(b[0:]) != 1 || be16(b[2:]) != EtherTypeIPv4 || b[4] != 6 || b[5] != 4 {
		return nil, ReasonBadARP
	}
	if op := be16(b[6:]); op != ARPRequest && op != ARPReply {
		return nil, ReasonBadARP
	}
	return ARP(b[:ARPSize]), ReasonNone
}

// Op is ARPRequest or ARPReply.
func (a ARP) Op() uint16 { return be16(a[6:]) }

// SenderMAC is the sender hardware address.
func (a ARP) SenderMAC() MAC { return MAC(a[8:14]) }

// SenderIP is the sender protocol address.
func (a ARP) SenderIP() netip.Addr { return netip.AddrFrom4([4]byte(a[14:18])) }

// TargetMAC is the target hardware address (zero in a request).
func (a ARP) TargetMAC() MAC { return MAC(a[18:24]) }

// TargetIP is the target protocol address.
func (a ARP) TargetIP() netip.Addr { return netip.AddrFrom4([4]byte(a[24:28])) }

// IsGratuitous reports whether the message announces its sender's own
// binding (sender IP == target IP, RFC 5227 §3), request or reply.
func (a ARP) IsGratuitous() bool { return a.SenderIP() == a.TargetIP() }

// PutARP writes an Ethernet frame carrying an ARP message into b, which
// must hold EthernetMinimumSize+ARPSize bytes, and returns the frame
// length. senderIP and targetIP must be IPv4. A request goes to the
// broadcast MAC with a zero target MAC; a reply goes to targetMAC. A
// gratuitous announcement (RFC 5227 §3) is a broadcast request with
// targetIP == senderIP.
func PutARP(b []byte, op uint16, senderMAC MAC, senderIP netip.Addr, targetMAC MAC, targetIP netip.Addr) int {
	dst := targetMAC
	if op == ARPRequest {
		dst, targetMAC = BroadcastMAC(), MAC{}
	}
	n := PutEthernet(b, dst, senderMAC, EtherTypeARP)
	a := b[n : n+ARPSize]
	put16(a[0:], 1)
	put16(a[2:], EtherTypeIPv4)
	a[4], a[5] = 6, 4
	put16(a[6:], op)
	copy(a[8:14], senderMAC[:])
	s4, t4 := senderIP.As4(), targetIP.As4()
	copy(a[14:18], s4[:])
	copy(a[18:24], targetMAC[:])
	copy(a[24:28], t4[:])
	return n + ARPSize
}
