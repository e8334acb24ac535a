package afpacket

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"

	"github.com/vsgate/vsgate/packet"
)

// Neighbors maps next-hop IP addresses (clients' routers, real servers) to
// MAC addresses for the frames vsgate sends. Lookups are on the transmit
// hot path, so they read an immutable snapshot through an atomic pointer:
// no lock, no allocation. Learning is rare (a new neighbour, a changed
// MAC) and copies the snapshot under a mutex.
type Neighbors struct {
	snap atomic.Pointer[map[netip.Addr]packet.MAC]
	mu   sync.Mutex // serialises writers
}

// NewNeighbors returns an empty table.
func NewNeighbors() *Neighbors {
	n := &Neighbors{}
	empty := map[netip.Addr]packet.MAC{}
	n.snap.Store(&empty)
	return n
}

// Lookup returns the MAC of a neighbour, if known.
func (n *Neighbors) Lookup(a netip.Addr) (packet.MAC, bool) {
	m, ok := (*n.snap.Load())[a.Unmap()]
	return m, ok
}

// Learn records that a is at mac. It copies the table only when the entry
// is new or changed, so re-learning from every ARP packet is cheap.
func (n *Neighbors) Learn(a netip.Addr, mac packet.MAC) {
	a = a.Unmap()
	if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || mac.IsMulticast() || mac == (packet.MAC{}) {
		return // never route frames to a group MAC or a zero MAC
	}
	if old, ok := n.Lookup(a); ok && old == mac {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	cur := *n.snap.Load()
	next := make(map[netip.Addr]packet.MAC, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	next[a] = mac
	n.snap.Store(&next)
}

// LearnFrame learns from a received ARP message (its sender's binding) or
// neighbour solicitation (source and its link-layer option) or
// advertisement (target and its link-layer option). Other frames are
// ignored. l, p and nd are the caller's scratch space.
func (n *Neighbors) LearnFrame(frame []byte, l *packet.L2, p *packet.Parsed, nd *packet.ND) {
	if packet.ParseEthernet(frame, l) != packet.ReasonNone {
		return
	}
	payload := frame[l.PayloadOff:]
	switch l.EtherType {
	case packet.EtherTypeARP:
		if a, reason := packet.ValidARP(payload); reason == packet.ReasonNone {
			n.Learn(a.SenderIP(), a.SenderMAC())
		}
	case packet.EtherTypeIPv6:
		if packet.Parse(payload, p) != packet.ReasonNone || packet.ParseND(payload, p, nd) != packet.ReasonNone || !nd.HasLinkAddr {
			return
		}
		if nd.Type == packet.ICMPv6NeighborAdvert {
			n.Learn(nd.Target, nd.LinkAddr)
		} else {
			n.Learn(netip.AddrFrom16(p.Src), nd.LinkAddr)
		}
	}
}

// LoadKernel copies the complete entries of the kernel's neighbour table
// for one interface (in the namespace of h), so that vsgate starts with
// the neighbours the host already knows instead of asking them again.
func (n *Neighbors) LoadKernel(h *netlink.Handle, ifindex int) error {
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		list, err := h.NeighList(ifindex, fam)
		if err != nil {
			return fmt.Errorf("neighbour table of interface %d: %w", ifindex, err)
		}
		for _, e := range list {
			const usable = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE | netlink.NUD_PERMANENT | netlink.NUD_NOARP
			if ip, ok := netip.AddrFromSlice(e.IP); ok && len(e.HardwareAddr) == 6 && e.State&usable != 0 {
				n.Learn(ip, packet.MAC(e.HardwareAddr))
			}
		}
	}
	return nil
}

// Request writes into out (ReplySize bytes) the frame that asks where a
// is — an ARP request, or a neighbour solicitation to a's solicited-node
// group — from src at mac, and returns its length.
func Request(out []byte, mac packet.MAC, src, a netip.Addr) int {
	a = a.Unmap()
	if a.Is4() {
		return packet.PutARP(out, packet.ARPRequest, mac, src.Unmap(), packet.MAC{}, a)
	}
	return packet.PutNeighborSolicit(out, mac, src, a)
}
