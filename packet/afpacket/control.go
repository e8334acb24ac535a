package afpacket

import (
	"net/netip"

	"github.com/vsgate/vsgate/packet"
)

// Control is a received frame parsed once for the link-layer control
// plane: Ethernet, then an ARP message or an IPv6 neighbour discovery
// message. Responder.Reply and Neighbors.Learn both read it, so a frame is
// parsed once however many of them look at it. The caller owns and reuses
// it; ParseControl overwrites it.
type Control struct {
	L2 packet.L2

	// ARP is the valid ARP message, or nil.
	ARP packet.ARP

	// IP and ND are valid iff IsND.
	IP   packet.Parsed
	ND   packet.ND
	IsND bool
}

// ParseControl parses frame into c and reports whether it is ARP or
// neighbour discovery (valid by RFC 826 / RFC 4861 §7.1). It does not
// allocate.
func ParseControl(frame []byte, c *Control) bool {
	c.ARP, c.IsND = nil, false
	if packet.ParseEthernet(frame, &c.L2) != packet.ReasonNone {
		return false
	}
	payload := frame[c.L2.PayloadOff:]
	switch c.L2.EtherType {
	case packet.EtherTypeARP:
		a, reason := packet.ValidARP(payload)
		c.ARP = a
		return reason == packet.ReasonNone
	case packet.EtherTypeIPv6:
		c.IsND = packet.Parse(payload, &c.IP) == packet.ReasonNone && packet.ParseND(payload, &c.IP, &c.ND) == packet.ReasonNone
		return c.IsND
	}
	return false
}

// ndSource is the IPv6 source address of a neighbour discovery message.
func (c *Control) ndSource() netip.Addr { return netip.AddrFrom16(c.IP.Src) }
