package afpacket

import (
	"net/netip"

	"github.com/vsgate/vsgate/packet"
)

// Responder answers ARP requests and IPv6 neighbour solicitations for the
// addresses vsgate owns on one interface — the VIPs, and the gateway
// address the real servers route through — which the kernel cannot answer
// because, in AF_PACKET mode, those addresses are not configured on the
// interface. It also writes the announcements sent on start. It is
// immutable after NewResponder and safe for concurrent use.
type Responder struct {
	mac   packet.MAC
	owned map[netip.Addr]bool
}

// NewResponder returns a Responder answering for addrs with mac.
func NewResponder(mac packet.MAC, addrs []netip.Addr) *Responder {
	r := &Responder{mac: mac, owned: make(map[netip.Addr]bool, len(addrs))}
	for _, a := range addrs {
		r.owned[a.Unmap()] = true
	}
	return r
}

// Owns reports whether a is one of the Responder's addresses.
func (r *Responder) Owns(a netip.Addr) bool { return r.owned[a.Unmap()] }

// ReplySize is the out buffer Reply and Announce need.
const ReplySize = packet.NDFrameSize

// Reply looks at a parsed control frame and, if it is an ARP request or a
// neighbour solicitation for an owned address, writes the answer into out
// (ReplySize bytes) and returns its length; otherwise it returns 0. It
// does not allocate.
func (r *Responder) Reply(c *Control, out []byte) int {
	switch {
	case c.ARP != nil:
		a := c.ARP
		if a.Op() != packet.ARPRequest || a.IsGratuitous() || !r.Owns(a.TargetIP()) {
			return 0
		}
		return packet.PutARP(out, packet.ARPReply, r.mac, a.TargetIP(), a.SenderMAC(), a.SenderIP())
	case c.IsND:
		nd := &c.ND
		if nd.Type != packet.ICMPv6NeighborSolicit || !r.Owns(nd.Target) {
			return 0
		}
		src := c.ndSource()
		if src.IsUnspecified() {
			// Duplicate address detection by someone else: defend the
			// address to all nodes, unsolicited (RFC 4861 §7.2.4).
			all := netip.IPv6LinkLocalAllNodes()
			return packet.PutNeighborAdvert(out, r.mac, packet.MulticastMAC(all), nd.Target, all, nd.Target, false)
		}
		dstMAC := c.L2.Src
		if nd.HasLinkAddr {
			dstMAC = nd.LinkAddr
		}
		return packet.PutNeighborAdvert(out, r.mac, dstMAC, nd.Target, src, nd.Target, true)
	}
	return 0
}

// Announce writes the announcement of an owned address into out
// (ReplySize bytes) and returns its length: a gratuitous ARP request for
// IPv4 (RFC 5227 §3), an unsolicited override advertisement to all nodes
// for IPv6 (RFC 4861 §7.2.6). Neighbours that cached another MAC for the
// address — a previous gateway — switch to this one.
func (r *Responder) Announce(out []byte, a netip.Addr) int {
	a = a.Unmap()
	if a.Is4() {
		return packet.PutARP(out, packet.ARPRequest, r.mac, a, packet.MAC{}, a)
	}
	all := netip.IPv6LinkLocalAllNodes()
	return packet.PutNeighborAdvert(out, r.mac, packet.MulticastMAC(all), a, all, a, false)
}
