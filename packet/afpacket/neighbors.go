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

// LearnFrom learns from a parsed control frame: an ARP message (its
// sender's binding), a neighbour solicitation (its source and link-layer
// option) or advertisement (its target and link-layer option).
func (n *Neighbors) LearnFrom(c *Control) {
	switch {
	case c.ARP != nil:
		n.Learn(c.ARP.SenderIP(), c.ARP.SenderMAC())
	case c.IsND && c.ND.HasLinkAddr:
		if c.ND.Type == packet.ICMPv6NeighborAdvert {
			n.Learn(c.ND.Target, c.ND.LinkAddr)
		} else {
			n.Learn(c.ndSource(), c.ND.LinkAddr)
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
